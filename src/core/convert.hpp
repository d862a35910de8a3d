// Rows of f32 / f16 / bf16 elements to and from fp32, for the front-ends'
// element-wise work (the kv-cache append, merging states). The kernels use
// their own vectorised conversions (src/cpu/vec_*.inl).
#pragma once

#include <cstdint>

#include "flashattn/dtype.hpp"

namespace flashattn::core {

inline void load_floats(const void* src, DType dtype, std::int64_t n, float* dst) {
  for (std::int64_t c = 0; c < n; ++c) {
    switch (dtype) {
      case DType::bf16: dst[c] = to_float(static_cast<const bfloat16*>(src)[c]); break;
      case DType::f16: dst[c] = to_float(static_cast<const float16*>(src)[c]); break;
      default: dst[c] = static_cast<const float*>(src)[c]; break;
    }
  }
}

// Round to nearest even, as every conversion of the library.
inline void store_floats(const float* src, DType dtype, std::int64_t n, void* dst) {
  for (std::int64_t c = 0; c < n; ++c) {
    switch (dtype) {
      case DType::bf16: static_cast<bfloat16*>(dst)[c] = to_bfloat16(src[c]); break;
      case DType::f16: static_cast<float16*>(dst)[c] = to_float16(src[c]); break;
      default: static_cast<float*>(dst)[c] = src[c]; break;
    }
  }
}

}  // namespace flashattn::core
