// flash_attn_with_kvcache: the oracle rule over a grid of decode / append
// problems on every ISA, the append and rotary themselves against fp64, and
// the metamorphic checks (paged == contiguous, split == unsplit, the cache
// path == flash_attn on the same keys).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/rotary.hpp"
#include "flashattn/flashattn.hpp"
#include "flashattn/flash_attn_kvcache.hpp"
#include "frontends/kvcache_call.hpp"
#include "support/kvcache_problem.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

constexpr float kPlusInf = std::numeric_limits<float>::infinity();

// The grid: every value of the dimensions appears in some case (sq
// 1/3/16/64, sk up to 20000, pages 1/3/16/256 and contiguous, GQA 1/4/8,
// rotary both styles at d/2 and d, append or not, batch index, left padding,
// causal / window / alibi / softcap, splits).
std::vector<CacheCase> grid() {
  using R = Rotary;
  return {
      {.name = "decode_contiguous", .cache_lens = {37, 5, 64}},
      {.name = "decode_page1", .seqlen_q = 1, .heads = 8, .heads_kv = 2, .cache_lens = {19, 1}, .page_size = 1},
      {.name = "decode_page3_gqa8", .heads = 8, .heads_kv = 1, .cache_lens = {50, 9, 3}, .page_size = 3, .causal = true},
      {.name = "sq3_page16_append_rotary", .seqlen_q = 3, .heads = 8, .heads_kv = 2, .cache_lens = {40, 0},
       .seqlen_new = 3, .page_size = 16, .rotary = R::interleaved, .causal = true},
      {.name = "sq16_page256_neox_half", .dtype = DType::bf16, .seqlen_q = 16, .heads = 4, .heads_kv = 1,
       .head_dim = 64, .cache_lens = {300, 17}, .seqlen_new = 16, .page_size = 256, .rotary = R::neox,
       .rotary_dim = 32, .causal = true},
      {.name = "sq64_contiguous_append_window", .dtype = DType::f16, .seqlen_q = 64, .heads = 4, .heads_kv = 4,
       .cache_lens = {100, 70}, .seqlen_new = 64, .rotary = R::interleaved, .rotary_dim = 16, .window = {20, 0}},
      {.name = "batch_index_noncausal_rotary", .seqlen_q = 2, .heads = 4, .heads_kv = 1, .cache_lens = {33, 12, 1},
       .seqlen_new = 2, .batch_index = true, .rotary = R::neox},
      {.name = "leftpad_causal_alibi", .seqlen_q = 3, .heads = 4, .heads_kv = 2, .cache_lens = {30, 20},
       .seqlen_new = 1, .leftpad = {7, 20}, .rotary = R::interleaved, .causal = true, .alibi = true},
      {.name = "leftpad_softcap_bf16", .dtype = DType::bf16, .seqlen_q = 1, .heads = 8, .heads_kv = 8,
       .cache_lens = {45, 9}, .leftpad = {3, 0}, .softcap = 5.0f},
      {.name = "long_sk20000_split", .dtype = DType::bf16, .seqlen_q = 1, .heads = 8, .heads_kv = 2,
       .head_dim = 64, .cache_lens = {20000}, .seqlen_new = 1, .page_size = 16, .rotary = R::neox, .causal = true},
      {.name = "long_f32_splits7", .seqlen_q = 3, .heads = 4, .heads_kv = 1, .cache_lens = {5000, 1200},
       .seqlen_new = 3, .page_size = 3, .causal = true, .num_splits = 7},
      {.name = "window_splits3_alibi", .seqlen_q = 16, .heads = 4, .heads_kv = 4, .cache_lens = {900, 300},
       .window = {200, 5}, .alibi = true, .num_splits = 3},
      {.name = "head_dim_odd_f16", .dtype = DType::f16, .seqlen_q = 3, .heads = 6, .heads_kv = 3, .head_dim = 40,
       .cache_lens = {64, 2}, .seqlen_new = 2, .page_size = 16, .rotary = R::interleaved, .rotary_dim = 40,
       .causal = true},
      // The decode layout (decode_kernel.inl) at its edges: 16 lanes, a head
      // dim of 5 vectors (a half bf16 pair chunk), 1 lane (16 keys per sum).
      {.name = "decode_layout_bf16_d80_16lanes", .dtype = DType::bf16, .seqlen_q = 2, .heads = 16, .heads_kv = 2,
       .head_dim = 80, .cache_lens = {301, 6}, .page_size = 3, .causal = true},
      {.name = "decode_layout_f16_d48_1lane", .dtype = DType::f16, .seqlen_q = 1, .heads = 3, .heads_kv = 3,
       .head_dim = 48, .cache_lens = {133, 1}, .alibi = true, .softcap = 3.0f},
      // Packed scores (several keys per vector) under a window's left edge,
      // which falls inside a vector: 4 lanes x 4 keys, 8 lanes x 2 keys.
      {.name = "decode_layout_bf16_gqa4_window_alibi", .dtype = DType::bf16, .seqlen_q = 1, .heads = 8,
       .heads_kv = 2, .cache_lens = {301, 77}, .page_size = 16, .window = {50, 0}, .alibi = true},
      {.name = "decode_layout_f32_sq3_window_softcap", .seqlen_q = 3, .heads = 4, .heads_kv = 2,
       .cache_lens = {190, 45}, .window = {37, 3}, .softcap = 4.0f},
      // Items wider than 8 kv heads (decode_kv_heads) with a last partial
      // group: MHA at head dim 64 (32 + 8 heads), GQA 2 at 32 (16 + 4).
      {.name = "decode_layout_bf16_mha40_wide_items", .dtype = DType::bf16, .seqlen_q = 1, .heads = 40,
       .heads_kv = 40, .head_dim = 64, .cache_lens = {700, 33}, .page_size = 16, .causal = true},
      {.name = "decode_layout_f16_gqa2_hk20_splits", .dtype = DType::f16, .seqlen_q = 1, .heads = 40, .heads_kv = 20,
       .cache_lens = {1500, 260}, .alibi = true, .num_splits = 3},
      {.name = "empty_cache_rows", .seqlen_q = 3, .heads = 2, .heads_kv = 2, .cache_lens = {0, 4}, .causal = true},
  };
}

