// The CUDA build's dispatch, on a machine without a usable GPU (ctest hides
// every device: CUDA_VISIBLE_DEVICES is empty): calls on CUDA tensors reach
// the CUDA backend, which rejects what it does not run yet and a missing
// device with a clear flashattn::Error before any launch; host buffers
// tagged as CUDA tensors are never read or written. The GPU suite itself
// (the oracle on a real device) runs from scripts/gpu-check.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "flashattn/error.hpp"
#include "flashattn/flash_attn.hpp"
#include "flashattn/flash_attn_backward.hpp"
#include "support/host_tensor.hpp"

namespace flashattn {
namespace {

using testing::HostTensor;

constexpr Device kCuda{DeviceType::cuda, 0};

// q, k, v, out and lse of a small bf16 problem, all tagged as on cuda:0.
struct CudaTaggedProblem {
  HostTensor q{DType::bf16, {1, 8, 2, 64}, 1.0}, k{DType::bf16, {1, 8, 2, 64}, 1.0}, v{DType::bf16, {1, 8, 2, 64}, 1.0};
  HostTensor out{DType::bf16, {1, 8, 2, 64}, -7.0}, lse{DType::f32, {1, 2, 8}, -7.0};

  static TensorView on_cuda(const HostTensor& t) {
    TensorView view = t.view();
    view.device = kCuda;
    return view;
  }
  void run(const FlashAttnOptions& options = {}) const {
    flash_attn(on_cuda(q), on_cuda(k), on_cuda(v), {.out = on_cuda(out), .softmax_lse = on_cuda(lse)}, options);
  }
  bool outputs_untouched() const {
    const HostTensor fresh_out(DType::bf16, {1, 8, 2, 64}, -7.0), fresh_lse(DType::f32, {1, 2, 8}, -7.0);
    return out.bytes() == fresh_out.bytes() && lse.bytes() == fresh_lse.bytes();
  }
};

void expect_error(const std::function<void()>& call, const std::vector<std::string>& parts) {
  try {
    call();
    FAIL() << "no flashattn::Error";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& part : parts)
      EXPECT_NE(message.find(part), std::string::npos) << message << "\nlacks: " << part;
  }
}

TEST(CudaDispatch, NoDeviceIsAClearErrorAndNothingIsWritten) {
  int count = -1;
  ASSERT_NE(cudaGetDeviceCount(&count) == cudaSuccess && count > 0, true) << "the test expects every device hidden";
  const CudaTaggedProblem p;
  expect_error([&] { p.run(); }, {"CUDA device", "none is available"});
  EXPECT_TRUE(p.outputs_untouched());
}

TEST(CudaDispatch, UnsupportedFeaturesAreNamedBeforeTheDeviceIsQueried) {
  const CudaTaggedProblem p;
  const HostTensor probs(DType::f32, {1, 2, 8, 8}, -7.0);
  expect_error(
      [&] {
        flash_attn(p.on_cuda(p.q), p.on_cuda(p.k), p.on_cuda(p.v),
                   {.out = p.on_cuda(p.out), .attn_probs = p.on_cuda(probs)}, {.return_attn_probs = true});
      },
      {"return_attn_probs", "not supported by the CUDA backend yet"});
  EXPECT_TRUE(p.outputs_untouched());
}

TEST(CudaDispatch, F32IsNotRunOnCuda) {
  const HostTensor q(DType::f32, {1, 8, 2, 64}), out(DType::f32, {1, 8, 2, 64}, -7.0);
  auto cuda = [](const HostTensor& t) { return CudaTaggedProblem::on_cuda(t); };
  expect_error([&] { flash_attn(cuda(q), cuda(q), cuda(q), {.out = cuda(out)}); },
               {"dtype f32", "expected f16 or bf16"});
}

TEST(CudaDispatch, MixingHostAndDeviceTensorsIsRejected) {
  const CudaTaggedProblem p;
  expect_error(
      [&] {
        flash_attn(CudaTaggedProblem::on_cuda(p.q), p.k.view(), CudaTaggedProblem::on_cuda(p.v),
                   {.out = CudaTaggedProblem::on_cuda(p.out)});
      },
      {"k is on cpu", "expected cuda:0"});
  EXPECT_TRUE(p.outputs_untouched());
}

TEST(CudaDispatch, TheBackwardStaysOnTheCpu) {
  const CudaTaggedProblem p;
  const HostTensor dq(DType::bf16, {1, 8, 2, 64}), dk(DType::bf16, {1, 8, 2, 64}), dv(DType::bf16, {1, 8, 2, 64});
  auto cuda = [](const HostTensor& t) { return CudaTaggedProblem::on_cuda(t); };
  expect_error(
      [&] {
        flash_attn_forward_backward(cuda(p.q), cuda(p.k), cuda(p.v), cuda(p.q),
                                    {.out = cuda(p.out), .softmax_lse = cuda(p.lse)},
                                    {.dq = cuda(dq), .dk = cuda(dk), .dv = cuda(dv)});
      },
      {"cuda:0", "does not run the backward yet"});
  EXPECT_TRUE(p.outputs_untouched());
}

}  // namespace
}  // namespace flashattn
