// Vec::transpose_sum of each ISA (the decode kernels' 16-at-a-time dot
// product reduction): lane i of the result is the sum of vector i's lanes,
// compared with sums of small integers, which every summation order gets
// exactly.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "cpu/forward_includes.hpp"
#include "flashattn/runtime.hpp"
#include "support/cpu_runs.hpp"

FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX2)
namespace flashattn::test_vec_sum::avx2 {
namespace {
#include "cpu/vec_avx2.inl"
}  // namespace
#include "cpu/transpose_sum_probe.inl"
}  // namespace flashattn::test_vec_sum::avx2
FLASHATTN_ISA_END

FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX512)
namespace flashattn::test_vec_sum::avx512 {
namespace {
#include "cpu/vec_avx512.inl"
}  // namespace
#include "cpu/transpose_sum_probe.inl"
}  // namespace flashattn::test_vec_sum::avx512
FLASHATTN_ISA_END

namespace flashattn {
namespace {

using testing::cpu_runs;

void expect_row_sums(int width, void (*transpose_sum)(const float*, float*)) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> value(-1000, 1000);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> in(width * width), out(width, -1.0f);
    for (float& x : in) x = static_cast<float>(value(rng));
    transpose_sum(in.data(), out.data());
    for (int i = 0; i < width; ++i) {
      float sum = 0.0f;
      for (int lane = 0; lane < width; ++lane) sum += in[i * width + lane];
      ASSERT_EQ(out[i], sum) << "vector " << i << " trial " << trial;
    }
  }
}

TEST(VecTransposeSum, Avx2SumsEachVectorIntoItsLane) {
  if (!cpu_runs(Isa::avx2)) GTEST_SKIP() << "CPU lacks avx2";
  expect_row_sums(test_vec_sum::avx2::kWidth, test_vec_sum::avx2::transpose_sum);
}

TEST(VecTransposeSum, Avx512SumsEachVectorIntoItsLane) {
  if (!cpu_runs(Isa::avx512)) GTEST_SKIP() << "CPU lacks avx512";
  expect_row_sums(test_vec_sum::avx512::kWidth, test_vec_sum::avx512::transpose_sum);
}

}  // namespace
}  // namespace flashattn
