// The backward of the flash-attn front-end: flash-attn 2.x's
// _flash_attn_backward / _flash_attn_varlen_backward, argument for argument,
// on caller-owned tensors.
//
//   flashattn::flash_attn(q, k, v, {.out = out, .softmax_lse = lse}, options);
//   flashattn::flash_attn_backward(dout, q, k, v, out, lse, {.dq = dq, .dk = dk, .dv = dv}, options);
//
// Writes the gradients of loss = sum(out * dout) with respect to q, k and v.
// The backward recomputes the attention from q, k, v and the forward's
// softmax_lse, so `options` must be the forward's: same softmax_scale,
// causal / window_size, softcap, alibi_slopes and, with dropout, the same
// dropout_p, seed and offset (the dropout mask is regenerated from them,
// where flash-attn keeps an rng_state).
//
// Argument order: flash-attn's (dout, q, k, v, out, softmax_lse, dq, dk, dv,
// [cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,] keyword
// arguments); packed forms take kv / qkv and dkv / dqkv in place of their
// parts (upstream's autograd functions pass views of one dkv / dqkv).
//
// Shapes (only the last dimension must be contiguous):
//   dout and out like q: (b, sq, h, d), varlen (total_q, h, d), q's dtype
//   softmax_lse fp32 exactly as the forward wrote it: (b, h, sq), varlen (h, total_q)
//   dq like q, dk like k, dv like v (same dtype); dkv like kv
//   (b, sk, 2, hk, d), dqkv like qkv (b, s, 3, h, d) (varlen without b)
// GQA/MQA: dk and dv of a kv head sum over the query heads that read it.
// Varlen: keys past seqused_k[b] get dk = dv = 0; rows past the last
// cu_seqlens offset are not written.
//
// options.deterministic: on the CPU every backward is bitwise deterministic
// (the same bits for every run and thread count), so the flag costs and
// changes nothing. options.return_attn_probs must be false.
//
// Every argument is checked before anything is written; bad input throws
// flashattn::Error naming the argument. Gradients must not overlap each
// other nor any tensor the call reads (writing dq into q would corrupt the
// computation); two views of one packed buffer, e.g. dk and dv of a dkv, are
// fine.
#pragma once

#include <cstdint>

#include "flashattn/flash_attn.hpp"
#include "flashattn/tensor.hpp"

namespace flashattn {

// Caller-owned gradients, written by the backward.
struct FlashAttnGrads {
  TensorView dq{};  // like q
  TensorView dk{};  // like k
  TensorView dv{};  // like v
};

void flash_attn_backward(const TensorView& dout, const TensorView& q, const TensorView& k, const TensorView& v,
                         const TensorView& out, const TensorView& softmax_lse, const FlashAttnGrads& grads,
                         const FlashAttnOptions& options = {});

// kv (b, sk, 2, hk, d); writes dq and dkv (b, sk, 2, hk, d).
void flash_attn_kvpacked_backward(const TensorView& dout, const TensorView& q, const TensorView& kv,
                                  const TensorView& out, const TensorView& softmax_lse, const TensorView& dq,
                                  const TensorView& dkv, const FlashAttnOptions& options = {});

// qkv (b, s, 3, h, d); writes dqkv (b, s, 3, h, d).
void flash_attn_qkvpacked_backward(const TensorView& dout, const TensorView& qkv, const TensorView& out,
                                   const TensorView& softmax_lse, const TensorView& dqkv,
                                   const FlashAttnOptions& options = {});

// q (total_q, h, d), k/v (total_k, hk, d), cu_seqlens int32 (b + 1,),
// seqused_k optional int32 (b,): the forward's varlen arguments.
void flash_attn_varlen_backward(const TensorView& dout, const TensorView& q, const TensorView& k, const TensorView& v,
                                const TensorView& out, const TensorView& softmax_lse, const FlashAttnGrads& grads,
                                const TensorView& cu_seqlens_q, const TensorView& cu_seqlens_k,
                                std::int64_t max_seqlen_q, std::int64_t max_seqlen_k,
                                const FlashAttnOptions& options = {}, const TensorView& seqused_k = {});

// kv (total_k, 2, hk, d); writes dq and dkv (total_k, 2, hk, d).
void flash_attn_varlen_kvpacked_backward(const TensorView& dout, const TensorView& q, const TensorView& kv,
                                         const TensorView& out, const TensorView& softmax_lse, const TensorView& dq,
                                         const TensorView& dkv, const TensorView& cu_seqlens_q,
                                         const TensorView& cu_seqlens_k, std::int64_t max_seqlen_q,
                                         std::int64_t max_seqlen_k, const FlashAttnOptions& options = {},
                                         const TensorView& seqused_k = {});

// qkv (total, 3, h, d); writes dqkv (total, 3, h, d).
void flash_attn_varlen_qkvpacked_backward(const TensorView& dout, const TensorView& qkv, const TensorView& out,
                                          const TensorView& softmax_lse, const TensorView& dqkv,
                                          const TensorView& cu_seqlens, std::int64_t max_seqlen,
                                          const FlashAttnOptions& options = {});

// flash_attn(q, k, v, outputs, options), then flash_attn_backward with dout:
// one training step's attention. outputs.out is required (the backward reads
// it); outputs.softmax_lse is optional (absent: an fp32 (b, h, sq) buffer is
// allocated for the call); attn_probs as in flash_attn. Every argument of both
// calls is checked before anything is written, and outputs and gradients
// must not overlap each other nor q, k, v, dout. Results are bitwise those of
// the two separate calls.
void flash_attn_forward_backward(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& dout,
                                 const FlashAttnOutputs& outputs, const FlashAttnGrads& grads,
                                 const FlashAttnOptions& options = {});

}  // namespace flashattn
