// The valid flash_attn_with_kvcache call that the bad-input tests break one
// argument of (error_case.hpp's reject()): new k / v appended, rotary,
// causal, a cache_seqlens tensor, softmax_lse, alibi and softcap; contiguous
// with cache_batch_idx and cache_leftpad, or paged through a shuffled block
// table. Owns every buffer (outputs poisoned with the sentinel), and checks
// that a call wrote only the cache slots it appends to. Header-only.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "flashattn/flash_attn_kvcache.hpp"
#include "support/error_case.hpp"
#include "support/host_tensor.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {

enum class CacheLayout { contiguous, paged };

// Sizes of the valid call. Its capacity is the longest end plus `spare`
// (paged: rounded up to whole pages). With the defaults: contiguous caches
// (3, 11, 2, 8), cache_batch_idx {2, 1}, cache_leftpad {1, 0}; paged caches
// (11, 3, 2, 8) with a (2, 4) block table, capacity 12, entries (0, 3),
// (1, 2) and (1, 3) unused. Rotary tables (capacity + seqlen_q, rotary_half).
struct KvCacheSpec {
  DType dtype = DType::f32;
  std::int64_t seqlen_q = 3, heads = 4, heads_kv = 2, head_dim = 8, rotary_half = 2;  // rotary_half 0: none
  std::vector<std::int32_t> cache_lens{5, 3};                                         // cache_seqlens (batch = size)
  std::int64_t seqlen_new = 2, page_size = 3, spare = 4;
};

class KvCacheCase : public BufferPool {
 public:
  using EntryType = CacheLayout;
  using SpecType = KvCacheSpec;

  KvCacheCase(CacheLayout layout, const KvCacheSpec& s) : layout_(layout) {
    auto rng = test_rng(static_cast<std::uint64_t>(layout));
    const std::int64_t b = static_cast<std::int64_t>(s.cache_lens.size());
    capacity = *std::max_element(s.cache_lens.begin(), s.cache_lens.end()) + s.seqlen_new + s.spare;
    q = add_random(s.dtype, {b, s.seqlen_q, s.heads, s.head_dim}, rng);
    options.k = add_random(s.dtype, {b, s.seqlen_new, s.heads_kv, s.head_dim}, rng);
    options.v = add_random(s.dtype, {b, s.seqlen_new, s.heads_kv, s.head_dim}, rng);
    std::vector<std::int64_t> cache_shape;
    if (layout == CacheLayout::paged) {
      page_size = s.page_size;
      const std::int64_t per_seq = (capacity + page_size - 1) / page_size;
      capacity = per_seq * page_size;
      cache_rows = per_seq * b + 3;  // a few pages nobody uses
      std::vector<std::int32_t> pages(cache_rows);
      std::iota(pages.begin(), pages.end(), 0);
      std::shuffle(pages.begin(), pages.end(), rng);
      HostTensor table(DType::i32, {b, per_seq});
      std::copy_n(pages.begin(), b * per_seq, table.data<std::int32_t>());
      options.block_table = add(std::move(table));
      cache_shape = {cache_rows, page_size, s.heads_kv, s.head_dim};
    } else {
      cache_rows = b + 1;
      std::vector<std::int32_t> rows(b), leftpad(b, 0);
      for (std::int64_t i = 0; i < b; ++i) rows[i] = static_cast<std::int32_t>(cache_rows - 1 - i);
      leftpad[0] = std::min(1, s.cache_lens[0]);
      options.cache_batch_idx = add(int_tensor(rows));
      options.cache_leftpad = add(int_tensor(leftpad));
      cache_shape = {cache_rows, capacity, s.heads_kv, s.head_dim};
    }
    k_cache = add_random(s.dtype, cache_shape, rng);
    v_cache = add_random(s.dtype, cache_shape, rng);
    seqlens = add(int_tensor(s.cache_lens));
    if (s.rotary_half > 0) {
      const std::int64_t rows = capacity + s.seqlen_q, half = s.rotary_half;
      HostTensor cos(s.dtype, {rows, half}), sin(s.dtype, {rows, half});
      for (std::int64_t pos = 0; pos < rows; ++pos) {
        for (std::int64_t c = 0; c < half; ++c) {
          const double angle = pos * std::pow(10000.0, -static_cast<double>(c) / half);
          cos.set(pos * half + c, std::cos(angle));
          sin.set(pos * half + c, std::sin(angle));
        }
      }
      options.rotary_cos = add(std::move(cos));
      options.rotary_sin = add(std::move(sin));
    }
    HostTensor slopes(DType::f32, {s.heads});
    for (std::int64_t h = 0; h < s.heads; ++h) slopes.set(h, 0.25 * (h + 1));
    options.alibi_slopes = add(std::move(slopes));
    options.causal = true;
    options.softcap = 20.0f;
    outputs.out = add(HostTensor(s.dtype, {b, s.seqlen_q, s.heads, s.head_dim}, kSentinel));
    outputs.softmax_lse = add(HostTensor(DType::f32, {b, s.heads, s.seqlen_q}, kSentinel));
  }

