// The kv-cache append on the device (run_kvcache_append): one block per
// (appended token t, kv head h, sequence b) writes that token's k row,
// rotated, and v row into the cache at position cached_keys + t, through
// the forward's clamped addressing (bounded_extent, KeyRows): a bad device
// length, row or page moves the write inside the cache, never outside it.
// The rotation is core::rotate_pair in fp32 rounded to Elem, bitwise the
// CPU append's.
#pragma once

#include <cstdint>

#include "core/rotary.hpp"
#include "cuda/convert.cuh"
#include "cuda/forward_plan.hpp"
#include "cuda/sequence_bounds.cuh"
#include "flashattn/params.hpp"

namespace flashattn::cuda {

inline constexpr int kAppendThreads = 128;

// x = appended token, y = kv head, z = sequence.
inline GridDims append_grid(const AttentionParams& p) { return {p.seqlen_new, p.heads_kv, p.batch}; }

template <class Elem>
__global__ void __launch_bounds__(kAppendThreads) append_kernel(const __grid_constant__ AttentionParams p) {
  const std::int64_t t = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const core::SequenceExtent seq = bounded_extent(p, b);
  const std::int64_t position = bounded_cached_keys(p, b) + t;
  const std::int64_t j = position - seq.k_start;  // the key index of `position` (contiguous rows start at k_start)
  // params hold the cache as the attention's read-only k and v; the append writes it.
  auto* k_dst = const_cast<Elem*>(key_rows<Elem>(p, p.k, p.k_stride, seq, h)(j));
  auto* v_dst = const_cast<Elem*>(key_rows<Elem>(p, p.v, p.v_stride, seq, h)(j));
  const Elem* k_src =
      static_cast<const Elem*>(p.k_new) + b * p.k_new_stride.batch + t * p.k_new_stride.row + h * p.k_new_stride.head;
  const Elem* v_src =
      static_cast<const Elem*>(p.v_new) + b * p.v_new_stride.batch + t * p.v_new_stride.row + h * p.v_new_stride.head;
  for (int c = threadIdx.x; c < p.head_dim_v; c += kAppendThreads) v_dst[c] = v_src[c];

  // k: thread c turns pair c < rotary_dim / 2; the dims past rotary_dim are copied.
  const AttentionParams::Rotary& rotary = p.rotary;
  const int rotary_dim = rotary.cos ? static_cast<int>(rotary.dim) : 0, half = rotary_dim / 2;
  const std::int64_t row = clamp_index(position, 0, rotary.positions - 1);  // of the tables
  for (int c = threadIdx.x; c < half + static_cast<int>(p.head_dim) - rotary_dim; c += kAppendThreads) {
    if (c >= half) {
      k_dst[rotary_dim + c - half] = k_src[rotary_dim + c - half];
      continue;
    }
    const core::RotaryPair pair = core::rotary_pair(c, rotary_dim, rotary.interleaved);
    float x0 = elem_to_float(k_src[pair.first]), x1 = elem_to_float(k_src[pair.second]);
    core::rotate_pair(x0, x1, elem_to_float(static_cast<const Elem*>(rotary.cos)[row * rotary.cos_stride + c]),
                      elem_to_float(static_cast<const Elem*>(rotary.sin)[row * rotary.sin_stride + c]));
    k_dst[pair.first] = float_to_elem<Elem>(x0);
    k_dst[pair.second] = float_to_elem<Elem>(x1);
  }
}

}  // namespace flashattn::cuda
