// Dropout mask from a counter-based RNG (Philox4x32-10, Salmon et al. 2011).
// Whether weight (b, h, i, j) is dropped depends only on (seed, offset, b, h,
// i, j): the same on every backend, ISA and thread count, so the backward
// regenerates the forward's mask.
//
// One Philox call yields four 32-bit words for the four keys 4*g .. 4*g+3:
//   key     = (lo32(seed), hi32(seed) ^ hi32(offset))
//   counter = (g = j / 4, i, b * heads + h, lo32(offset))
// Weight (b, h, i, j) is dropped when word[j % 4] < p * 2^32.
#pragma once

#include <array>
#include <cstdint>

#include "core/host_device.hpp"

namespace flashattn::core {

// Philox4x32 constants (the vectorised copy in src/cpu/vec_philox.inl uses them too).
constexpr std::uint32_t kPhiloxMul0 = 0xD2511F53u, kPhiloxMul1 = 0xCD9E8D57u;
constexpr std::uint32_t kPhiloxWeyl0 = 0x9E3779B9u, kPhiloxWeyl1 = 0xBB67AE85u;
constexpr int kPhiloxRounds = 10;

FLASHATTN_HD inline std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> ctr,
                                                               std::array<std::uint32_t, 2> key) {
  for (int round = 0; round < kPhiloxRounds; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(kPhiloxMul0) * ctr[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(kPhiloxMul1) * ctr[2];
    ctr = {static_cast<std::uint32_t>(p1 >> 32) ^ ctr[1] ^ key[0], static_cast<std::uint32_t>(p1),
           static_cast<std::uint32_t>(p0 >> 32) ^ ctr[3] ^ key[1], static_cast<std::uint32_t>(p0)};
    key[0] += kPhiloxWeyl0;
    key[1] += kPhiloxWeyl1;
  }
  return ctr;
}

// Everything fixed for one (batch, head) stream.
struct DropoutStream {
  std::array<std::uint32_t, 2> key{};
  std::uint32_t stream = 0;  // b * heads + h
  std::uint32_t offset_lo = 0;
  std::uint32_t drop_below = 0;  // drop when word < drop_below (p * 2^32 < 2^32 as p < 1); 0 drops nothing

  // Four drop decisions for keys 4*group .. 4*group+3 of row i (bit k set = key 4*group+k dropped).
  FLASHATTN_HD unsigned dropped_bits(std::int64_t i, std::int64_t group) const {
    const auto words =
        philox4x32_10({static_cast<std::uint32_t>(group), static_cast<std::uint32_t>(i), stream, offset_lo}, key);
    unsigned bits = 0;
    for (int k = 0; k < 4; ++k) bits |= static_cast<unsigned>(words[k] < drop_below) << k;
    return bits;
  }
  FLASHATTN_HD bool dropped(std::int64_t i, std::int64_t j) const { return (dropped_bits(i, j >> 2) >> (j & 3)) & 1u; }
};

// p = dropout probability in [0, 1).
FLASHATTN_HD inline DropoutStream make_dropout_stream(std::uint64_t seed, std::uint64_t offset, float p,
                                                      std::int64_t batch, std::int64_t head, std::int64_t heads) {
  DropoutStream s;
  s.key = {static_cast<std::uint32_t>(seed),
           static_cast<std::uint32_t>(seed >> 32) ^ static_cast<std::uint32_t>(offset >> 32)};
  s.stream = static_cast<std::uint32_t>(batch * heads + head);
  s.offset_lo = static_cast<std::uint32_t>(offset);
  s.drop_below = static_cast<std::uint32_t>(static_cast<double>(p) * 4294967296.0);  // p * 2^32, exact
  return s;
}

}  // namespace flashattn::core
