// n / d and n % d for 0 <= n < 2^31 and a divisor fixed ahead (1 <= d <
// 2^31) by one high multiply and a shift: a GPU has no integer divider, and
// its software division costs ~20 instructions (the CUDA kernels' page
// arithmetic, every row of every key tile). With p = 31 + ceil(log2 d) and
// m = ceil(2^p / d) < 2^32, n / d = (n * m) >> p for every n < 2^31
// (Granlund and Montgomery, "Division by invariant integers using
// multiplication", 1994, with N = 31-bit dividends).
#pragma once

#include <cstdint>

#include "core/host_device.hpp"

namespace flashattn::core {

struct FastDivmod {
  std::uint32_t divisor = 1;
  std::uint32_t multiplier = 0;  // 0: divisor 1
  std::uint32_t shift = 0;       // p - 32

  FastDivmod() = default;
  FLASHATTN_HD explicit FastDivmod(std::uint32_t d) : divisor(d) {
    if (d <= 1) return;
    std::uint32_t log2_up = 0;
    while ((std::uint64_t{1} << log2_up) < d) ++log2_up;
    const std::uint32_t p = 31 + log2_up;
    multiplier = static_cast<std::uint32_t>(((std::uint64_t{1} << p) + d - 1) / d);
    shift = p - 32;
  }

  FLASHATTN_HD std::uint32_t div(std::uint32_t n) const {
    if (multiplier == 0) return n;
#if defined(__CUDA_ARCH__)
    return __umulhi(n, multiplier) >> shift;
#else
    return static_cast<std::uint32_t>((std::uint64_t{n} * multiplier) >> 32) >> shift;
#endif
  }
  FLASHATTN_HD std::uint32_t mod(std::uint32_t n, std::uint32_t quotient) const { return n - quotient * divisor; }
};

}  // namespace flashattn::core
