// merge_attention_states: combine attention results computed over disjoint
// key sets into the result over their union (split-KV decoding, chunked
// prefill over a cached prefix, context parallelism):
//
//   lse = m + log(sum_s exp(lse_s - m)),  m = max_s lse_s
//   out = sum_s exp(lse_s - lse) * out_s
//
// A part with lse = -inf (no key) contributes nothing; rows where every part
// is empty get out = 0 and lse = -inf. +inf lse (flash-attn's marker of an
// empty row) is read as -inf.
//
// Shapes: out (b, sq, h, d) with lse fp32 (b, h, sq), or varlen out
// (total, h, d) with lse fp32 (h, total); every part and the result alike.
// out tensors are f32, f16 or bf16 (parts and result may differ); the sums
// run in fp64 and round once. In place: the result may be exactly one of
// the parts (same data, shape and strides); any other overlap is an error.
#pragma once

#include <span>

#include "flashattn/tensor.hpp"

namespace flashattn {

struct AttentionState {
  TensorView out{};  // (b, sq, h, d) or (total, h, d)
  TensorView lse{};  // fp32 (b, h, sq) or (h, total)
};

// parts: at least one. Every argument is checked before anything is written.
void merge_attention_states(std::span<const AttentionState> parts, const AttentionState& merged);

}  // namespace flashattn