TEST(FlashAttnKvCache, OracleRuleOnEveryIsa) {
  std::uint64_t salt = 100;
  for (const CacheCase& c : grid()) {
    SCOPED_TRACE(c.name);
    KvCacheProblem p;
    setup(p, c, ++salt);
    frontend::KvCacheCall call(p.q, p.k_cache, p.v_cache, p.outputs(), p.opts());
    call.append();
    const ForwardOracle oracle(call.params());
    for_each_isa([&](Isa isa) {
      SCOPED_TRACE(std::string(isa_name(isa)));
      p.poison_outputs();
      run_forward(call.params());
      EXPECT_TRUE(oracle.check_out());
      EXPECT_TRUE(oracle.check_lse(kPlusInf));
    });
  }
}

// The public function does exactly what the three steps do.
TEST(FlashAttnKvCache, PublicCallEqualsItsSteps) {
  for (const CacheCase& c : grid()) {
    if (c.cache_lens[0] > 2000) continue;
    SCOPED_TRACE(c.name);
    KvCacheProblem a, b;
    setup(a, c, 7);
    setup(b, c, 7);
    flash_attn_with_kvcache(a.q, a.k_cache, a.v_cache, a.outputs(), a.opts());
    frontend::KvCacheCall call(b.q, b.k_cache, b.v_cache, b.outputs(), b.opts());
    call.append();
    run_forward(call.params());
    EXPECT_TRUE(a.out.same_bits(b.out));
    EXPECT_TRUE(a.lse.same_bits(b.lse));
    EXPECT_EQ(a.k_cache.bytes(), b.k_cache.bytes());
    EXPECT_EQ(a.v_cache.bytes(), b.v_cache.bytes());
  }
}