  TensorView& view(const std::string& arg) {
    if (arg == "q") return q;
    if (arg == "k_cache") return k_cache;
    if (arg == "v_cache") return v_cache;
    if (arg == "k") return options.k;
    if (arg == "v") return options.v;
    if (arg == "rotary_cos") return options.rotary_cos;
    if (arg == "rotary_sin") return options.rotary_sin;
    if (arg == "cache_seqlens") return seqlens;
    if (arg == "cache_batch_idx") return options.cache_batch_idx;
    if (arg == "cache_leftpad") return options.cache_leftpad;
    if (arg == "block_table") return options.block_table;
    if (arg == "alibi_slopes") return options.alibi_slopes;
    if (arg == "out") return outputs.out;
    if (arg == "softmax_lse") return outputs.softmax_lse;
    ADD_FAILURE() << "no argument " << arg;
    return q;
  }
  // Replaces `arg` by a new buffer of the given dtype and shape (sentinel-filled).
  void replace(const std::string& arg, DType dtype, std::vector<std::int64_t> shape) {
    view(arg) = add(HostTensor(dtype, std::move(shape), kSentinel));
  }
  // Replaces `arg` by a same-shaped view whose last dimension has stride 2.
  void make_last_dim_strided(const std::string& arg) {
    const TensorView old = view(arg);
    std::vector<std::int64_t> storage = shape_of(old);
    storage.back() *= 2;
    view(arg) = add(HostTensor::padded(old.dtype, shape_of(old), storage, kSentinel));
    view(arg).stride[old.rank - 1] = 2;
  }
  // `arg` viewed in place of its own shape at the start of `into`'s buffer.
  void alias(const std::string& arg, const std::string& into) { view(arg).data = view(into).data; }
  // CacheLayout `index` of a (batch,) int32 tensor.
  std::int32_t& int_at(const std::string& arg, std::int64_t index) {
    return static_cast<std::int32_t*>(view(arg).data)[index * view(arg).stride[0]];
  }
  void set_int(const std::string& arg, std::int64_t index, std::int32_t value) { int_at(arg, index) = value; }
  std::int32_t get_int(const std::string& arg, std::int64_t index) { return int_at(arg, index); }
  std::int32_t& table(std::int64_t b, std::int64_t n) {
    return static_cast<std::int32_t*>(options.block_table.data)[b * options.block_table.stride[0] + n];
  }
  void no_append() { options.k = options.v = options.rotary_cos = options.rotary_sin = {}; }

  std::string prefix(const std::string& argument) const { return "flash_attn_with_kvcache: " + argument; }

  void call() const {
    KvCacheOptions o = options;
    if (seqlens_int) {
      o.cache_seqlens = *seqlens_int;
    } else if (seqlens.present()) {
      o.cache_seqlens = seqlens;
    }
    flash_attn_with_kvcache(q, k_cache, v_cache, outputs, o);
  }

