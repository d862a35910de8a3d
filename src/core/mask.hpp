// The mask predicate: the one place that says which (i, j) pairs are kept.
// Every kernel and the reference call it; masks are a contiguous key range
// per row (a band around the anchored diagonal).
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/host_device.hpp"
#include "flashattn/params.hpp"

namespace flashattn::core {

// Half-open range of kept keys [begin, end) of one row; empty when begin >= end.
struct KeyRange {
  std::int64_t begin = 0;
  std::int64_t end = 0;
  FLASHATTN_HD bool empty() const { return begin >= end; }
};

// The diagonal key of row i: i for top-left, i + (seqlen_k - seqlen_q) for bottom-right.
FLASHATTN_HD inline std::int64_t mask_diagonal(const MaskSpec& mask, std::int64_t i, std::int64_t seqlen_q,
                                               std::int64_t seqlen_k) {
  return mask.anchor == MaskAnchor::bottom_right ? i + (seqlen_k - seqlen_q) : i;
}

// Keys kept by row i of a (seqlen_q x seqlen_k) problem, clipped to [0, seqlen_k).
FLASHATTN_HD inline KeyRange kept_keys(const MaskSpec& mask, std::int64_t i, std::int64_t seqlen_q,
                                       std::int64_t seqlen_k) {
  const std::int64_t c = mask_diagonal(mask, i, seqlen_q, seqlen_k);
  const std::int64_t begin = mask.left < 0 ? 0 : std::max<std::int64_t>(0, c - mask.left);
  const std::int64_t end = mask.right < 0 ? seqlen_k : std::min<std::int64_t>(seqlen_k, c + mask.right + 1);
  return {begin, std::max(begin, end)};
}

FLASHATTN_HD inline bool is_kept(const MaskSpec& mask, std::int64_t i, std::int64_t j, std::int64_t seqlen_q,
                                 std::int64_t seqlen_k) {
  const KeyRange r = kept_keys(mask, i, seqlen_q, seqlen_k);
  return j >= r.begin && j < r.end;
}

// Rows of [row_begin, row_end) that keep at least one key. Non-empty rows
// are those whose diagonal c satisfies -right <= c < seqlen_k + left, an
// interval of i.
FLASHATTN_HD inline KeyRange nonempty_rows(const MaskSpec& mask, std::int64_t row_begin, std::int64_t row_end,
                                           std::int64_t seqlen_q, std::int64_t seqlen_k) {
  if (seqlen_k <= 0) return {row_begin, row_begin};
  const std::int64_t offset = mask_diagonal(mask, 0, seqlen_q, seqlen_k);
  std::int64_t begin = row_begin, end = row_end;
  if (mask.right >= 0) begin = std::max(begin, -mask.right - offset);
  if (mask.left >= 0) end = std::min(end, seqlen_k + mask.left - offset);
  return {begin, std::max(begin, end)};
}

// Union of the kept ranges of rows [row_begin, row_end): the keys a tile of
// rows must visit. Both ends of a row's range are non-decreasing in i, so
// the first and last non-empty rows bound it.
FLASHATTN_HD inline KeyRange kept_keys_of_rows(const MaskSpec& mask, std::int64_t row_begin, std::int64_t row_end,
                                               std::int64_t seqlen_q, std::int64_t seqlen_k) {
  const KeyRange rows = nonempty_rows(mask, row_begin, row_end, seqlen_q, seqlen_k);
  if (rows.empty()) return {0, 0};
  return {kept_keys(mask, rows.begin, seqlen_q, seqlen_k).begin, kept_keys(mask, rows.end - 1, seqlen_q, seqlen_k).end};
}

// True when every row of [row_begin, row_end) keeps every key of
// [key_begin, key_end): the tile needs no per-element mask.
FLASHATTN_HD inline bool tile_fully_kept(const MaskSpec& mask, std::int64_t row_begin, std::int64_t row_end,
                                         std::int64_t key_begin, std::int64_t key_end, std::int64_t seqlen_q,
                                         std::int64_t seqlen_k) {
  const KeyRange first = kept_keys(mask, row_begin, seqlen_q, seqlen_k);
  const KeyRange last = kept_keys(mask, row_end - 1, seqlen_q, seqlen_k);
  // begin and end are non-decreasing in i: the last row has the largest
  // begin, the first row the smallest end.
  return last.begin <= key_begin && first.end >= key_end;
}

}  // namespace flashattn::core
