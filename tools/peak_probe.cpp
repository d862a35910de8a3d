// In-process arithmetic peak (see peak_probe.hpp). Each probe is a loop of
// kChains independent accumulator chains, so the loop is bound by the
// throughput of the instruction, not its latency (Zen 5: 2 zmm FMA pipes of
// latency 4 need 8 chains in flight). The ISA probes live in their own target
// regions (src/cpu/isa_region.hpp); every header is included before them.
#include "peak_probe.hpp"

#include <immintrin.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cpu/isa_region.hpp"

namespace flashattn::tools {
namespace {

constexpr int kChains = 16;        // accumulators of the zmm probes (of 32 registers)
constexpr int kChainsYmm = 12;     // of the ymm probe (of 16 registers: 12 + 2 operands)
constexpr int kChainsScalar = 12;  // of the scalar probe

// Loop operands, read through a volatile so the compiler cannot fold them.
volatile float g_multiplier = 0.999f;
volatile float g_addend = 1e-3f;
// Every probe sums its accumulators into here, so no loop is dead code.
volatile float g_sink = 0;

template <std::size_t N>
float sum_lanes(const float (&lanes)[N]) {
  float total = 0;
  for (float lane : lanes) total += lane;
  return total;
}

}  // namespace
}  // namespace flashattn::tools

FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX512)
namespace flashattn::tools {
namespace {

// kChains x 16 lanes x 2 FLOPs per iteration.
double probe_avx512_fma(std::int64_t iterations) {
  const __m512 m = _mm512_set1_ps(g_multiplier), c = _mm512_set1_ps(g_addend);
  __m512 acc[kChains];
  for (__m512& a : acc) a = _mm512_set1_ps(1.0f);
  for (std::int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int k = 0; k < kChains; ++k) acc[k] = _mm512_fmadd_ps(acc[k], m, c);
  }
  __m512 sum = acc[0];
  for (int k = 1; k < kChains; ++k) sum = _mm512_add_ps(sum, acc[k]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  g_sink = sum_lanes(lanes);
  return 2.0 * 16 * kChains * static_cast<double>(iterations);
}

}  // namespace
}  // namespace flashattn::tools
FLASHATTN_ISA_END

FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX512_BF16)
namespace flashattn::tools {
namespace {

// kChains x 16 lanes x 2 products x (mul + add) per iteration. The pairs
// are (x, x) . (y, -y), so every accumulator stays where it started.
double probe_avx512_bf16_dot(std::int64_t iterations) {
  const __m512 x = _mm512_set1_ps(g_addend);
  const __m512bh a = _mm512_cvtne2ps_pbh(x, x);
  const __m512bh b = _mm512_cvtne2ps_pbh(x, _mm512_sub_ps(_mm512_setzero_ps(), x));
  __m512 acc[kChains];
  for (__m512& s : acc) s = _mm512_set1_ps(1.0f);
  for (std::int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int k = 0; k < kChains; ++k) acc[k] = _mm512_dpbf16_ps(acc[k], a, b);
  }
  __m512 sum = acc[0];
  for (int k = 1; k < kChains; ++k) sum = _mm512_add_ps(sum, acc[k]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  g_sink = sum_lanes(lanes);
  return 4.0 * 16 * kChains * static_cast<double>(iterations);
}

}  // namespace
}  // namespace flashattn::tools
FLASHATTN_ISA_END

FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX2)
namespace flashattn::tools {
namespace {

// kChainsYmm x 8 lanes x 2 FLOPs per iteration.
double probe_avx2_fma(std::int64_t iterations) {
  const __m256 m = _mm256_set1_ps(g_multiplier), c = _mm256_set1_ps(g_addend);
  __m256 acc[kChainsYmm];
  for (__m256& a : acc) a = _mm256_set1_ps(1.0f);
  for (std::int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int k = 0; k < kChainsYmm; ++k) acc[k] = _mm256_fmadd_ps(acc[k], m, c);
  }
  __m256 sum = acc[0];
  for (int k = 1; k < kChainsYmm; ++k) sum = _mm256_add_ps(sum, acc[k]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  g_sink = sum_lanes(lanes);
  return 2.0 * 8 * kChainsYmm * static_cast<double>(iterations);
}

}  // namespace
}  // namespace flashattn::tools
FLASHATTN_ISA_END

