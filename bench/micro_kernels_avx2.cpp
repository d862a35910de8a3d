// Micro-kernel benchmarks compiled for avx2 (see micro_kernels.inl).
#include <benchmark/benchmark.h>

#include <string>

#include "cpu/forward_includes.hpp"
FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX2)
namespace flashattn::bench::avx2 {

namespace {
#include "cpu/vec_avx2.inl"
#include "cpu/micro_kernel.inl"

#include "micro_kernels.inl"
}  // namespace

void register_benchmarks() {
  register_kernels<F32Math>("avx2/f32");
  benchmark::RegisterBenchmark("avx2/exp", exp_kernel);
}

}  // namespace flashattn::bench::avx2
FLASHATTN_ISA_END
