// Micro-kernel benchmarks compiled for avx512 (see micro_kernels.inl).
#include <benchmark/benchmark.h>

#include <string>

#include "cpu/forward_includes.hpp"
FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX512)
namespace flashattn::bench::avx512 {

namespace {
#include "cpu/vec_avx512.inl"
#include "cpu/micro_kernel.inl"

#include "micro_kernels.inl"
}  // namespace

void register_benchmarks() {
  register_kernels<F32Math>("avx512/f32");
  benchmark::RegisterBenchmark("avx512/exp", exp_kernel);
}

}  // namespace flashattn::bench::avx512
FLASHATTN_ISA_END
