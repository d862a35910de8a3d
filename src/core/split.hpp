// Split-KV, the pieces every backend shares: how many key chunks a call's
// work items are cut into (a pure heuristic, unit-tested) and which keys
// chunk s of n covers. Each chunk's (out, lse) is merged with merge.hpp.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/host_device.hpp"
#include "core/mask.hpp"

namespace flashattn::core {

// Splitting pays only when there are too few items to keep every worker
// busy (decoding: one query row per sequence, few kv heads): then enough
// chunks for ~4 items per worker (a CPU thread, a GPU multiprocessor), each
// at least kMinSplitTiles key tiles so the merge and the per-chunk setup
// stay small. One worker or enough items: 1.
inline constexpr std::int64_t kMaxSplits = 128;
inline constexpr std::int64_t kMinSplitTiles = 4;

inline std::int64_t choose_num_splits(std::int64_t items, std::int64_t key_tiles, int workers) {
  const std::int64_t wanted_items = 4 * static_cast<std::int64_t>(workers);
  if (workers <= 1 || items <= 0 || items >= wanted_items) return 1;
  const std::int64_t splits = (wanted_items + items - 1) / items;
  return std::clamp<std::int64_t>(std::min(splits, key_tiles / kMinSplitTiles), 1, kMaxSplits);
}

// Chunk `split` of `splits` of an item's kept keys, in whole key tiles of
// k_cols keys (the tiles of the unsplit loop, so every tile's arithmetic is
// unchanged); empty chunks are empty ranges at keys.begin.
FLASHATTN_HD inline KeyRange split_chunk(const KeyRange& keys, std::int64_t k_cols, std::int64_t split,
                                         std::int64_t splits) {
  if (keys.empty()) return keys;
  const std::int64_t first = keys.begin / k_cols, tiles = (keys.end + k_cols - 1) / k_cols - first;
  const std::int64_t t0 = first + tiles * split / splits, t1 = first + tiles * (split + 1) / splits;
  if (t0 == t1) return {keys.begin, keys.begin};
  return {t0 * k_cols > keys.begin ? t0 * k_cols : keys.begin, t1 * k_cols < keys.end ? t1 * k_cols : keys.end};
}

}  // namespace flashattn::core
