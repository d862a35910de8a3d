// Element types and the 16-bit float conversions the library uses.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace flashattn {

enum class DType : std::uint8_t { f32, f16, bf16, f64, i32 };

// Bytes per element.
constexpr int dtype_size(DType t) {
  switch (t) {
    case DType::f16:
    case DType::bf16: return 2;
    case DType::f64: return 8;
    default: return 4;
  }
}

// "f32", "f16", "bf16", "f64", "i32".
std::string_view dtype_name(DType t);

// Storage types for 16-bit floats: plain bit patterns, no arithmetic.
struct bfloat16 { std::uint16_t bits; };
struct float16 { std::uint16_t bits; };

// Round-to-nearest-even conversions (NaN stays NaN).
inline bfloat16 to_bfloat16(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<std::uint16_t>((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return {static_cast<std::uint16_t>(u >> 16)};
}

inline float to_float(bfloat16 x) {
  std::uint32_t u = static_cast<std::uint32_t>(x.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float16 to_float16(float x);
float to_float(float16 x);

}  // namespace flashattn
