// Rotary position embedding (RoPE) of one row, as flash-attn applies it to
// new keys and queries of flash_attn_with_kvcache: in fp32, pairs rotated by
// the angle of the row's position, dims past rotary_dim unchanged. One
// formula for every backend (FLASHATTN_HD), so rotated rows are bitwise equal.
#pragma once

#include <cstdint>

#include "core/host_device.hpp"
#include "flashattn/params.hpp"

namespace flashattn::core {

// One pair: x0' = x0 cos - x1 sin,  x1' = x1 cos + x0 sin, each product
// rounded on its own. The host builds with -ffp-contract=off; nvcc would
// fuse a product into an FMA, so the device spells the roundings out.
FLASHATTN_HD inline void rotate_pair(float& x0, float& x1, float cos, float sin) {
  const float a = x0, b = x1;
#if defined(__CUDA_ARCH__)
  x0 = __fsub_rn(__fmul_rn(a, cos), __fmul_rn(b, sin));
  x1 = __fadd_rn(__fmul_rn(b, cos), __fmul_rn(a, sin));
#else
  x0 = a * cos - b * sin;
  x1 = b * cos + a * sin;
#endif
}

// The two dims of pair c < rotary_dim / 2: (2c, 2c + 1) when interleaved
// (GPT-J), else (c, c + rotary_dim / 2) (GPT-NeoX). Head dims are <= 256.
struct RotaryPair {
  int first, second;
};
FLASHATTN_HD inline RotaryPair rotary_pair(int c, int rotary_dim, bool interleaved) {
  return interleaved ? RotaryPair{2 * c, 2 * c + 1} : RotaryPair{c, c + rotary_dim / 2};
}

// x (head_dim,) in place; cos / sin (rotary_dim / 2,) are the tables' row at the position.
inline void rotate_row(float* x, std::int64_t rotary_dim, const float* cos, const float* sin, bool interleaved) {
  for (int c = 0; c < rotary_dim / 2; ++c) {
    const RotaryPair d = rotary_pair(c, static_cast<int>(rotary_dim), interleaved);
    rotate_pair(x[d.first], x[d.second], cos[c], sin[c]);
  }
}

// The position query row i of a sequence with `cached` keys before the
// append turns by: cached + i when rotary.q_per_row (causal or windowed,
// as upstream), else cached for every row.
FLASHATTN_HD inline std::int64_t rotary_position_of_q(const AttentionParams::Rotary& rotary, std::int64_t cached,
                                                      std::int64_t i) {
  return cached + (rotary.q_per_row ? i : 0);
}

}  // namespace flashattn::core
