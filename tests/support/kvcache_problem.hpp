// A flash_attn_with_kvcache problem: random q, a random cache (contiguous or
// paged through a shuffled block table), optional new k / v and rotary
// tables, per-sequence lengths (a tensor or one int), cache_batch_idx and
// left padding; and CacheCase, a problem's description for case lists.
// Header-only. Not copyable (HostTensor views point into their storage).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "flashattn/flash_attn_kvcache.hpp"
#include "support/host_tensor.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {

enum class Rotary { none, interleaved, neox };

struct KvCacheProblem {
  DType dtype = DType::f32;
  std::int64_t seqlen_q = 1, heads = 4, heads_kv = 2, head_dim = 32;
  std::vector<std::int32_t> cache_lens{40, 7};  // cache_seqlens, one per sequence (batch = size)
  std::int64_t seqlen_new = 0;                   // new k / v appended (0: none)
  std::int64_t page_size = 0;                    // 0: contiguous cache
  std::int64_t spare_positions = 5;              // capacity beyond the longest sequence
  bool batch_index = false;                      // cache_batch_idx: a shuffled subset of more cache rows
  std::vector<std::int32_t> leftpad;             // cache_leftpad (contiguous only); empty = none
  bool int_seqlens = false;                      // cache_seqlens as one int (cache_lens all equal)
  Rotary rotary = Rotary::none;
  std::int64_t rotary_dim = 0;                   // 0: head_dim
  bool alibi = false;
  KvCacheOptions options;                        // causal, window, softcap, num_splits, ...

  HostTensor q, k_cache, v_cache, k_new, v_new, cos, sin, out, lse;
  HostTensor seqlens, block_table, batch_idx, leftpad_t, alibi_slopes;
  std::int64_t capacity = 0, cache_rows = 0;

  KvCacheProblem() = default;
  KvCacheProblem(const KvCacheProblem&) = delete;
  KvCacheProblem& operator=(const KvCacheProblem&) = delete;

  std::int64_t batch() const { return static_cast<std::int64_t>(cache_lens.size()); }

  void allocate(std::mt19937_64& rng) {
    const std::int64_t b = batch();
    const std::int64_t longest = *std::max_element(cache_lens.begin(), cache_lens.end()) + seqlen_new;
    capacity = longest + spare_positions;
    q = HostTensor(dtype, {b, seqlen_q, heads, head_dim});
    q.randomize(rng);
    if (seqlen_new > 0) {  // before the cache: equal problems of either layout share q, k and v
      k_new = HostTensor(dtype, {b, seqlen_new, heads_kv, head_dim});
      v_new = HostTensor(dtype, {b, seqlen_new, heads_kv, head_dim});
      k_new.randomize(rng);
      v_new.randomize(rng);
    }
    if (page_size > 0) {
      const std::int64_t per_seq = (capacity + page_size - 1) / page_size;
      cache_rows = per_seq * b + 3;  // a few pages nobody uses
      std::vector<std::int32_t> pages(cache_rows);
      std::iota(pages.begin(), pages.end(), 0);
      std::shuffle(pages.begin(), pages.end(), rng);
      block_table = HostTensor(DType::i32, {b, per_seq});
      for (std::int64_t i = 0; i < b * per_seq; ++i) block_table.data<std::int32_t>()[i] = pages[i];
      capacity = per_seq * page_size;
      k_cache = HostTensor(dtype, {cache_rows, page_size, heads_kv, head_dim});
    } else {
      cache_rows = batch_index ? b + 2 : b;
      k_cache = HostTensor(dtype, {cache_rows, capacity, heads_kv, head_dim});
    }
    v_cache = HostTensor(dtype, shape_of(k_cache.view()));
    k_cache.randomize(rng);
    v_cache.randomize(rng);
    if (batch_index) {
      std::vector<std::int32_t> rows(cache_rows);
      std::iota(rows.begin(), rows.end(), 0);
      std::shuffle(rows.begin(), rows.end(), rng);
      rows.resize(b);
      batch_idx = int_tensor(rows);
    }
    seqlens = int_tensor(cache_lens);
    if (!leftpad.empty()) leftpad_t = int_tensor(leftpad);
    if (rotary != Rotary::none) {
      const std::int64_t half = (rotary_dim ? rotary_dim : head_dim) / 2;
      cos = HostTensor(dtype, {capacity + seqlen_q, half});
      sin = HostTensor(dtype, {capacity + seqlen_q, half});
      for (std::int64_t pos = 0; pos < capacity + seqlen_q; ++pos) {
        for (std::int64_t c = 0; c < half; ++c) {
          const double angle = pos * std::pow(10000.0, -static_cast<double>(c) / half);
          cos.set(pos * half + c, std::cos(angle));
          sin.set(pos * half + c, std::sin(angle));
        }
      }
    }
    if (alibi) {
      alibi_slopes = HostTensor(DType::f32, {heads});
      std::uniform_real_distribution<double> slope(0.01, 0.5);
      for (std::int64_t h = 0; h < heads; ++h) alibi_slopes.set(h, slope(rng));
    }
    out = HostTensor(dtype, {b, seqlen_q, heads, head_dim});
    lse = HostTensor(DType::f32, {b, heads, seqlen_q});
    poison_outputs();
  }

