// core::FastDivmod (the CUDA kernels' page arithmetic) against the hardware
// division: every divisor up to 4096 over dense and edge dividends, and
// large divisors at the edges of the 31-bit range.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/fast_divmod.hpp"

namespace flashattn::testing {
namespace {

using core::FastDivmod;

std::vector<std::uint32_t> dividends_for(std::uint32_t d, std::mt19937& rng) {
  constexpr std::uint32_t kMax = 0x7fffffffu;
  std::vector<std::uint32_t> n;
  for (std::uint32_t x = 0; x < 3 * d && x < 5000; ++x) n.push_back(x);
  for (std::uint32_t k : {1u, 2u, 1000u, kMax / d - 1, kMax / d}) {  // multiples of d and their neighbours
    const std::uint64_t m = std::uint64_t{k} * d;
    for (std::int64_t delta : {-1, 0, 1}) {
      const std::int64_t x = static_cast<std::int64_t>(m) + delta;
      if (x >= 0 && x <= kMax) n.push_back(static_cast<std::uint32_t>(x));
    }
  }
  for (std::uint32_t x : {kMax, kMax - 1, kMax / 2, 1u << 30}) n.push_back(x);
  std::uniform_int_distribution<std::uint32_t> any(0, kMax);
  for (int i = 0; i < 200; ++i) n.push_back(any(rng));
  return n;
}

void expect_exact(std::uint32_t d, std::mt19937& rng) {
  const FastDivmod fast(d);
  for (std::uint32_t n : dividends_for(d, rng)) {
    const std::uint32_t q = fast.div(n);
    ASSERT_EQ(q, n / d) << n << " / " << d;
    ASSERT_EQ(fast.mod(n, q), n % d) << n << " % " << d;
  }
}

TEST(FastDivmod, EveryDivisorUpTo4096) {
  std::mt19937 rng(7);
  for (std::uint32_t d = 1; d <= 4096; ++d) expect_exact(d, rng);
}

TEST(FastDivmod, LargeDivisors) {
  std::mt19937 rng(11);
  for (std::uint32_t d :
       {65535u, 65536u, 65537u, 1000003u, (1u << 30) - 1, 1u << 30, (1u << 30) + 1, 0x7ffffffeu, 0x7fffffffu})
    expect_exact(d, rng);
  std::uniform_int_distribution<std::uint32_t> any(4097, 0x7fffffffu);
  for (int i = 0; i < 300; ++i) expect_exact(any(rng), rng);
}

}  // namespace
}  // namespace flashattn::testing