// The CPU backends take q already rotated (the front-end's copy): params
// asking the forward to rotate q itself (the CUDA kernel's hook) are
// refused, not silently run unrotated.
TEST(FlashAttnKvCache, CpuBackendsRefuseInKernelQRotation) {
  KvCacheProblem p;
  setup(p, grid()[3], 5);  // an append with rotary
  frontend::KvCacheCall call(p.q, p.k_cache, p.v_cache, p.outputs(), p.opts());
  call.append();
  AttentionParams params = call.params();
  ASSERT_FALSE(params.rotary.rotate_q);
  params.rotary.rotate_q = true;
  EXPECT_THROW(run_forward(params), Error);
}

// x rotated in fp64 at `position` (the tables' values as stored).
std::vector<double> rotated(const KvCacheProblem& p, std::vector<double> x, std::int64_t position) {
  if (p.rotary == Rotary::none) return x;
  const std::int64_t half = p.cos.view().shape[1];
  for (std::int64_t c = 0; c < half; ++c) {
    const std::int64_t i0 = p.rotary == Rotary::interleaved ? 2 * c : c;
    const std::int64_t i1 = p.rotary == Rotary::interleaved ? 2 * c + 1 : c + half;
    const double cs = p.cos.get(position * half + c), sn = p.sin.get(position * half + c);
    const double a = x[i0], b = x[i1];
    x[i0] = a * cs - b * sn;
    x[i1] = b * cs + a * sn;
  }
  return x;
}

// |got - want| within 2 ulp of the row's magnitude in the dtype (fp32 math,
// then one rounding, against fp64).
::testing::AssertionResult rows_match(const std::vector<double>& got, const std::vector<double>& want, DType dtype) {
  double scale = 0, err = 0;
  for (std::size_t c = 0; c < want.size(); ++c) scale = std::max(scale, std::abs(want[c]));
  for (std::size_t c = 0; c < want.size(); ++c) err = std::max(err, std::abs(got[c] - want[c]));
  const double bound = 4 * unit_roundoff(dtype) * std::max(scale, 1e-30);
  if (err <= bound) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "row error " << err << " > " << bound;
}

// After the call the cache holds the old contents with the new keys
// (rotated) and values at positions cache_seqlens[b] ..., nothing else changed.
TEST(FlashAttnKvCache, AppendWritesRotatedKeysAndValuesOnly) {
  for (const CacheCase& c : grid()) {
    if (c.seqlen_new == 0) continue;
    SCOPED_TRACE(c.name);
    KvCacheProblem p;
    setup(p, c, 11);
    HostTensor k_before = p.k_cache.contiguous_copy(), v_before = p.v_cache.contiguous_copy();
    flash_attn_with_kvcache(p.q, p.k_cache, p.v_cache, p.outputs(), p.opts());
    const std::int64_t d = p.head_dim;
    for (std::int64_t b = 0; b < p.batch(); ++b) {
      for (std::int64_t t = 0; t < p.seqlen_new; ++t) {
        const std::int64_t pos = p.cache_lens[b] + t;
        for (std::int64_t h = 0; h < p.heads_kv; ++h) {
          const std::int64_t at = p.slot(b, pos, h), from = ((b * p.seqlen_new + t) * p.heads_kv + h) * d;
          std::vector<double> k_in(d), k_got(d);
          for (std::int64_t e = 0; e < d; ++e) {
            k_in[e] = p.k_new.get(from + e), k_got[e] = p.k_cache.get(at + e);
            ASSERT_EQ(p.v_cache.get(at + e), p.v_new.get(from + e)) << "v at b " << b << ", t " << t;
            k_before.set(at + e, p.k_cache.get(at + e));  // the expected cache: old contents + the appended rows
            v_before.set(at + e, p.v_cache.get(at + e));
          }
          ASSERT_TRUE(rows_match(k_got, rotated(p, k_in, pos), p.dtype)) << "k at b " << b << ", t " << t;
        }
      }
    }
    EXPECT_TRUE(k_before.same_bits(p.k_cache)) << "a key outside the appended slots changed";
    EXPECT_TRUE(v_before.same_bits(p.v_cache)) << "a value outside the appended slots changed";
  }
}

