// flash_attn_with_kvcache on a GPU: the public call on device copies of a
// problem (the shared CUDA case list, then larger decode and prefill
// shapes) against the same call on the CPU. The caches after the call must
// equal the CPU's bitwise (the append and its rotary), out and lse must
// pass the oracle rule against the fp64 reference of the CPU call's params.
// Enqueued on a stream with the workspace the call asks for. Needs a GPU:
// labelled `gpu`, left out of `make test` and run by scripts/gpu-check.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <vector>

#include "cuda/check.hpp"
#include "device_copy.hpp"
#include "frontends/kvcache_call.hpp"
#include "support/kvcache_cuda_cases.hpp"

namespace flashattn::testing {
namespace {

// Device copies of a problem's tensors, made on first use.
class DeviceTensors {
 public:
  TensorView operator()(const HostTensor& t) {
    std::unique_ptr<DeviceCopy>& copy = copies_[&t];
    if (!copy) copy = std::make_unique<DeviceCopy>(t);
    return copy->view();
  }
  void copy_back(const HostTensor& t) const { copies_.at(&t)->copy_back(); }

 private:
  std::map<const HostTensor*, std::unique_ptr<DeviceCopy>> copies_;
};

void run_case(const CacheCase& c, std::uint64_t salt) {
  SCOPED_TRACE(c.name);
  CudaAgainstCpu run(c, salt);
  KvCacheProblem& device = run.device;

  DeviceTensors on_gpu;
  auto view = [&](const HostTensor& t) { return on_gpu(t); };
  KvCacheOptions options = device.opts(view);
  const KvCacheOutputs outputs = device.outputs(view);
  const TensorView q = on_gpu(device.q), k_cache = on_gpu(device.k_cache), v_cache = on_gpu(device.v_cache);
  cudaStream_t stream;
  FLASHATTN_CUDA_CHECK(cudaStreamCreate(&stream));
  options.stream = stream;
  options.workspace_bytes = flash_attn_with_kvcache_workspace_bytes(q, k_cache, v_cache, outputs, options);
  void* workspace = nullptr;
  if (options.workspace_bytes > 0) FLASHATTN_CUDA_CHECK(cudaMalloc(&workspace, options.workspace_bytes));
  options.workspace = workspace;
  flash_attn_with_kvcache(q, k_cache, v_cache, outputs, options);
  FLASHATTN_CUDA_CHECK(cudaStreamSynchronize(stream));
  cudaFree(workspace);
  FLASHATTN_CUDA_CHECK(cudaStreamDestroy(stream));
  for (const HostTensor* t : {&device.k_cache, &device.v_cache, &device.out, &device.lse}) on_gpu.copy_back(*t);

  run.expect_matches_cpu_call();
}

TEST(CudaKvCache, TheCaseListMatchesTheCpuCall) {
  std::uint64_t salt = 0;
  for (const CacheCase& c : cuda_kvcache_cases()) run_case(c, ++salt);
}

// Decode steps over long paged caches and a prefill chunk, in both dtypes.
TEST(CudaKvCache, DecodeAndPrefillShapes) {
  using R = Rotary;
  std::uint64_t salt = 100;
  for (DType dtype : {DType::bf16, DType::f16}) {
    for (std::int64_t page : {1, 16, 256}) {
      run_case({.name = "decode",
                .dtype = dtype,
                .heads = 32,
                .heads_kv = 8,
                .head_dim = 128,
                .cache_lens = {4000, 17, 1500, 0},
                .seqlen_new = 1,
                .page_size = page,
                .rotary = R::neox,
                .causal = true},
               ++salt);
    }
    run_case({.name = "prefill chunk",
              .dtype = dtype,
              .seqlen_q = 200,
              .heads = 16,
              .heads_kv = 4,
              .head_dim = 64,
              .cache_lens = {300, 0},
              .seqlen_new = 200,
              .page_size = 16,
              .rotary = R::interleaved,
              .rotary_dim = 32,
              .causal = true},
             ++salt);
    run_case({.name = "speculative rows, window",
              .dtype = dtype,
              .seqlen_q = 5,
              .heads = 8,
              .heads_kv = 8,
              .head_dim = 256,
              .cache_lens = {900, 60},
              .seqlen_new = 5,
              .batch_index = true,
              .rotary = R::interleaved,
              .window = {128, 0}},
             ++salt);
  }
}

}  // namespace
}  // namespace flashattn::testing
