// Where sequence b lives, on the device: core::sequence_extent with every
// index read from a device array clamped to params.bounds. The host cannot
// check device index arrays (cu_seqlens, seqused_k, block_table,
// cache_seqlens, cache_batch_idx, cache_leftpad) without synchronising, so
// a bad entry gives unspecified values here, never an access outside the
// tensors.
#pragma once

#include <cstdint>

#include "core/fast_divmod.hpp"
#include "core/sequence.hpp"
#include "flashattn/params.hpp"

namespace flashattn::cuda {

__device__ __forceinline__ std::int64_t clamp_index(std::int64_t x, std::int64_t lo, std::int64_t hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

// Positions one sequence's kv-cache row (bounds.kv_seqlen) or pages hold;
// paged positions are int32 (KeyRows' page arithmetic), as every key count
// the front-ends pass.
__device__ __forceinline__ std::int64_t cache_capacity(const AttentionParams& p) {
  if (p.block_table) return clamp_index(p.bounds.pages_per_seq * p.page_size, 0, 0x7fffffff);
  return p.bounds.kv_seqlen;
}

// core::cached_keys (where sequence b's append starts and its rotary
// positions count from), clamped so that the seqlen_new appended positions
// lie in the cache (the front-end checks seqlen_new <= capacity).
__device__ __forceinline__ std::int64_t bounded_cached_keys(const AttentionParams& p, std::int64_t b) {
  return clamp_index(core::cached_keys(p, b), 0, cache_capacity(p) - p.seqlen_new);
}

__device__ __forceinline__ core::SequenceExtent bounded_extent(const AttentionParams& p, std::int64_t b) {
  const AttentionParams::IndexBounds& bounds = p.bounds;
  core::SequenceExtent e = core::sequence_extent(p, b);
  if (p.is_varlen()) {
    e.q_start = clamp_index(e.q_start, 0, bounds.rows_q);
    e.seqlen_q = clamp_index(e.seqlen_q, 0, bounds.rows_q - e.q_start);
  }
  e.seqlen_q = clamp_index(e.seqlen_q, 0, p.seqlen_q);  // the grid covers seqlen_q rows (varlen: max_seqlen_q)
  if (p.kv_batch_index) e.k_batch = clamp_index(e.k_batch, 0, bounds.kv_batches - 1);
  std::int64_t key_rows = p.seqlen_k;  // positions of k and v a sequence may use
  if (p.block_table) {
    key_rows = cache_capacity(p);
  } else if (p.is_varlen()) {
    e.k_start = clamp_index(e.k_start, 0, bounds.rows_k);
    key_rows = bounds.rows_k - e.k_start;
  } else if (bounds.kv_seqlen > 0) {
    e.k_start = clamp_index(e.k_start, 0, bounds.kv_seqlen);
    key_rows = cache_capacity(p) - e.k_start;
  }
  e.seqlen_k = clamp_index(e.seqlen_k, 0, key_rows);
  return e;
}

// Rows of k or v of one sequence and kv head: row j (counted from the
// sequence's first key) at operator()(j). Paged: page indices clamped to
// the pool, the page of a row by a multiply (FastDivmod) and its entry read
// through the read-only cache.
template <class Elem>
struct KeyRows {
  const Elem* base;  // paged: the kv head in page 0; else row 0 of the sequence
  std::int64_t row_stride;
  const std::int32_t* pages;  // null: not paged
  std::int64_t page_stride;
  core::FastDivmod page_size;
  std::int32_t last_page;

  // Elements from one row to the next where rows are evenly spaced (not paged), else 0.
  __device__ __forceinline__ std::int64_t even_stride() const { return pages == nullptr ? row_stride : 0; }

  __device__ __forceinline__ const Elem* operator()(std::int64_t j) const {
    if (pages == nullptr) return base + j * row_stride;
    const auto jj = static_cast<std::uint32_t>(j);  // 0 <= j < seqlen_k <= int32 max (bounded_extent)
    const std::uint32_t slot = page_size.div(jj);
    const std::int64_t page = clamp_index(__ldg(pages + slot), 0, last_page);
    return base + page * page_stride + page_size.mod(jj, slot) * row_stride;
  }
};

template <class Elem>
__device__ __forceinline__ KeyRows<Elem> key_rows(const AttentionParams& p, const void* data, const BshdStrides& s,
                                                  const core::SequenceExtent& e, std::int64_t kv_head) {
  const Elem* head = static_cast<const Elem*>(data) + kv_head * s.head;
  if (e.pages != nullptr) {
    return {head,
            s.row,
            e.pages,
            s.batch,
            core::FastDivmod(static_cast<std::uint32_t>(e.page_size)),
            static_cast<std::int32_t>(p.bounds.num_pages - 1)};
  }
  return {head + e.k_batch * s.batch + e.k_start * s.row, s.row, nullptr, 0, core::FastDivmod(1), 0};
}

}  // namespace flashattn::cuda
