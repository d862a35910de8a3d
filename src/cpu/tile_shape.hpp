// Tile sizes of the CPU forward: a pure function of the problem, unit-tested.
#pragma once

#include <algorithm>
#include <cstdint>

namespace flashattn::cpu {

struct TileShape {
  std::int64_t q_rows = 64;   // query rows per work item
  std::int64_t k_cols = 128;  // keys per inner tile (multiple of 16)
};

// k_cols keeps the packed K (head_dim x k_cols) and V (k_cols x head_dim_v)
// tiles within ~256 KiB of the 1 MiB L2 and is a multiple of 16 (whole
// vectors and whole dropout groups of 4). It depends only on the head dims,
// never on the thread count, so results are bitwise independent of threads.
// q_rows starts at 64 and halves (down to 16) while there are fewer than 4
// work items per thread; it never exceeds seqlen_q rounded up to 4.
inline TileShape choose_tile_shape(std::int64_t head_dim, std::int64_t head_dim_v, std::int64_t seqlen_q,
                                   std::int64_t batch_heads, int threads) {
  constexpr std::int64_t kTileBudgetFloats = (256 * 1024) / 4;
  TileShape t;
  t.k_cols = std::clamp<std::int64_t>(kTileBudgetFloats / std::max<std::int64_t>(1, head_dim + head_dim_v), 16, 256);
  t.k_cols -= t.k_cols % 16;
  t.q_rows = 64;
  auto items = [&](std::int64_t rows) { return batch_heads * ((seqlen_q + rows - 1) / rows); };
  while (t.q_rows > 16 && items(t.q_rows) < 4 * static_cast<std::int64_t>(threads)) t.q_rows /= 2;
  t.q_rows = std::max<std::int64_t>(1, std::min(t.q_rows, (seqlen_q + 3) / 4 * 4));
  return t;
}

}  // namespace flashattn::cpu