// q is rotated at cache_seqlens[b] + i when causal or windowed, else at
// cache_seqlens[b] for every row.
TEST(FlashAttnKvCache, QueriesRotatedAtTheirPositions) {
  for (const CacheCase& c : grid()) {
    if (c.rotary == Rotary::none) continue;
    SCOPED_TRACE(c.name);
    KvCacheProblem p;
    setup(p, c, 13);
    frontend::KvCacheCall call(p.q, p.k_cache, p.v_cache, p.outputs(), p.opts());
    call.append();
    const AttentionParams& a = call.params();
    ASSERT_NE(a.q, p.q.view().data);
    const bool per_row = c.causal || c.window.left >= 0 || c.window.right >= 0;
    const HostTensor rotated_q(p.dtype, {p.batch(), p.seqlen_q, p.heads, p.head_dim});
    std::memcpy(rotated_q.view().data, a.q, rotated_q.numel() * dtype_size(p.dtype));
    for (std::int64_t b = 0; b < p.batch(); ++b) {
      for (std::int64_t i = 0; i < p.seqlen_q; ++i) {
        for (std::int64_t h = 0; h < p.heads; ++h) {
          const std::int64_t at = ((b * p.seqlen_q + i) * p.heads + h) * p.head_dim;
          std::vector<double> in(p.head_dim), got(p.head_dim);
          for (std::int64_t e = 0; e < p.head_dim; ++e) in[e] = p.q.get(at + e), got[e] = rotated_q.get(at + e);
          ASSERT_TRUE(rows_match(got, rotated(p, in, p.cache_lens[b] + (per_row ? i : 0)), p.dtype))
              << "q at b " << b << ", i " << i << ", h " << h;
        }
      }
    }
  }
}

// Positions [0, cache_lens[b]) of every sequence of `from` copied into `to`
// (same problem, other cache layout).
void copy_cached_rows(const KvCacheProblem& from, KvCacheProblem& to) {
  for (std::int64_t b = 0; b < to.batch(); ++b) {
    for (std::int64_t pos = 0; pos < to.cache_lens[b]; ++pos) {
      for (std::int64_t h = 0; h < to.heads_kv; ++h) {
        const std::int64_t at = to.slot(b, pos, h), src = from.slot(b, pos, h);
        for (std::int64_t e = 0; e < to.head_dim; ++e) {
          to.k_cache.set(at + e, from.k_cache.get(src + e));
          to.v_cache.set(at + e, from.v_cache.get(src + e));
        }
      }
    }
  }
}

// The same logical cache through pages or contiguous rows: bitwise equal.
TEST(FlashAttnKvCache, PagedEqualsContiguous) {
  CacheCase c{.name = "paged", .dtype = DType::bf16, .seqlen_q = 3, .heads = 8, .heads_kv = 2, .head_dim = 64,
              .cache_lens = {700, 33, 260}, .seqlen_new = 3, .rotary = Rotary::neox, .causal = true};
  for (const std::int64_t page : {1, 3, 16, 256}) {
    SCOPED_TRACE(page);
    for_each_isa([&](Isa isa) {
      SCOPED_TRACE(std::string(isa_name(isa)));
      KvCacheProblem paged, contiguous;
      c.page_size = 0;
      setup(contiguous, c, 21);
      c.page_size = page;
      setup(paged, c, 21);
      copy_cached_rows(contiguous, paged);
      flash_attn_with_kvcache(paged.q, paged.k_cache, paged.v_cache, paged.outputs(), paged.opts());
      flash_attn_with_kvcache(contiguous.q, contiguous.k_cache, contiguous.v_cache, contiguous.outputs(),
                              contiguous.opts());
      EXPECT_TRUE(paged.out.same_bits(contiguous.out));
      EXPECT_TRUE(paged.lse.same_bits(contiguous.lse));
    });
  }
}

