// flash_attn_with_kvcache cases for the CUDA path, shared by the emulated
// kernels (tests/cuda_emu) and the GPU suite (tests/cuda): f16 / bf16,
// paged (pages of 1, 3, 16) and contiguous caches, cache_batch_idx,
// leftpad, an int cache_seqlens, rotary interleaved and GPT-NeoX at
// rotary_dim d / 2 and d, causal, windowed (q rotated row by row) and not
// (every q row at cache_seqlens), GQA, seqlen_q 1 to 70, with and without
// new k / v, split-KV, element loads. Small enough to emulate.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "frontends/kvcache_call.hpp"
#include "support/kvcache_problem.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {

inline std::vector<CacheCase> cuda_kvcache_cases() {
  using R = Rotary;
  return {
      {.name = "decode contiguous, no append",
       .dtype = DType::bf16,
       .heads = 8,
       .heads_kv = 2,
       .head_dim = 64,
       .cache_lens = {37, 5, 64}},
      {.name = "decode page 1, append, interleaved d, causal",
       .dtype = DType::bf16,
       .heads = 4,
       .heads_kv = 2,
       .cache_lens = {19, 1},
       .seqlen_new = 1,
       .page_size = 1,
       .rotary = R::interleaved,
       .causal = true},
      {.name = "sq3 page 3, append 3, NeoX d/2, causal, GQA 4",
       .dtype = DType::f16,
       .seqlen_q = 3,
       .heads = 8,
       .heads_kv = 2,
       .head_dim = 64,
       .cache_lens = {50, 9},
       .seqlen_new = 3,
       .page_size = 3,
       .rotary = R::neox,
       .rotary_dim = 32,
       .causal = true},
      {.name = "sq2 page 16, append 2, interleaved d/2, not causal",
       .dtype = DType::bf16,
       .seqlen_q = 2,
       .heads = 4,
       .heads_kv = 1,
       .head_dim = 128,
       .cache_lens = {40, 0},
       .seqlen_new = 2,
       .page_size = 16,
       .rotary = R::interleaved,
       .rotary_dim = 64},
      {.name = "cache_batch_idx, NeoX d, not causal",
       .dtype = DType::f16,
       .seqlen_q = 2,
       .heads = 4,
       .heads_kv = 1,
       .cache_lens = {33, 12, 1},
       .seqlen_new = 2,
       .batch_index = true,
       .rotary = R::neox},
      {.name = "leftpad, sq3 > seqlen_new 1, interleaved, causal, alibi",
       .dtype = DType::bf16,
       .seqlen_q = 3,
       .heads = 4,
       .heads_kv = 2,
       .head_dim = 64,
       .cache_lens = {30, 20},
       .seqlen_new = 1,
       .leftpad = {7, 20},
       .rotary = R::interleaved,
       .causal = true,
       .alibi = true},
      {.name = "leftpad and cache_batch_idx, no append, softcap",
       .dtype = DType::f16,
       .seqlen_q = 4,
       .heads = 4,
       .heads_kv = 4,
       .cache_lens = {45, 9},
       .batch_index = true,
       .leftpad = {3, 0},
       .softcap = 5.0f},
      {.name = "window, append 16, interleaved rotary_dim 16",
       .dtype = DType::f16,
       .seqlen_q = 16,
       .heads = 4,
       .heads_kv = 4,
       .head_dim = 64,
       .cache_lens = {100, 70},
       .seqlen_new = 16,
       .rotary = R::interleaved,
       .rotary_dim = 16,
       .window = {20, 0}},
      {.name = "int cache_seqlens, page 16, append, NeoX, causal",
       .dtype = DType::bf16,
       .heads = 8,
       .heads_kv = 1,
       .head_dim = 64,
       .cache_lens = {45, 45},
       .seqlen_new = 1,
       .page_size = 16,
       .rotary = R::neox,
       .causal = true,
       .int_seqlens = true},
      {.name = "int cache_seqlens, contiguous, leftpad, no append",
       .dtype = DType::bf16,
       .seqlen_q = 2,
       .heads = 2,
       .heads_kv = 2,
       .cache_lens = {30, 30},
       .leftpad = {4, 0},
       .causal = true,
       .int_seqlens = true},
      {.name = "split-KV decode, page 16, append, interleaved",
       .dtype = DType::bf16,
       .heads = 8,
       .heads_kv = 2,
       .head_dim = 128,
       .cache_lens = {700, 300},
       .seqlen_new = 1,
       .page_size = 16,
       .rotary = R::interleaved,
       .causal = true,
       .num_splits = 3},
      {.name = "d20 element loads, append, interleaved d",
       .dtype = DType::f16,
       .seqlen_q = 3,
       .heads = 6,
       .heads_kv = 3,
       .head_dim = 20,
       .cache_lens = {64, 2},
       .seqlen_new = 2,
       .page_size = 16,
       .rotary = R::interleaved,
       .causal = true},
      {.name = "sq70: two query blocks, append 70, NeoX, causal",
       .dtype = DType::bf16,
       .seqlen_q = 70,
       .heads = 2,
       .heads_kv = 1,
       .head_dim = 64,
       .cache_lens = {10, 90},
       .seqlen_new = 70,
       .rotary = R::neox,
       .causal = true},
      {.name = "empty cache rows, causal",
       .dtype = DType::f16,
       .seqlen_q = 3,
       .heads = 2,
       .heads_kv = 2,
       .cache_lens = {0, 4},
       .causal = true},
  };
}

// One case on both paths: equal inputs in `host` and `device`, the CPU
// call on `host` done (appended and its params ready for the reference);
// the test runs the CUDA call on `device`, copies its results back into
// `device`, then expect_matches_cpu_call().
struct CudaAgainstCpu {
  KvCacheProblem host, device;
  std::unique_ptr<frontend::KvCacheCall> host_call;

  CudaAgainstCpu(const CacheCase& c, std::uint64_t salt) {
    setup(host, c, salt);
    setup(device, c, salt);
    host_call =
        std::make_unique<frontend::KvCacheCall>(host.q, host.k_cache, host.v_cache, host.outputs(), host.opts());
    host_call->append();
  }

  // The CUDA call's results against the CPU call's: caches bitwise, out and
  // lse by the oracle rule against the fp64 reference of the CPU call's
  // params (whose q the host rotated).
  void expect_matches_cpu_call() const {
    EXPECT_TRUE(device.k_cache.same_bits(host.k_cache)) << "k_cache differs from the CPU append's";
    EXPECT_TRUE(device.v_cache.same_bits(host.v_cache)) << "v_cache differs from the CPU append's";
    AttentionParams reference = host_call->params();
    reference.out = device.out.view().data;  // same shapes and strides as the host call's
    reference.lse = device.lse.data<float>();
    const ForwardOracle oracle(reference);
    EXPECT_TRUE(oracle.check_out());
    EXPECT_TRUE(oracle.check_lse(std::numeric_limits<float>::infinity()));
  }
};

}  // namespace flashattn::testing
