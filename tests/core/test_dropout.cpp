// The dropout RNG (src/core/dropout.hpp): Philox4x32-10 known answers from
// Random123's kat_vectors, independence of the decision streams, and the
// dropped fraction.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/dropout.hpp"

namespace flashattn::testing {
namespace {

using Words = std::array<std::uint32_t, 4>;

TEST(Philox, KnownAnswersFromRandom123) {
  EXPECT_EQ(core::philox4x32_10({0, 0, 0, 0}, {0, 0}), (Words{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(core::philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}),
            (Words{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(core::philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
            (Words{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

// The decisions of one stream over a (rows x cols) block, row-major.
std::vector<bool> decisions(const core::DropoutStream& s, std::int64_t rows, std::int64_t cols,
                            std::int64_t row0 = 0, std::int64_t col0 = 0) {
  std::vector<bool> d;
  d.reserve(rows * cols);
  for (std::int64_t i = row0; i < row0 + rows; ++i)
    for (std::int64_t j = col0; j < col0 + cols; ++j) d.push_back(s.dropped(i, j));
  return d;
}

double fraction(const std::vector<bool>& d) {
  std::int64_t n = 0;
  for (bool x : d) n += x;
  return static_cast<double>(n) / static_cast<double>(d.size());
}

// Fraction of positions where both streams drop: p^2 for independent streams.
double both(const std::vector<bool>& a, const std::vector<bool>& b) {
  std::int64_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += a[i] && b[i];
  return static_cast<double>(n) / static_cast<double>(a.size());
}

TEST(DropoutStream, DroppedMatchesDroppedBits) {
  const auto s = core::make_dropout_stream(7, 3, 0.4f, 1, 2, 4);
  for (std::int64_t i = 0; i < 8; ++i)
    for (std::int64_t j = 0; j < 64; ++j)
      EXPECT_EQ(s.dropped(i, j), static_cast<bool>((s.dropped_bits(i, j / 4) >> (j % 4)) & 1u));
}

TEST(DropoutStream, DocumentedCounterLayout) {
  const std::uint64_t seed = 0x0123456789abcdefull, offset = 0xfedcba9876543210ull;
  const auto s = core::make_dropout_stream(seed, offset, 0.5f, 3, 5, 8);
  const Words w = core::philox4x32_10({11, 6, 3 * 8 + 5, 0x76543210u}, {0x89abcdefu, 0x01234567u ^ 0xfedcba98u});
  for (int k = 0; k < 4; ++k) EXPECT_EQ(s.dropped(6, 44 + k), w[k] < (1ull << 31)) << k;
}

TEST(DropoutStream, ZeroProbabilityDropsNothing) {
  const auto s = core::make_dropout_stream(123, 0, 0.0f, 0, 0, 1);
  EXPECT_EQ(fraction(decisions(s, 64, 256)), 0.0);
}

TEST(DropoutStream, DroppedFractionIsP) {
  for (float p : {0.01f, 0.1f, 0.25f, 0.5f, 0.83f, 0.99f}) {
    const auto s = core::make_dropout_stream(0x5eed, 17, p, 1, 3, 6);
    EXPECT_NEAR(fraction(decisions(s, 512, 1024)), p, 0.01) << "p = " << p;  // 2^19 decisions
  }
}

// Changing any one of (seed, offset, b, h, i, j) gives a stream that agrees
// with the base one no more than independent coins would: both drop in
// p^2 of the positions (within 0.01 over 2^18 decisions).
TEST(DropoutStream, VariablesGiveIndependentDecisions) {
  const float p = 0.5f;
  const std::int64_t heads = 6, rows = 256, cols = 1024;
  const std::uint64_t seed = 0x243f6a8885a308d3ull, offset = 0x13198a2e03707344ull;
  const auto base_stream = core::make_dropout_stream(seed, offset, p, 1, 2, heads);
  const std::vector<bool> base = decisions(base_stream, rows, cols);
  EXPECT_NEAR(fraction(base), p, 0.01);

  struct Variant {
    const char* what;
    std::vector<bool> d;
  };
  const Variant variants[] = {
      {"seed + 1", decisions(core::make_dropout_stream(seed + 1, offset, p, 1, 2, heads), rows, cols)},
      {"seed high word", decisions(core::make_dropout_stream(seed ^ (1ull << 40), offset, p, 1, 2, heads), rows, cols)},
      {"offset + 1", decisions(core::make_dropout_stream(seed, offset + 1, p, 1, 2, heads), rows, cols)},
      {"offset high word",
       decisions(core::make_dropout_stream(seed, offset + (1ull << 32), p, 1, 2, heads), rows, cols)},
      {"batch + 1", decisions(core::make_dropout_stream(seed, offset, p, 2, 2, heads), rows, cols)},
      {"head + 1", decisions(core::make_dropout_stream(seed, offset, p, 1, 3, heads), rows, cols)},
      {"row + 1", decisions(base_stream, rows, cols, 1, 0)},
      {"key + 1", decisions(base_stream, rows, cols, 0, 1)},
      {"key + 4", decisions(base_stream, rows, cols, 0, 4)},
  };
  for (const Variant& v : variants) {
    EXPECT_NEAR(fraction(v.d), p, 0.01) << v.what;
    EXPECT_NEAR(both(base, v.d), p * p, 0.01) << v.what;
  }
}

// Within one group of four keys the words are independent too.
TEST(DropoutStream, KeysOfOneGroupAreIndependent) {
  const float p = 0.3f;
  const auto s = core::make_dropout_stream(99, 1, p, 0, 0, 1);
  std::int64_t counts[4][4] = {};
  const std::int64_t groups = 1 << 16;
  for (std::int64_t g = 0; g < groups; ++g) {
    const unsigned bits = s.dropped_bits(g % 256, g / 256);
    for (int a = 0; a < 4; ++a)
      for (int b = 0; b < 4; ++b) counts[a][b] += ((bits >> a) & (bits >> b) & 1u);
  }
  for (int a = 0; a < 4; ++a)
    for (int b = 0; b < 4; ++b) {
      const double want = a == b ? p : p * p;
      EXPECT_NEAR(static_cast<double>(counts[a][b]) / groups, want, 0.01) << a << ", " << b;
    }
}

}  // namespace
}  // namespace flashattn::testing
