// Tile sizes of the CPU forward: a pure function of the problem, unit-tested.
#pragma once

#include <algorithm>
#include <cstdint>

namespace flashattn::cpu {

struct TileShape {
  std::int64_t rows = 192;    // query rows per work item (of each query head in a kv group)
  std::int64_t k_cols = 128;  // keys per inner tile (multiple of 16)
};

// k_cols keeps the packed K (k_cols x head_dim) and V (k_cols x head_dim_v)
// tiles within ~128 KiB of the 1 MiB L2, and a lane block's probabilities
// (k_cols x 48 floats) within L1. It is a multiple of 16 (whole micro-kernel
// rows, bf16 pairs and dropout groups of 4) and depends only on the head
// dims, never on the thread count: results are bitwise thread-independent.
//
// A work item is `rows` query rows of all `group` query heads sharing one kv
// head: group * rows lanes, packed once per K/V tile. rows aims at four
// lane blocks of the ISA (lane_block queries each), then halves while there
// are fewer than 4 items per thread; it never exceeds seqlen_q.
inline TileShape choose_tile_shape(std::int64_t head_dim, std::int64_t head_dim_v, std::int64_t seqlen_q,
                                   std::int64_t group, std::int64_t batch_heads_kv, int threads,
                                   std::int64_t lane_block) {
  constexpr std::int64_t kTileBudgetFloats = (128 * 1024) / 4;
  TileShape t;
  t.k_cols = std::clamp<std::int64_t>(kTileBudgetFloats / std::max<std::int64_t>(1, head_dim + head_dim_v), 16, 128);
  t.k_cols -= t.k_cols % 16;
  group = std::max<std::int64_t>(1, group);
  t.rows = std::max<std::int64_t>(1, (4 * lane_block + group - 1) / group);
  const std::int64_t min_rows = std::max<std::int64_t>(1, (lane_block + group - 1) / group);
  auto items = [&](std::int64_t rows) { return batch_heads_kv * ((seqlen_q + rows - 1) / rows); };
  while (t.rows > min_rows && items(t.rows) < 4 * static_cast<std::int64_t>(threads))
    t.rows = std::max(min_rows, t.rows / 2);
  t.rows = std::max<std::int64_t>(1, std::min(t.rows, seqlen_q));
  return t;
}

// Decode layout: kv heads per work item. One item streams the cache rows
// of several kv heads (contiguous in a (keys, kv heads, dim) cache) instead
// of one head's rows at a stride. At least kDecodeKvHeads; more while the
// item's slice of a key row stays within kDecodeSliceBytes and its query
// rows (lanes per kv head x heads) within kDecodeItemLanes, so Q, O and the
// tile's sums take no more of the L1 than at 8 heads of GQA 4. With few
// lanes per head that is a wider slice: MHA and GQA 2 at head dim 64-128
// read DRAM 15-40% faster with 16-32 heads than with 8 (BENCHMARKS.md,
// session 26), and 8 KiB slices (16 heads of 256 bf16) were no faster.
inline constexpr std::int64_t kDecodeKvHeads = 8;
inline constexpr std::int64_t kDecodeSliceBytes = 4096;
inline constexpr std::int64_t kDecodeItemLanes = 32;

// lanes: query rows per kv head as the decode layout keeps them (the lanes
// rounded up to a power of two); row_bytes: one kv head's row of the cache
// (the larger of K's and V's).
inline std::int64_t decode_kv_heads(std::int64_t heads_kv, std::int64_t lanes, std::int64_t row_bytes) {
  const std::int64_t wide = std::min(kDecodeSliceBytes / std::max<std::int64_t>(1, row_bytes),
                                     kDecodeItemLanes / std::max<std::int64_t>(1, lanes));
  return std::min(heads_kv, std::max(kDecodeKvHeads, wide));
}

}  // namespace flashattn::cpu
