// flash_attn_with_kvcache's CUDA path on the emulator. The front-end fills
// the params of a call whose tensors are tagged as on cuda:0 (host memory,
// which the emulated kernels read directly: nothing on the device side is
// checked on the host), then the real append and forward kernels run, and
//   - the caches equal the CPU call's bitwise (appended keys rotated on the
//     device, the same rounding as the host's);
//   - out and lse pass the oracle rule against the fp64 reference of the
//     CPU call's params, whose q the host rotated: the kernel's in-place
//     rotation of the Q tile has to match it.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "emulated_launch.hpp"
#include "frontends/kvcache_call.hpp"
#include "support/kvcache_cuda_cases.hpp"

namespace flashattn::testing {
namespace {

constexpr Device kCuda{DeviceType::cuda, 0};

TensorView on_cuda(const HostTensor& t) {
  TensorView view = t.view();
  view.device = kCuda;
  return view;
}

void run_case(const CacheCase& c, std::uint64_t salt) {
  SCOPED_TRACE(c.name);
  CudaAgainstCpu run(c, salt);
  KvCacheProblem& device = run.device;

  const frontend::KvCacheCall device_call(on_cuda(device.q), on_cuda(device.k_cache), on_cuda(device.v_cache),
                                          device.outputs(&on_cuda), device.opts(&on_cuda));
  const AttentionParams& p = device_call.params();
  ASSERT_EQ(p.device.type, DeviceType::cuda);
  EXPECT_EQ(p.rotary.rotate_q, c.rotary != Rotary::none);
  EXPECT_EQ(p.q, device.q.view().data) << "the CUDA path rotates q in the kernel, not in a copy";
  emulated_append(p);
  emulated_forward(p);

  run.expect_matches_cpu_call();
}

TEST(EmulatedCudaKvCache, AppendAndForwardMatchTheCpuCall) {
  std::uint64_t salt = 0;
  for (const CacheCase& c : cuda_kvcache_cases()) run_case(c, ++salt);
}

}  // namespace
}  // namespace flashattn::testing
