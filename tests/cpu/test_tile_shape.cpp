// cpu::choose_tile_shape: a pure function of the problem (cpu/tile_shape.hpp).
#include <gtest/gtest.h>

#include <cstdint>

#include "cpu/tile_shape.hpp"

namespace flashattn::testing {
namespace {

using cpu::choose_tile_shape;
using cpu::TileShape;

constexpr std::int64_t kHeadDims[] = {1, 8, 40, 59, 64, 96, 128, 200, 256};
constexpr std::int64_t kSeqlens[] = {1, 2, 3, 4, 5, 17, 63, 64, 65, 97, 255, 1025, 100000};
constexpr std::int64_t kBatchHeads[] = {1, 2, 6, 48, 4096};
constexpr int kThreads[] = {1, 2, 3, 4, 16, 64, 256};

TEST(TileShape, KeyTileIsAMultipleOf16WithinTheBudget) {
  for (std::int64_t d : kHeadDims)
    for (std::int64_t dv : kHeadDims) {
      const TileShape t = choose_tile_shape(d, dv, 128, 8, 2);
      EXPECT_EQ(t.k_cols % 16, 0) << d << " " << dv;
      EXPECT_GE(t.k_cols, 16);
      EXPECT_LE(t.k_cols, 256);
      // Packed K (d x k_cols) and V (k_cols x dv) in fp32 fit ~256 KiB of L2.
      EXPECT_LE(t.k_cols * (d + dv) * 4, 256 * 1024) << d << " " << dv;
    }
}

TEST(TileShape, KeyTileDependsOnlyOnHeadDims) {
  // The bitwise thread-count independence of the forward rests on this.
  for (std::int64_t d : kHeadDims) {
    const std::int64_t k_cols = choose_tile_shape(d, d, 1, 1, 1).k_cols;
    for (std::int64_t sq : kSeqlens)
      for (std::int64_t bh : kBatchHeads)
        for (int threads : kThreads)
          ASSERT_EQ(choose_tile_shape(d, d, sq, bh, threads).k_cols, k_cols)
              << "d=" << d << " sq=" << sq << " bh=" << bh << " threads=" << threads;
  }
}

TEST(TileShape, KeyTileShrinksWithHeadDim) {
  std::int64_t previous = 1 << 30;
  for (std::int64_t d : kHeadDims) {
    const std::int64_t k_cols = choose_tile_shape(d, d, 64, 8, 2).k_cols;
    EXPECT_LE(k_cols, previous) << "d=" << d;
    previous = k_cols;
  }
  EXPECT_EQ(choose_tile_shape(1, 1, 64, 8, 2).k_cols, 256);
  EXPECT_EQ(choose_tile_shape(256, 256, 64, 8, 2).k_cols, 128);
}

TEST(TileShape, QueryRowsBounds) {
  for (std::int64_t sq : kSeqlens)
    for (std::int64_t bh : kBatchHeads)
      for (int threads : kThreads) {
        const TileShape t = choose_tile_shape(64, 64, sq, bh, threads);
        SCOPED_TRACE(::testing::Message() << "sq=" << sq << " bh=" << bh << " threads=" << threads);
        EXPECT_GE(t.q_rows, 1);
        EXPECT_LE(t.q_rows, 64);
        EXPECT_LE(t.q_rows, (sq + 3) / 4 * 4);            // never past seqlen_q rounded up to 4
        EXPECT_GE(t.q_rows, std::min<std::int64_t>(16, (sq + 3) / 4 * 4));  // halves down to 16 at most
      }
}

TEST(TileShape, LargeProblemsUseFullQueryTiles) {
  EXPECT_EQ(choose_tile_shape(64, 64, 4096, 32, 2).q_rows, 64);
  EXPECT_EQ(choose_tile_shape(128, 128, 1025, 48, 16).q_rows, 64);
}

TEST(TileShape, ShrinksForSmallProblems) {
  // Few work items per thread: the query tile halves, down to 16 rows.
  EXPECT_EQ(choose_tile_shape(64, 64, 256, 1, 2).q_rows, 32);    // 4 tiles of 64 < 8; 8 of 32 is enough
  EXPECT_EQ(choose_tile_shape(64, 64, 256, 1, 16).q_rows, 16);   // floor at 16
  EXPECT_EQ(choose_tile_shape(64, 64, 1, 6, 2).q_rows, 4);       // seqlen_q 1 -> 4 rows
  EXPECT_EQ(choose_tile_shape(64, 64, 5, 1, 1).q_rows, 8);
  EXPECT_EQ(choose_tile_shape(64, 64, 17, 1, 1).q_rows, 16);
  // More threads never give taller tiles.
  for (std::int64_t sq : kSeqlens) {
    std::int64_t previous = 1 << 30;
    for (int threads : kThreads) {
      const std::int64_t rows = choose_tile_shape(64, 64, sq, 2, threads).q_rows;
      EXPECT_LE(rows, previous) << "sq=" << sq << " threads=" << threads;
      previous = rows;
    }
  }
}

TEST(TileShape, EnoughWorkItemsWhenPossible) {
  // After shrinking, either there are >= 4 items per thread or q_rows hit its floor.
  for (std::int64_t sq : kSeqlens)
    for (std::int64_t bh : kBatchHeads)
      for (int threads : kThreads) {
        const TileShape t = choose_tile_shape(64, 64, sq, bh, threads);
        const std::int64_t items = bh * ((sq + t.q_rows - 1) / t.q_rows);
        EXPECT_TRUE(items >= 4 * threads || t.q_rows <= 16 || t.q_rows == (sq + 3) / 4 * 4)
            << "sq=" << sq << " bh=" << bh << " threads=" << threads << " q_rows=" << t.q_rows;
      }
}

}  // namespace
}  // namespace flashattn::testing