// num_splits n > 1 equals num_splits 1 within rounding (each passes the
// oracle, and they differ by a few ulp at most); num_splits 1 is bitwise
// flash_attn over the same keys (the unsplit kernel).
TEST(FlashAttnKvCache, SplitsMatchUnsplitAndUnsplitIsTheForward) {
  CacheCase c{.name = "splits", .seqlen_q = 3, .heads = 8, .heads_kv = 2, .head_dim = 64, .cache_lens = {3000, 700},
              .page_size = 16, .causal = true};
  for_each_isa([&](Isa isa) {
    SCOPED_TRACE(std::string(isa_name(isa)));
    c.num_splits = 1;
    KvCacheProblem one;
    setup(one, c, 31);
    frontend::KvCacheCall call(one.q, one.k_cache, one.v_cache, one.outputs(), one.opts());
    call.append();
    const ForwardOracle oracle(call.params());
    run_forward(call.params());
    ASSERT_TRUE(oracle.check_out());
    for (const std::int64_t splits : {2, 3, 7}) {
      SCOPED_TRACE(splits);
      c.num_splits = splits;
      KvCacheProblem many;
      setup(many, c, 31);
      flash_attn_with_kvcache(many.q, many.k_cache, many.v_cache, many.outputs(), many.opts());
      double diff = 0, scale = 0;
      for (std::int64_t i = 0; i < one.out.numel(); ++i) {
        diff = std::max(diff, std::abs(one.out.get(i) - many.out.get(i)));
        scale = std::max(scale, std::abs(one.out.get(i)));
      }
      EXPECT_LE(diff, 8 * unit_roundoff(DType::f32) * scale);
      for (std::int64_t i = 0; i < one.lse.numel(); ++i)
        EXPECT_NEAR(one.lse.get(i), many.lse.get(i), 4e-6 * std::abs(one.lse.get(i)) + 1e-6);
    }
    // flash_attn on contiguous copies of each sequence's keys.
    for (std::int64_t b = 0; b < one.batch(); ++b) {
      const std::int64_t sk = one.cache_lens[b];
      HostTensor q(one.dtype, {1, one.seqlen_q, one.heads, one.head_dim}), k(one.dtype, {1, sk, one.heads_kv, one.head_dim});
      HostTensor v(one.dtype, {1, sk, one.heads_kv, one.head_dim}), out(one.dtype, {1, one.seqlen_q, one.heads, one.head_dim});
      const std::int64_t q_row = one.seqlen_q * one.heads * one.head_dim;
      for (std::int64_t e = 0; e < q_row; ++e) q.set(e, one.q.get(b * q_row + e));
      for (std::int64_t pos = 0; pos < sk; ++pos) {
        for (std::int64_t h = 0; h < one.heads_kv; ++h) {
          for (std::int64_t e = 0; e < one.head_dim; ++e) {
            k.set((pos * one.heads_kv + h) * one.head_dim + e, one.k_cache.get(one.slot(b, pos, h) + e));
            v.set((pos * one.heads_kv + h) * one.head_dim + e, one.v_cache.get(one.slot(b, pos, h) + e));
          }
        }
      }
      flash_attn(q, k, v, {.out = out}, {.causal = true});
      for (std::int64_t e = 0; e < q_row; ++e) ASSERT_EQ(out.get(e), one.out.get(b * q_row + e)) << "batch " << b;
    }
  });
}

}  // namespace
}  // namespace flashattn::testing
