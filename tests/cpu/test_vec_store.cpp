// The vectorised fp32 -> f16 / bf16 stores of each ISA (vec_<isa>.inl's
// store_row) are bit-identical to dtype.hpp's scalar conversions: ties to
// even, subnormals, overflow to inf, the f16 overflow edge, NaN payloads.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <random>
#include <vector>

#include "cpu/forward_includes.hpp"
#include "flashattn/runtime.hpp"
#include "support/cpu_runs.hpp"

FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX2)
namespace flashattn::test_vec::avx2 {
namespace {
#include "cpu/vec_avx2.inl"
}  // namespace
void store(const float* src, std::int64_t n, DType dtype, void* dst) { store_row(src, n, dtype, dst); }
}  // namespace flashattn::test_vec::avx2
FLASHATTN_ISA_END

FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX512)
namespace flashattn::test_vec::avx512 {
namespace {
#include "cpu/vec_avx512.inl"
}  // namespace
void store(const float* src, std::int64_t n, DType dtype, void* dst) { store_row(src, n, dtype, dst); }
}  // namespace flashattn::test_vec::avx512
FLASHATTN_ISA_END

namespace flashattn {
namespace {

using testing::cpu_runs;

// Edge values plus random bit patterns (every exponent, NaNs included),
// an odd count so the scalar tails run too.
std::vector<float> probe_values() {
  std::vector<float> x = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 1e30f,
                          std::bit_cast<float>(0x7f800000u), std::bit_cast<float>(0xff800000u),
                          std::bit_cast<float>(0x7fc00001u), std::bit_cast<float>(0xffbfffffu),
                          std::bit_cast<float>(0x7f800001u), 5.96e-8f, 2.98e-8f, 2.99e-8f, 6.1e-5f,
                          std::bit_cast<float>(0x3f808000u), std::bit_cast<float>(0x3f818000u),
                          std::bit_cast<float>(0x3f801000u), std::bit_cast<float>(0x3f803000u)};
  std::mt19937 rng(7);
  for (int i = 0; i < 20001; ++i) x.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(rng())));
  std::uniform_real_distribution<float> small(-70000.0f, 70000.0f);
  for (int i = 0; i < 5000; ++i) x.push_back(small(rng));
  return x;
}

using StoreFn = void (*)(const float*, std::int64_t, DType, void*);

void expect_bit_identical(StoreFn store) {
  const std::vector<float> x = probe_values();
  const auto n = static_cast<std::int64_t>(x.size());
  std::vector<std::uint16_t> half(x.size());
  store(x.data(), n, DType::bf16, half.data());
  for (std::size_t i = 0; i < x.size(); ++i)
    ASSERT_EQ(half[i], to_bfloat16(x[i]).bits) << "bf16 of bits 0x" << std::hex << std::bit_cast<std::uint32_t>(x[i]);
  store(x.data(), n, DType::f16, half.data());
  for (std::size_t i = 0; i < x.size(); ++i)
    ASSERT_EQ(half[i], to_float16(x[i]).bits) << "f16 of bits 0x" << std::hex << std::bit_cast<std::uint32_t>(x[i]);
  std::vector<float> same(x.size());
  store(x.data(), n, DType::f32, same.data());
  EXPECT_EQ(0, std::memcmp(same.data(), x.data(), x.size() * sizeof(float)));
}

TEST(VecStore, Avx2MatchesScalarConversions) {
  if (!cpu_runs(Isa::avx2)) GTEST_SKIP() << "CPU lacks avx2";
  expect_bit_identical(test_vec::avx2::store);
}

TEST(VecStore, Avx512MatchesScalarConversions) {
  if (!cpu_runs(Isa::avx512)) GTEST_SKIP() << "CPU lacks avx512";
  expect_bit_identical(test_vec::avx512::store);
}

}  // namespace
}  // namespace flashattn
