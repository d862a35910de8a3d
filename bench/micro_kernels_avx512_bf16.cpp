// Micro-kernel benchmarks compiled for avx512_bf16 (see micro_kernels.inl).
#include <benchmark/benchmark.h>

#include <string>

#include "cpu/forward_includes.hpp"
FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX512_BF16)
namespace flashattn::bench::avx512_bf16 {

namespace {
#include "cpu/vec_avx512.inl"
#include "cpu/micro_kernel.inl"
#include "cpu/bf16_dot_math.inl"
#include "micro_kernels.inl"
}  // namespace

void register_benchmarks() {
  register_kernels<Bf16DotMath>("avx512_bf16/bf16_dot");
}

}  // namespace flashattn::bench::avx512_bf16
FLASHATTN_ISA_END
