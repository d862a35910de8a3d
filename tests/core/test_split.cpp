// The split-KV pieces every backend shares (core/split.hpp): the chunk-count
// heuristic and the chunks' key ranges.
#include <gtest/gtest.h>

#include <cstdint>

#include "core/split.hpp"

namespace flashattn::testing {
namespace {

using core::choose_num_splits;
using core::KeyRange;
using core::kMaxSplits;
using core::kMinSplitTiles;
using core::split_chunk;

// Split-KV heuristic (choose_num_splits): splits only when items are too few
// for the threads, never below kMinSplitTiles key tiles per chunk.
TEST(SplitHeuristic, NoSplitWithEnoughItemsOrOneThread) {
  EXPECT_EQ(choose_num_splits(8, 256, 2), 1);   // B1 HK8 decode on 2 threads: 4 items each
  EXPECT_EQ(choose_num_splits(128, 32, 2), 1);  // B16 HK8
  EXPECT_EQ(choose_num_splits(1, 1000, 1), 1);  // one thread: splitting only adds the merge
  EXPECT_EQ(choose_num_splits(0, 1000, 4), 1);
}

TEST(SplitHeuristic, SplitsFewItemsOverLongKeys) {
  EXPECT_EQ(choose_num_splits(1, 256, 2), 8);  // MQA decode: 8 chunks = 4 per thread
  EXPECT_EQ(choose_num_splits(2, 256, 2), 4);
  EXPECT_EQ(choose_num_splits(5, 256, 2), 2);    // 10 items: 5 per thread, not 3 + 2
  EXPECT_EQ(choose_num_splits(1, 256, 64), 64);  // 256 wanted, capped at 256 / kMinSplitTiles
  EXPECT_EQ(choose_num_splits(1, 12, 2), 3);     // capped: chunks of >= 4 tiles
  EXPECT_EQ(choose_num_splits(1, 7, 2), 1);      // too short to split at all
}

TEST(SplitHeuristic, Invariants) {
  for (std::int64_t items : {1, 2, 3, 5, 8, 13, 100})
    for (std::int64_t tiles : {1, 3, 4, 16, 100, 1000, 100000})
      for (int threads : {1, 2, 3, 8, 64, 256}) {
        const std::int64_t s = choose_num_splits(items, tiles, threads);
        SCOPED_TRACE(::testing::Message() << items << " items, " << tiles << " tiles, " << threads << " threads");
        EXPECT_GE(s, 1);
        EXPECT_LE(s, kMaxSplits);
        if (s > 1) {
          EXPECT_GE(tiles / s, kMinSplitTiles);     // chunks stay long enough
          EXPECT_LT(items, 4 * threads);            // only when items are short
          EXPECT_LE(items * (s - 1), 4 * threads);  // no more chunks than needed
        }
      }
}

// The chunks tile the kept keys in order, each whole key tiles except at the
// range's ends; empty chunks sit at keys.begin.
TEST(SplitChunk, ChunksPartitionTheKeysOnTileBoundaries) {
  for (const KeyRange keys : {KeyRange{0, 1000}, KeyRange{37, 901}, KeyRange{64, 128}, KeyRange{5, 6}, KeyRange{9, 9}})
    for (std::int64_t splits : {1, 2, 3, 7, 40}) {
      SCOPED_TRACE(::testing::Message() << "[" << keys.begin << ", " << keys.end << ") in " << splits);
      std::int64_t next = keys.begin;
      for (std::int64_t s = 0; s < splits; ++s) {
        const KeyRange c = split_chunk(keys, 64, s, splits);
        if (c.empty()) continue;
        EXPECT_EQ(c.begin, next);
        if (c.begin != keys.begin) EXPECT_EQ(c.begin % 64, 0);
        next = c.end;
      }
      EXPECT_EQ(next, keys.empty() ? keys.begin : keys.end);
    }
}

}  // namespace
}  // namespace flashattn::testing
