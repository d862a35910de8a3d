// Where sequence b of a (possibly varlen, paged or cache-indexed) batch lives
// and how long it is: the one place that maps a key index to memory.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "core/host_device.hpp"
#include "flashattn/params.hpp"

namespace flashattn::core {

struct SequenceExtent {
  std::int64_t q_start = 0;  // first row of q / out / lse (varlen), else 0
  std::int64_t k_start = 0;  // first row of k / v: varlen start or left padding; 0 when paged
  std::int64_t k_batch = 0;  // batch index of k / v (cache_batch_idx); unused when paged
  std::int64_t seqlen_q = 0;
  std::int64_t seqlen_k = 0;            // keys used (seqused_k when given)
  const std::int32_t* pages = nullptr;  // this sequence's block-table row, when paged
  std::int64_t page_size = 0;
};

// Keys in sequence b's cache row before the call's append: where the
// append starts and the rotary positions count from (params.cache_seqlens).
FLASHATTN_HD inline std::int64_t cached_keys(const AttentionParams& p, std::int64_t b) {
  return p.cache_seqlens != nullptr ? p.cache_seqlens[b] : p.seqlen_k - p.seqlen_new;
}

FLASHATTN_HD inline SequenceExtent sequence_extent(const AttentionParams& p, std::int64_t b) {
  SequenceExtent e;
  e.k_batch = p.kv_batch_index ? p.kv_batch_index[b] : b;
  if (p.cu_seqlens_q != nullptr) {
    e.q_start = p.cu_seqlens_q[b];
    e.seqlen_q = p.cu_seqlens_q[b + 1] - e.q_start;
    e.k_start = p.cu_seqlens_k[b];
    e.seqlen_k = p.cu_seqlens_k[b + 1] - e.k_start;
  } else {
    e.seqlen_q = p.seqlen_q;
    if (p.k_leftpad != nullptr) e.k_start = p.k_leftpad[b];
    e.seqlen_k = cached_keys(p, b) + p.seqlen_new - e.k_start;  // seqlen_k without a kv cache
  }
  if (p.seqused_k != nullptr) e.seqlen_k = p.seqused_k[b];
  if (p.block_table != nullptr) {
    e.pages = p.block_table + b * p.block_table_stride;
    e.page_size = p.page_size;
    e.k_start = 0;  // varlen over pages: every sequence starts at its first page
  }
  return e;
}

// The batch's sequences longest first (by seqlen_q x seqlen_k, ties in
// batch order): work handed out in this order ends on the shortest
// sequences, so unequal lengths (varlen, cache_seqlens) leave the threads
// less idle time at the end. Equal lengths: 0, 1, 2, ...
inline std::vector<std::int64_t> longest_first(const AttentionParams& p) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(std::max<std::int64_t>(p.batch, 0)));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  std::vector<std::int64_t> weight(order.size());
  for (std::int64_t b : order) {
    const SequenceExtent e = sequence_extent(p, b);
    weight[b] = e.seqlen_q * e.seqlen_k;
  }
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return weight[a] > weight[b]; });
  return order;
}

// Element offset of (batch b, row, head h) in a (batch, seqlen, heads, dim) tensor.
inline std::int64_t element_offset(const BshdStrides& s, std::int64_t b, std::int64_t row, std::int64_t h) {
  return b * s.batch + row * s.row + h * s.head;
}

// Element offset of key j of sequence e (counted from its first key), kv
// head h, in k or v (strides s; when paged, s.batch is the page stride).
inline std::int64_t key_offset(const BshdStrides& s, const SequenceExtent& e, std::int64_t j, std::int64_t h) {
  if (e.pages != nullptr) return e.pages[j / e.page_size] * s.batch + (j % e.page_size) * s.row + h * s.head;
  return e.k_batch * s.batch + (e.k_start + j) * s.row + h * s.head;
}

// key_offset of the n consecutive keys [begin, begin + n) into offsets[0, n):
// one division for the whole run instead of one per key (the kernels' tiles).
inline void key_offsets(const BshdStrides& s, const SequenceExtent& e, std::int64_t begin, std::int64_t n,
                        std::int64_t h, std::int64_t* offsets) {
  if (e.pages == nullptr) {
    const std::int64_t first = key_offset(s, e, begin, h);
    for (std::int64_t j = 0; j < n; ++j) offsets[j] = first + j * s.row;
    return;
  }
  std::int64_t page = begin / e.page_size, slot = begin % e.page_size;
  for (std::int64_t j = 0; j < n; ++j) {
    offsets[j] = e.pages[page] * s.batch + slot * s.row + h * s.head;
    if (++slot == e.page_size) {
      slot = 0;
      ++page;
    }
  }
}

}  // namespace flashattn::core
