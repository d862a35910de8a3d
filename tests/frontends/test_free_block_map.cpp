// FreeBlockMap against a plain vector<bool> model: counts, ascending ids
// and the longest free run, over random takes and releases at sizes around
// the bitmap's 64-block words.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "frontends/free_block_map.hpp"

namespace flashattn::frontend {
namespace {

FreeRun model_longest_run(const std::vector<bool>& free) {
  FreeRun best, run;
  for (std::size_t b = 0; b <= free.size(); ++b) {
    if (b < free.size() && free[b]) {
      if (run.length++ == 0) run.start = static_cast<std::int32_t>(b);
    } else {
      if (run.length > best.length) best = run;
      run.length = 0;
    }
  }
  return best;
}

void expect_matches(const FreeBlockMap& map, const std::vector<bool>& free) {
  std::vector<std::int32_t> ids;
  for (std::size_t b = 0; b < free.size(); ++b) {
    ASSERT_EQ(map.is_free(static_cast<std::int64_t>(b)), free[b]) << "block " << b;
    if (free[b]) ids.push_back(static_cast<std::int32_t>(b));
  }
  EXPECT_EQ(map.ids(), ids);
  EXPECT_EQ(map.count(), static_cast<std::int64_t>(ids.size()));
  const FreeRun want = model_longest_run(free), got = map.longest_run();
  EXPECT_EQ(got.length, want.length);
  if (want.length > 0) EXPECT_EQ(got.start, want.start);
}

TEST(FreeBlockMap, StartsWithEveryBlockFreeAsOneRun) {
  for (std::int64_t n : {1, 63, 64, 65, 130}) {
    const FreeBlockMap map(n);
    EXPECT_EQ(map.count(), n);
    EXPECT_EQ(map.longest_run().start, 0);
    EXPECT_EQ(map.longest_run().length, n);
    expect_matches(map, std::vector<bool>(static_cast<std::size_t>(n), true));
  }
}

TEST(FreeBlockMap, NoneFreeIsAnEmptyRun) {
  FreeBlockMap map(3);
  for (std::int32_t b = 0; b < 3; ++b) map.take(b);
  EXPECT_EQ(map.count(), 0);
  EXPECT_EQ(map.longest_run().length, 0);
  EXPECT_TRUE(map.ids().empty());
}

// Runs across word boundaries, whole free and whole taken words, and ties
// (the lowest of equally long runs) all come up in random sequences.
TEST(FreeBlockMap, MatchesAModelOverRandomTakesAndReleases) {
  std::mt19937 rng(11);
  for (std::int64_t n : {1, 2, 63, 64, 65, 127, 128, 129, 300, 1000}) {
    FreeBlockMap map(n);
    std::vector<bool> free(static_cast<std::size_t>(n), true);
    for (int step = 0; step < 400; ++step) {
      // Flip a short stretch, so runs of every length form and break.
      const auto at = static_cast<std::int32_t>(std::uniform_int_distribution<std::int64_t>(0, n - 1)(rng));
      const int width = std::uniform_int_distribution<int>(1, 70)(rng);
      const bool take = std::bernoulli_distribution(0.55)(rng);
      for (std::int32_t b = at; b < std::min<std::int64_t>(n, at + width); ++b) {
        if (take && free[b]) map.take(b), free[b] = false;
        if (!take && !free[b]) map.release(b), free[b] = true;
      }
      expect_matches(map, free);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

}  // namespace
}  // namespace flashattn::frontend
