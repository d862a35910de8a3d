// A device copy of a HostTensor's storage for the GPU suite, viewed like it
// (same shape, strides and offset) on cuda:0.
#pragma once

#include <cuda_runtime.h>

#include "cuda/check.hpp"
#include "flashattn/tensor.hpp"
#include "support/host_tensor.hpp"

namespace flashattn::testing {

class DeviceCopy {
 public:
  explicit DeviceCopy(const HostTensor& host) : host_(host) {
    FLASHATTN_CUDA_CHECK(cudaMalloc(&data_, host.bytes().size()));
    FLASHATTN_CUDA_CHECK(cudaMemcpy(data_, host.bytes().data(), host.bytes().size(), cudaMemcpyHostToDevice));
  }
  ~DeviceCopy() { cudaFree(data_); }
  DeviceCopy(const DeviceCopy&) = delete;
  DeviceCopy& operator=(const DeviceCopy&) = delete;

  TensorView view() const {
    TensorView v = host_.view();
    v.data = data_;  // HostTensor views start at their storage
    v.device = {DeviceType::cuda, 0};
    return v;
  }
  void* data() const { return data_; }
  std::size_t bytes() const { return host_.bytes().size(); }
  // Copies the device storage back over the host tensor's.
  void copy_back() const {
    FLASHATTN_CUDA_CHECK(cudaMemcpy(host_.data<unsigned char>(), data_, host_.bytes().size(), cudaMemcpyDeviceToHost));
  }

 private:
  const HostTensor& host_;
  void* data_ = nullptr;
};

}  // namespace flashattn::testing
