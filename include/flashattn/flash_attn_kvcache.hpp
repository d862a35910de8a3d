// flash_attn_with_kvcache (flash-attn 2.8): attention of a few new queries
// against a key/value cache, appending new keys and values in place first.
//
//   // decode step: one new token per sequence, paged cache, rotary, GQA
//   flashattn::flash_attn_with_kvcache(q, k_cache, v_cache, {.out = out},
//       {.k = k_new, .v = v_new, .rotary_cos = cos, .rotary_sin = sin,
//        .cache_seqlens = seqlens, .block_table = table, .causal = true});
//
// Shapes (only the last dimension must be contiguous):
//   q (b, sq, h, d); out like q (same dtype); softmax_lse fp32 (b, h, sq)
//   k_cache / v_cache (b_cache, seqlen_cache, hk, d), or paged
//     (num_blocks, page_size, hk, d) with block_table int32 (b, max_blocks_per_seq)
//   k / v (new) (b, seqlen_new, hk, d); rotary_cos / rotary_sin
//     (seqlen_ro, rotary_dim / 2), q's dtype, rotary_dim even and <= d
//   cache_seqlens / cache_batch_idx / cache_leftpad int32 (b,)
// q, the caches, k, v and out share one dtype: f32, f16 or bf16.
//
// Sequence b attends to cache row r = cache_batch_idx[b] (b when absent),
// keys [cache_leftpad[b], cache_seqlens[b] + seqlen_new): new k / v are
// written at positions cache_seqlens[b] ... first (rotated when rotary
// tables are given), then causal / window masks are bottom-right over that
// range. Rotary: k at position cache_seqlens[b] + t; q at cache_seqlens[b] + i
// when causal or windowed, else every q row at cache_seqlens[b];
// interleaved pairs (2c, 2c + 1), GPT-NeoX pairs (c, c + rotary_dim / 2);
// computed in fp32 and rounded to the dtype (as flash-attn).
//
// Every argument (including every block_table entry and cache position
// the call would touch) is checked before anything is written: on error
// the cache and the outputs are unchanged. Not thread-safe on one cache:
// concurrent calls must append to disjoint cache rows or pages.
//
// CUDA tensors (q, the caches, k, v, the rotary tables, out, softmax_lse,
// alibi_slopes and the int32 index tensors all on q's device; f16 / bf16):
// the call is enqueued on options.stream (the append kernel, then the
// attention), never synchronises, allocates nothing and reads no device
// memory on the host (nothing in it prevents CUDA-graph capture). Split-KV needs options.workspace, sized by
// flash_attn_with_kvcache_workspace_bytes (without one the call runs
// unsplit). Shapes, dtypes, devices and an int cache_seqlens are checked on
// the host, before any launch; the contents of device index tensors
// (cache_seqlens, cache_batch_idx, cache_leftpad, block_table) cannot be
// read without synchronising and are not checked: the index tensors must
// be contiguous, and a bad entry (a length past the capacity, a row or page
// out of range, leftpad > cache_seqlens, duplicate rows or shared slots
// when appending, positions past the rotary tables) gives unspecified
// values, never an access outside the tensors (every index read on the
// device is clamped to the tensors' extents).
#pragma once

#include <cstdint>
#include <optional>

#include "flashattn/flash_attn.hpp"
#include "flashattn/tensor.hpp"

namespace flashattn {

// flash-attn's `cache_seqlens: int | Tensor | None`.
class CacheSeqlens {
 public:
  CacheSeqlens() = default;                                          // None: every cache row is full
  CacheSeqlens(std::int64_t length) : length_(length) {}             // NOLINT: one length for every row
  CacheSeqlens(const TensorView& lengths) : lengths_(lengths) {}     // NOLINT: int32 (b,)

  bool present() const { return length_.has_value() || lengths_.present(); }
  const std::optional<std::int64_t>& length() const { return length_; }
  const TensorView& lengths() const { return lengths_; }

 private:
  std::optional<std::int64_t> length_;
  TensorView lengths_{};
};

// flash_attn_with_kvcache's keyword arguments, in flash-attn's order.
struct KvCacheOptions {
  TensorView k{};                       // new keys (b, seqlen_new, hk, d), appended in place; needs v
  TensorView v{};                       // new values, like k
  TensorView rotary_cos{};              // (seqlen_ro, rotary_dim / 2); needs k
  TensorView rotary_sin{};              // like rotary_cos
  CacheSeqlens cache_seqlens{};         // required with k; None: the whole cache
  TensorView cache_batch_idx{};         // int32 (b,): cache row of each batch entry; not with block_table
  TensorView cache_leftpad{};           // int32 (b,): first valid cache position; not with block_table
  TensorView block_table{};             // int32 (b, max_blocks_per_seq): paged caches
  std::optional<float> softmax_scale;   // default 1 / sqrt(d)
  bool causal = false;                  // bottom-right causal
  WindowSize window_size{};             // bottom-right band
  float softcap = 0.0f;                 // > 0: s = softcap * tanh(s / softcap)
  bool rotary_interleaved = true;       // false: GPT-NeoX halves
  TensorView alibi_slopes{};            // fp32 (h,) or (b, h)
  std::int64_t num_splits = 0;          // 0: heuristic; 1: no split; n: n key chunks merged
  // CUDA tensors, as FlashAttnOptions: the cudaStream_t the call is
  // enqueued on (null: the legacy default stream; ignored on the CPU), and
  // scratch memory on the device for split-KV
  // (flash_attn_with_kvcache_workspace_bytes; null: the call runs unsplit).
  void* stream = nullptr;
  void* workspace = nullptr;
  std::int64_t workspace_bytes = 0;
};

struct KvCacheOutputs {
  TensorView out{};          // required, like q
  TensorView softmax_lse{};  // optional fp32 (b, h, sq) (return_softmax_lse); +inf on rows with no key
};

// Any page size >= 1 (flash-attn: multiples of 256). With new k / v,
// cache_batch_idx entries must be distinct (upstream races on duplicates; we
// refuse), the block table must send every appended position to a slot that
// no other position of any sequence reads or writes (pages shared read-only
// are fine), and the caches may not have elements sharing an address.
void flash_attn_with_kvcache(const TensorView& q, const TensorView& k_cache, const TensorView& v_cache,
                             const KvCacheOutputs& outputs, const KvCacheOptions& options = {});

// Bytes of workspace flash_attn_with_kvcache with these arguments uses
// (KvCacheOptions::workspace; 0: the call does not split); the arguments are
// checked as the call checks them, nothing is written. CUDA: queries the
// current device. Sized by the cache's capacity when the lengths are device
// tensors, so one size serves every step of a decode loop.
std::int64_t flash_attn_with_kvcache_workspace_bytes(const TensorView& q, const TensorView& k_cache,
                                                     const TensorView& v_cache, const KvCacheOutputs& outputs,
                                                     const KvCacheOptions& options = {});

}  // namespace flashattn