namespace flashattn::tools {
namespace {

// Baseline x86-64 (no FMA): a mul and an add per chain, 2 FLOPs. The empty
// asm keeps each accumulator a scalar register, so the compiler cannot pack
// chains into one SSE vector.
double probe_scalar_mul_add(std::int64_t iterations) {
  const float m = g_multiplier, c = g_addend;
  auto step = [m, c](float& a) {
    a = a * m + c;
    asm volatile("" : "+x"(a));
  };
  // Named locals, not an array: an array of scalars stays in memory.
  float a0 = 1, a1 = 1, a2 = 1, a3 = 1, a4 = 1, a5 = 1, a6 = 1, a7 = 1, a8 = 1, a9 = 1, a10 = 1, a11 = 1;
  static_assert(kChainsScalar == 12);
  for (std::int64_t it = 0; it < iterations; ++it) {
    step(a0), step(a1), step(a2), step(a3), step(a4), step(a5);
    step(a6), step(a7), step(a8), step(a9), step(a10), step(a11);
  }
  g_sink = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
  return 2.0 * kChainsScalar * static_cast<double>(iterations);
}

using Probe = double (*)(std::int64_t iterations);

Probe probe_for(Isa isa, MathPath path) {
  if (path == MathPath::bf16_dot) {
    if (isa != Isa::avx512_bf16) {
      throw std::invalid_argument("peak_gflops: bf16_dot needs avx512_bf16, not " + std::string(isa_name(isa)));
    }
    return probe_avx512_bf16_dot;
  }
  switch (isa) {
    case Isa::scalar: return probe_scalar_mul_add;
    case Isa::avx2: return probe_avx2_fma;
    case Isa::avx512:
    case Isa::avx512_bf16: return probe_avx512_fma;
  }
  throw std::invalid_argument("peak_gflops: unknown isa");
}

// CPU time of the calling thread: it stops while the thread is descheduled,
// so another process on a shared machine does not lower the peak.
double thread_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

// One run of the probe on the calling thread: its CPU seconds.
double seconds_of(Probe probe, std::int64_t iterations) {
  const double start = thread_cpu_seconds();
  probe(iterations);
  return thread_cpu_seconds() - start;
}

// Every thread runs `iterations` of the probe at once (they start together,
// after a barrier); GFLOP/s summed over the threads, each over its own CPU
// time. More threads than CPUs cannot add up to more than the CPUs: the sum
// is scaled down then. SMT siblings share a core's units while both accrue
// CPU time, so they count right.
double trial_gflops(Probe probe, std::int64_t iterations, int threads) {
  double gflops = 0;
#pragma omp parallel num_threads(threads) reduction(+ : gflops)
  {
#pragma omp barrier
    const double start = thread_cpu_seconds();
    const double flops = probe(iterations);
    gflops += flops / (thread_cpu_seconds() - start) / 1e9;
  }
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  return cpus > 0 && threads > cpus ? gflops * static_cast<double>(cpus) / threads : gflops;
}

}  // namespace

std::string_view math_path_name(MathPath path) { return path == MathPath::bf16_dot ? "bf16_dot" : "fma"; }

MathPath math_path_of(Isa isa, DType dtype) {
  return dtype == DType::bf16 && isa == Isa::avx512_bf16 ? MathPath::bf16_dot : MathPath::fma;
}

double peak_gflops(Isa isa, MathPath path, int threads) {
  constexpr double kCalibrationSeconds = 0.005, kTrialSeconds = 0.04;
  constexpr int kTrials = 3;
  const Probe probe = probe_for(isa, path);
  threads = std::max(threads, 1);
  // Size the trials on the calling thread alone: double the length until
  // two runs in a row last long enough to time. This also wakes the clocks.
  std::int64_t iterations = 1024;
  double seconds = 0;
  for (;;) {
    seconds = std::min(seconds_of(probe, iterations), seconds_of(probe, iterations));
    if (seconds >= kCalibrationSeconds) break;
    iterations *= 2;
  }
  iterations = static_cast<std::int64_t>(static_cast<double>(iterations) * kTrialSeconds / seconds) + 1;
  double best = 0;
  for (int t = 0; t < kTrials; ++t) best = std::max(best, trial_gflops(probe, iterations, threads));
  return best;
}

}  // namespace flashattn::tools
