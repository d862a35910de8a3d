// Elements to and from fp32 on the device, rounding to nearest even like
// the host's core/convert.hpp, so rows rotated on either side are bitwise
// equal. Elem: __half or __nv_bfloat16.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

namespace flashattn::cuda {

__device__ __forceinline__ float elem_to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float elem_to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class Elem>
__device__ __forceinline__ Elem float_to_elem(float x) {
  if constexpr (std::is_same_v<Elem, __half>) {
    return __float2half_rn(x);
  } else {
    return __float2bfloat16_rn(x);
  }
}

}  // namespace flashattn::cuda