  // The cache slots (flat (row, position) or (page, row) indices of
  // (hk, d) blocks) the call appends to, with the (b, t) each receives.
  // Reads the index tensors: only for a call that succeeded.
  std::vector<std::pair<std::int64_t, std::int64_t>> appended_slots() {
    std::vector<std::pair<std::int64_t, std::int64_t>> slots;  // (slot, b * seqlen_new + t)
    if (!options.k.present()) return slots;
    const std::int64_t batch = q.shape[0], seqlen_new = options.k.shape[1];
    for (std::int64_t b = 0; b < batch; ++b) {
      const std::int64_t start = seqlens_int ? *seqlens_int : get_int("cache_seqlens", b);
      for (std::int64_t t = 0; t < seqlen_new; ++t) {
        const std::int64_t pos = start + t;
        std::int64_t slot = 0;
        if (layout_ == CacheLayout::paged) {
          slot = table(b, pos / page_size) * page_size + pos % page_size;
        } else {
          const std::int64_t row = options.cache_batch_idx.present() ? get_int("cache_batch_idx", b) : b;
          slot = row * capacity + pos;
        }
        slots.emplace_back(slot, b * seqlen_new + t);
      }
    }
    return slots;
  }

  TensorView q, k_cache, v_cache, seqlens;  // seqlens: the cache_seqlens tensor (absent: see seqlens_int)
  std::optional<std::int64_t> seqlens_int;  // cache_seqlens as one int
  KvCacheOptions options;
  KvCacheOutputs outputs;
  std::int64_t capacity = 0, cache_rows = 0, page_size = 0;  // cache_rows: b_cache or num_blocks

 private:
  CacheLayout layout_;
};

// After a successful call: out and softmax_lse written everywhere, and the
// caches (whose bytes were `k_before`, `v_before`) changed only in the slots
// the call appends to, where v_cache holds the new v exactly.
inline void expect_wrote_only_its_slots(KvCacheCase& c, const std::vector<unsigned char>& k_before,
                                        const std::vector<unsigned char>& v_before) {
  EXPECT_TRUE(c.written(c.outputs.out));
  const HostTensor* lse = c.owner(c.outputs.softmax_lse);
  for (std::int64_t i = 0; i < lse->numel(); ++i) ASSERT_NE(lse->get(i), kSentinel) << "softmax_lse[" << i << "]";
  const std::int64_t slot_bytes = c.k_cache.shape[2] * c.k_cache.shape[3] * dtype_size(c.k_cache.dtype);
  const std::vector<unsigned char>& k_after = c.owner(c.k_cache)->bytes();
  const std::vector<unsigned char>& v_after = c.owner(c.v_cache)->bytes();
  std::vector<char> appended(k_before.size() / slot_bytes, 0);
  const auto* v_new = static_cast<const unsigned char*>(c.options.v.data);
  for (const auto& [slot, row] : c.appended_slots()) {
    ASSERT_GE(slot, 0);
    ASSERT_LT(slot, static_cast<std::int64_t>(appended.size()));
    appended[slot] = 1;
    EXPECT_EQ(std::memcmp(v_after.data() + slot * slot_bytes, v_new + row * slot_bytes, slot_bytes), 0)
        << "v_cache slot " << slot << " does not hold new v row " << row;
  }
  for (std::size_t slot = 0; slot < appended.size(); ++slot) {
    if (appended[slot]) continue;
    const std::size_t at = slot * slot_bytes;
    ASSERT_EQ(std::memcmp(k_before.data() + at, k_after.data() + at, slot_bytes), 0) << "k_cache slot " << slot;
    ASSERT_EQ(std::memcmp(v_before.data() + at, v_after.data() + at, slot_bytes), 0) << "v_cache slot " << slot;
  }
}

inline void expect_accepted(KvCacheCase& c) {
  const std::vector<unsigned char> k_before = c.owner(c.k_cache)->bytes(), v_before = c.owner(c.v_cache)->bytes();
  ASSERT_NO_THROW(c.call());
  expect_wrote_only_its_slots(c, k_before, v_before);
}

}  // namespace flashattn::testing
