// cpu::choose_tile_shape and cpu::decode_kv_heads: pure functions of the problem (cpu/tile_shape.hpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cpu/tile_shape.hpp"

namespace flashattn::testing {
namespace {

using cpu::choose_tile_shape;
using cpu::TileShape;

constexpr std::int64_t kHeadDims[] = {1, 8, 40, 59, 64, 96, 128, 200, 256};
constexpr std::int64_t kSeqlens[] = {1, 2, 3, 4, 5, 17, 63, 64, 65, 97, 255, 1025, 100000};
constexpr std::int64_t kGroups[] = {1, 2, 4, 7, 8, 32};
constexpr std::int64_t kBatchHeads[] = {1, 2, 6, 48, 4096};
constexpr int kThreads[] = {1, 2, 3, 4, 16, 64, 256};
constexpr std::int64_t kLaneBlocks[] = {4, 24, 48};

TEST(TileShape, KeyTileIsAMultipleOf16WithinTheBudget) {
  for (std::int64_t d : kHeadDims)
    for (std::int64_t dv : kHeadDims) {
      const TileShape t = choose_tile_shape(d, dv, 128, 1, 8, 2, 48);
      EXPECT_EQ(t.k_cols % 16, 0) << d << " " << dv;
      EXPECT_GE(t.k_cols, 16);
      EXPECT_LE(t.k_cols, 128);
      // Packed K (k_cols x d) and V (k_cols x dv) in fp32 fit ~128 KiB of L2.
      EXPECT_LE(t.k_cols * (d + dv) * 4, 128 * 1024) << d << " " << dv;
    }
}

TEST(TileShape, KeyTileDependsOnlyOnHeadDims) {
  // The bitwise thread-count independence of the forward rests on this.
  for (std::int64_t d : kHeadDims) {
    const std::int64_t k_cols = choose_tile_shape(d, d, 1, 1, 1, 1, 48).k_cols;
    for (std::int64_t sq : kSeqlens)
      for (std::int64_t g : kGroups)
        for (std::int64_t bh : kBatchHeads)
          for (int threads : kThreads)
            ASSERT_EQ(choose_tile_shape(d, d, sq, g, bh, threads, 48).k_cols, k_cols)
                << "d=" << d << " sq=" << sq << " g=" << g << " bh=" << bh << " threads=" << threads;
  }
}

TEST(TileShape, KeyTileShrinksWithHeadDim) {
  std::int64_t previous = 1 << 30;
  for (std::int64_t d : kHeadDims) {
    const std::int64_t k_cols = choose_tile_shape(d, d, 64, 1, 8, 2, 48).k_cols;
    EXPECT_LE(k_cols, previous) << "d=" << d;
    previous = k_cols;
  }
  EXPECT_EQ(choose_tile_shape(1, 1, 64, 1, 8, 2, 48).k_cols, 128);
  EXPECT_EQ(choose_tile_shape(128, 128, 64, 1, 8, 2, 48).k_cols, 128);
  EXPECT_EQ(choose_tile_shape(256, 256, 64, 1, 8, 2, 48).k_cols, 64);
}

TEST(TileShape, RowsBounds) {
  for (std::int64_t lane_block : kLaneBlocks)
    for (std::int64_t sq : kSeqlens)
      for (std::int64_t g : kGroups)
        for (std::int64_t bh : kBatchHeads)
          for (int threads : kThreads) {
            const TileShape t = choose_tile_shape(64, 64, sq, g, bh, threads, lane_block);
            SCOPED_TRACE(::testing::Message() << "lb=" << lane_block << " sq=" << sq << " g=" << g << " bh=" << bh
                                              << " threads=" << threads);
            EXPECT_GE(t.rows, 1);
            EXPECT_LE(t.rows, sq);
            // At most four lane blocks of lanes per item (plus rounding to whole rows).
            EXPECT_LE(t.rows * g, 4 * lane_block + g - 1);
            // Never below one lane block of lanes unless the sequence is shorter.
            EXPECT_GE(t.rows * g, std::min(lane_block, sq * g));
          }
}

TEST(TileShape, FullItemsForLargeProblems) {
  EXPECT_EQ(choose_tile_shape(128, 128, 2048, 1, 16, 2, 48).rows, 192);
  EXPECT_EQ(choose_tile_shape(128, 128, 2048, 4, 8, 2, 48).rows, 48);  // GQA: 4 heads x 48 rows
  EXPECT_EQ(choose_tile_shape(128, 128, 16, 4, 8, 2, 48).rows, 16);    // capped at seqlen_q
}

TEST(TileShape, ShrinksForSmallProblems) {
  // 2 tiles of 192 rows for one head < 8 items: halve to 96 (4), then 48 (8).
  EXPECT_EQ(choose_tile_shape(64, 64, 384, 1, 1, 2, 48).rows, 48);
  EXPECT_EQ(choose_tile_shape(64, 64, 384, 1, 1, 64, 48).rows, 48);  // floor: one lane block
  // More threads never give taller items.
  for (std::int64_t sq : kSeqlens)
    for (std::int64_t g : kGroups) {
      std::int64_t previous = 1 << 30;
      for (int threads : kThreads) {
        const std::int64_t rows = choose_tile_shape(64, 64, sq, g, 2, threads, 48).rows;
        EXPECT_LE(rows, previous) << "sq=" << sq << " g=" << g << " threads=" << threads;
        previous = rows;
      }
    }
}

TEST(TileShape, EnoughWorkItemsWhenPossible) {
  // Either >= 4 items per thread, or rows hit its floor (one lane block) or the sequence length.
  for (std::int64_t sq : kSeqlens)
    for (std::int64_t g : kGroups)
      for (std::int64_t bh : kBatchHeads)
        for (int threads : kThreads) {
          const TileShape t = choose_tile_shape(64, 64, sq, g, bh, threads, 48);
          const std::int64_t items = bh * ((sq + t.rows - 1) / t.rows);
          const std::int64_t floor_rows = (48 + g - 1) / g;
          EXPECT_TRUE(items >= 4 * threads || t.rows <= floor_rows || t.rows == sq)
              << "sq=" << sq << " g=" << g << " bh=" << bh << " threads=" << threads << " rows=" << t.rows;
        }
}

TEST(DecodeKvHeads, AtLeastEightWithinTheSliceAndLaneBudgets) {
  using cpu::decode_kv_heads;
  for (std::int64_t heads_kv : {1, 3, 8, 12, 16, 32, 64, 128})
    for (std::int64_t lanes : {1, 2, 3, 4, 8, 16})
      for (std::int64_t row_bytes : {2, 64, 128, 256, 512, 1024}) {
        const std::int64_t h = decode_kv_heads(heads_kv, lanes, row_bytes);
        const std::string at = std::to_string(heads_kv) + " " + std::to_string(lanes) + " " + std::to_string(row_bytes);
        EXPECT_GE(h, 1) << at;
        EXPECT_LE(h, heads_kv) << at;
        EXPECT_GE(h, std::min<std::int64_t>(heads_kv, 8)) << at;  // never fewer than before
        if (h > 8) {                                              // wider only within both budgets
          EXPECT_LE(h * row_bytes, 4096) << at;
          EXPECT_LE(h * lanes, 32) << at;
        }
      }
  // The measured cases (BENCHMARKS.md session 26): bf16 rows of 128 and 64 elements.
  EXPECT_EQ(decode_kv_heads(32, 1, 256), 16);  // MHA, head dim 128
  EXPECT_EQ(decode_kv_heads(32, 1, 128), 32);  // MHA, head dim 64
  EXPECT_EQ(decode_kv_heads(16, 2, 256), 16);  // GQA 2
  EXPECT_EQ(decode_kv_heads(8, 4, 256), 8);    // GQA 4: as before
  EXPECT_EQ(decode_kv_heads(16, 4, 256), 8);   // its query rows would pass 32
  EXPECT_EQ(decode_kv_heads(32, 1, 512), 8);   // f32 head dim 128, bf16 256: 4 KiB at 8 heads
}

}  // namespace
}  // namespace flashattn::testing
