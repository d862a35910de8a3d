// The flash-attn front-end: flash_attn_func and friends (flash-attn 2.8),
// argument for argument, on caller-owned tensors.
//
//   flashattn::flash_attn(q, k, v, {.out = out, .softmax_lse = lse},
//                         {.causal = true, .window_size = {256, 0}});
//
// Shapes (only the last dimension must be contiguous):
//   q (b, sq, h, d), k (b, sk, hk, d), v (b, sk, hk, d), h % hk == 0
//   kv (b, sk, 2, hk, d), qkv (b, s, 3, h, d)
//   varlen: q (total_q, h, d), k/v (total_k, hk, d), cu_seqlens int32 (b + 1,)
//   varlen packed: kv (total_k, 2, hk, d), qkv (total, 3, h, d)
//   out like q; softmax_lse fp32 (b, h, sq), varlen (h, total_q)
//   attn_probs fp32 (b, h, sq, sk), varlen (b, h, max_seqlen_q, max_seqlen_k)
// q, k, v and out share one dtype: f32, f16 or bf16; head dims 1..256.
// Every argument is checked before anything is written; bad input throws
// flashattn::Error naming the argument. The backward: flash_attn_backward.hpp.
#pragma once

#include <cstdint>
#include <optional>

#include "flashattn/tensor.hpp"

namespace flashattn {

struct WindowSize {
  std::int64_t left = -1;   // keys before the (bottom-right) diagonal; -1 = unbounded
  std::int64_t right = -1;  // keys after it; -1 = unbounded
};

// flash-attn's keyword arguments, in flash-attn's order.
struct FlashAttnOptions {
  float dropout_p = 0.0f;                    // probability of dropping, [0, 1)
  std::optional<float> softmax_scale;        // default 1 / sqrt(head_dim)
  bool causal = false;                       // bottom-right causal (right = 0)
  WindowSize window_size{};                  // bottom-right band
  float softcap = 0.0f;                      // > 0: s = softcap * tanh(s / softcap)
  TensorView alibi_slopes{};                 // fp32 (h,) or (b, h); adds -slope * |i + sk - sq - j|
  bool deterministic = false;                // backward only; on the CPU every backward is bitwise deterministic anyway
  bool return_attn_probs = false;            // fill FlashAttnOutputs::attn_probs
  // Dropout RNG (flash-attn takes a generator): required when dropout_p > 0.
  // The mask depends only on (seed, offset, batch, head, i, j).
  std::optional<std::uint64_t> seed;
  std::uint64_t offset = 0;
  // CUDA tensors: the cudaStream_t the call is enqueued on (cast to void*;
  // null: the legacy default stream). The call never synchronises. Ignored
  // on the CPU.
  void* stream = nullptr;
  // CUDA tensors: scratch memory on their device for split-KV (few query
  // rows over many keys, e.g. decoding). Its size for a call: the
  // *_workspace_bytes function below with the call's arguments (0: the call
  // does not split). Null: the call runs unsplit. The CPU allocates its own.
  void* workspace = nullptr;
  std::int64_t workspace_bytes = 0;
};

// Caller-owned outputs. out is required; the others are written when present.
struct FlashAttnOutputs {
  TensorView out{};          // like q, same dtype
  TensorView softmax_lse{};  // fp32; rows with no kept key get +inf (as flash-attn)
  // fp32 softmax probabilities, negative where dropout dropped them, 0 where
  // masked. Requires return_attn_probs; materialises (sq x sk) per head.
  TensorView attn_probs{};
};

void flash_attn(const TensorView& q, const TensorView& k, const TensorView& v, const FlashAttnOutputs& outputs,
                const FlashAttnOptions& options = {});

// Bytes of workspace flash_attn / flash_attn_varlen with these arguments
// use (FlashAttnOptions::workspace); the arguments are checked as the call
// checks them, nothing is read or written. CUDA: queries the current device.
std::int64_t flash_attn_workspace_bytes(const TensorView& q, const TensorView& k, const TensorView& v,
                                        const FlashAttnOutputs& outputs, const FlashAttnOptions& options = {});

void flash_attn_kvpacked(const TensorView& q, const TensorView& kv, const FlashAttnOutputs& outputs,
                         const FlashAttnOptions& options = {});

void flash_attn_qkvpacked(const TensorView& qkv, const FlashAttnOutputs& outputs,
                          const FlashAttnOptions& options = {});

// seqused_k: optional int32 (b,): sequence b uses only its first seqused_k[b] keys.
// block_table: optional int32 (b, max_blocks_per_seq): k and v are a paged cache
// (num_blocks, page_size, hk, d), any page size >= 1; sequence b's keys are
// positions [0, cu_seqlens_k[b + 1] - cu_seqlens_k[b]) of its pages (prefill over a cache).
void flash_attn_varlen(const TensorView& q, const TensorView& k, const TensorView& v,
                       const TensorView& cu_seqlens_q, const TensorView& cu_seqlens_k, std::int64_t max_seqlen_q,
                       std::int64_t max_seqlen_k, const FlashAttnOutputs& outputs,
                       const FlashAttnOptions& options = {}, const TensorView& seqused_k = {},
                       const TensorView& block_table = {});

std::int64_t flash_attn_varlen_workspace_bytes(const TensorView& q, const TensorView& k, const TensorView& v,
                                               const TensorView& cu_seqlens_q, const TensorView& cu_seqlens_k,
                                               std::int64_t max_seqlen_q, std::int64_t max_seqlen_k,
                                               const FlashAttnOutputs& outputs, const FlashAttnOptions& options = {},
                                               const TensorView& seqused_k = {}, const TensorView& block_table = {});

void flash_attn_varlen_kvpacked(const TensorView& q, const TensorView& kv, const TensorView& cu_seqlens_q,
                                const TensorView& cu_seqlens_k, std::int64_t max_seqlen_q,
                                std::int64_t max_seqlen_k, const FlashAttnOutputs& outputs,
                                const FlashAttnOptions& options = {}, const TensorView& seqused_k = {});

void flash_attn_varlen_qkvpacked(const TensorView& qkv, const TensorView& cu_seqlens, std::int64_t max_seqlen,
                                 const FlashAttnOutputs& outputs, const FlashAttnOptions& options = {});

}  // namespace flashattn
