// Rotary position embedding (RoPE) of one row, as flash-attn applies it to
// new keys and queries of flash_attn_with_kvcache: in fp32, pairs rotated by
// the angle of the row's position, dims past rotary_dim unchanged.
#pragma once

#include <cstdint>

namespace flashattn::core {

// x (head_dim,) in place; cos / sin (rotary_dim / 2,) are the tables' row at
// the position. Pair c is (2c, 2c + 1) when interleaved (GPT-J), else
// (c, c + rotary_dim / 2) (GPT-NeoX):
//   x0' = x0 cos_c - x1 sin_c,  x1' = x1 cos_c + x0 sin_c
inline void rotate_row(float* x, std::int64_t rotary_dim, const float* cos, const float* sin, bool interleaved) {
  const std::int64_t half = rotary_dim / 2;
  for (std::int64_t c = 0; c < half; ++c) {
    float& x0 = x[interleaved ? 2 * c : c];
    float& x1 = x[interleaved ? 2 * c + 1 : c + half];
    const float a = x0, b = x1;
    x0 = a * cos[c] - b * sin[c];
    x1 = b * cos[c] + a * sin[c];
  }
}

}  // namespace flashattn::core
