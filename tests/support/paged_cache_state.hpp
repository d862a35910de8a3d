// Shared pieces of the PagedKVCache tests: random token rows, a full
// snapshot of a cache's observable state (for "a failed call changes
// nothing"), and the check that a call throws flashattn::Error with a
// message naming the operation. Header-only (the support library's source
// list is fixed).
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "flashattn/dtype.hpp"
#include "flashattn/error.hpp"
#include "flashattn/paged_kv_cache.hpp"

namespace flashattn::testing {

// One token's k or v of one layer: (heads_kv, head_dim) elements of the cache's dtype.
using RowBytes = std::vector<std::byte>;

inline std::int64_t row_bytes(const PagedKVCacheConfig& c) { return c.heads_kv * c.head_dim * dtype_size(c.dtype); }

// N(0, 1) values rounded to the dtype: random bit patterns would include NaNs
// that compare unequal as floats (we compare bytes, but keep them realistic).
inline RowBytes random_row(std::mt19937_64& rng, const PagedKVCacheConfig& c) {
  std::normal_distribution<float> normal;
  RowBytes row(static_cast<std::size_t>(row_bytes(c)));
  for (std::int64_t i = 0; i < c.heads_kv * c.head_dim; ++i) {
    const float x = normal(rng);
    if (c.dtype == DType::f32) std::memcpy(row.data() + 4 * i, &x, 4);
    const std::uint16_t half = c.dtype == DType::bf16 ? to_bfloat16(x).bits : to_float16(x).bits;
    if (c.dtype != DType::f32) std::memcpy(row.data() + 2 * i, &half, 2);
  }
  return row;
}

inline TensorView row_view(const RowBytes& row, const PagedKVCacheConfig& c) {
  return TensorView::contiguous(row.data(), c.dtype, {c.heads_kv, c.head_dim});
}

// The bytes of token `position` of a layer's pool (k_cache or v_cache) in block `block`.
inline RowBytes pool_row(const TensorView& pool, std::int32_t block, std::int64_t position_in_block) {
  const std::int64_t bytes = pool.shape[2] * pool.shape[3] * dtype_size(pool.dtype);
  const auto* base = static_cast<const std::byte*>(pool.data) + (block * pool.shape[1] + position_in_block) * bytes;
  return RowBytes(base, base + bytes);
}

// The bytes of every k and v pool of every layer.
inline std::vector<std::byte> pool_bytes(const PagedKVCache& cache) {
  std::vector<std::byte> all;
  for (std::int64_t layer = 0; layer < cache.config().num_layers; ++layer) {
    for (const TensorView& pool : {cache.k_cache(layer), cache.v_cache(layer)}) {
      const auto* p = static_cast<const std::byte*>(pool.data);
      all.insert(all.end(), p, p + pool.numel() * dtype_size(pool.dtype));
    }
  }
  return all;
}

// Everything a caller can observe: ids, lengths, tables, reference counts,
// the free blocks and the pools' bytes.
struct CacheSnapshot {
  std::vector<SequenceId> ids;
  std::vector<std::int64_t> lengths;
  std::vector<std::vector<std::int32_t>> tables;
  std::vector<std::int32_t> ref_counts;
  std::vector<std::int32_t> free_list;
  std::vector<std::byte> pools;

  explicit CacheSnapshot(const PagedKVCache& cache)
      : ids(cache.sequences()), free_list(cache.free_block_ids()), pools(pool_bytes(cache)) {
    for (SequenceId id : ids) lengths.push_back(cache.length(id)), tables.push_back(cache.block_ids(id));
    for (std::int64_t b = 0; b < cache.config().num_blocks; ++b)
      ref_counts.push_back(cache.ref_count(static_cast<std::int32_t>(b)));
  }
  friend bool operator==(const CacheSnapshot&, const CacheSnapshot&) = default;
};

// `call` throws flashattn::Error whose message starts with
// "PagedKVCache::<operation>: " and contains every detail, and the cache is
// exactly as before.
inline void expect_refused(const PagedKVCache& cache, const std::function<void()>& call, const std::string& operation,
                           const std::vector<std::string>& details) {
  const CacheSnapshot before(cache);
  try {
    call();
    ADD_FAILURE() << operation << ": accepted";
    return;
  } catch (const Error& error) {
    const std::string message = error.what();
    const std::string prefix = "PagedKVCache::" + operation + ": ";
    EXPECT_TRUE(message.starts_with(prefix)) << "\"" << message << "\" does not start with \"" << prefix << "\"";
    for (const std::string& d : details) EXPECT_NE(message.find(d), std::string::npos) << message << "\nlacks: " << d;
  }
  EXPECT_TRUE(CacheSnapshot(cache) == before) << operation << " changed the cache although it threw";
}

}  // namespace flashattn::testing