  void poison_outputs() {
    out.fill(std::numeric_limits<double>::quiet_NaN());
    lse.fill(std::numeric_limits<double>::quiet_NaN());
  }

  // The call's arguments; `view` gives each tensor's view (the CUDA tests
  // pass device views or host memory tagged as on a device).
  static TensorView host_view(const HostTensor& t) { return t.view(); }
  template <class View = decltype(&host_view)>
  KvCacheOptions opts(View view = &host_view) const {
    KvCacheOptions o = options;
    if (int_seqlens) {
      o.cache_seqlens = std::int64_t{cache_lens[0]};
    } else {
      o.cache_seqlens = view(seqlens);
    }
    if (seqlen_new > 0) o.k = view(k_new), o.v = view(v_new);
    if (rotary != Rotary::none) o.rotary_cos = view(cos), o.rotary_sin = view(sin);
    o.rotary_interleaved = rotary != Rotary::neox;
    if (page_size > 0) o.block_table = view(block_table);
    if (batch_index) o.cache_batch_idx = view(batch_idx);
    if (!leftpad.empty()) o.cache_leftpad = view(leftpad_t);
    if (alibi) o.alibi_slopes = view(alibi_slopes);
    return o;
  }
  template <class View = decltype(&host_view)>
  KvCacheOutputs outputs(View view = &host_view) const {
    return {view(out), view(lse)};
  }

  // Cache row (contiguous) or slot of key position `pos` of sequence b: the
  // flat element offset of (pos, head h, dim 0) in k_cache / v_cache.
  std::int64_t slot(std::int64_t b, std::int64_t pos, std::int64_t h) const {
    if (page_size > 0) {
      const std::int64_t page = block_table.data<std::int32_t>()[b * block_table.view().shape[1] + pos / page_size];
      return ((page * page_size + pos % page_size) * heads_kv + h) * head_dim;
    }
    const std::int64_t row = batch_index ? batch_idx.data<std::int32_t>()[b] : b;
    return ((row * capacity + pos) * heads_kv + h) * head_dim;
  }
};

// A problem's description, for case lists.
struct CacheCase {
  const char* name;
  DType dtype = DType::f32;
  std::int64_t seqlen_q = 1, heads = 4, heads_kv = 4, head_dim = 32;
  std::vector<std::int32_t> cache_lens{37, 5};
  std::int64_t seqlen_new = 0, page_size = 0;
  bool batch_index = false;
  std::vector<std::int32_t> leftpad;
  Rotary rotary = Rotary::none;
  std::int64_t rotary_dim = 0;
  bool causal = false;
  WindowSize window{};
  bool alibi = false;
  float softcap = 0.0f;
  std::int64_t num_splits = 0;
  bool int_seqlens = false;
};

// `p` allocated for case `c` with random inputs from test_rng(salt): equal
// salts in one test give equal problems.
inline void setup(KvCacheProblem& p, const CacheCase& c, std::uint64_t salt) {
  p.dtype = c.dtype;
  p.seqlen_q = c.seqlen_q;
  p.heads = c.heads;
  p.heads_kv = c.heads_kv;
  p.head_dim = c.head_dim;
  p.cache_lens = c.cache_lens;
  p.seqlen_new = c.seqlen_new;
  p.page_size = c.page_size;
  p.batch_index = c.batch_index;
  p.leftpad = c.leftpad;
  p.int_seqlens = c.int_seqlens;
  p.rotary = c.rotary;
  p.rotary_dim = c.rotary_dim;
  p.alibi = c.alibi;
  p.options.causal = c.causal;
  p.options.window_size = c.window;
  p.options.softcap = c.softcap;
  p.options.num_splits = c.num_splits;
  std::mt19937_64 rng = test_rng(salt);
  p.allocate(rng);
}

}  // namespace flashattn::testing
