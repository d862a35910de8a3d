// Every CUDA runtime call is checked: a failure throws flashattn::Error
// with the call, the CUDA error name and its string.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "flashattn/error.hpp"

namespace flashattn::cuda {

inline void check(cudaError_t status, const char* call) {
  if (status == cudaSuccess) return;
  throw Error(std::string("CUDA: ") + call + " failed: " + cudaGetErrorName(status) + " (" +
              cudaGetErrorString(status) + ")");
}

}  // namespace flashattn::cuda

#define FLASHATTN_CUDA_CHECK(call) ::flashattn::cuda::check((call), #call)
