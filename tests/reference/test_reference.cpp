// The fp64 reference (src/reference/) on tiny hand-checkable cases, and its
// feature formulas against a direct computation written from SEMANTICS.md.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/dropout.hpp"
#include "flashattn/params.hpp"
#include "reference/reference_forward.hpp"
#include "support/oracle.hpp"
#include "support/tiny_problem.hpp"

namespace flashattn::testing {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Naive attention of one (b, h) written straight from SEMANTICS.md §0-§1
// (no shared code with the reference): fills out (sq, dim) and lse (sq).
struct Direct {
  std::vector<double> out, lse;
};

Direct direct(const AttentionParams& p, std::int64_t b, std::int64_t h, std::int64_t q_start, std::int64_t k_start,
              std::int64_t sq, std::int64_t sk) {
  Direct r;
  r.out.assign(sq * p.head_dim_v, 0.0);
  r.lse.assign(sq, -kInf);
  const auto* q = static_cast<const double*>(p.q);
  const auto* k = static_cast<const double*>(p.k);
  const auto* v = static_cast<const double*>(p.v);
  const std::int64_t hk = h / (p.heads_q / p.heads_kv), d = sk - sq;
  const double slope = p.alibi_slopes ? p.alibi_slopes[b * p.alibi_batch_stride + h] : 0.0;
  for (std::int64_t i = 0; i < sq; ++i) {
    const std::int64_t c = p.mask.anchor == MaskAnchor::bottom_right ? i + d : i;
    std::vector<double> s(sk, -kInf);
    for (std::int64_t j = 0; j < sk; ++j) {
      if (p.mask.left >= 0 && j < c - p.mask.left) continue;
      if (p.mask.right >= 0 && j > c + p.mask.right) continue;
      double dot = 0;
      for (std::int64_t x = 0; x < p.head_dim; ++x)
        dot += q[b * p.q_stride.batch + (q_start + i) * p.q_stride.row + h * p.q_stride.head + x] *
               k[b * p.k_stride.batch + (k_start + j) * p.k_stride.row + hk * p.k_stride.head + x];
      s[j] = p.softmax_scale * dot;
      if (p.softcap > 0) s[j] = p.softcap * std::tanh(s[j] / p.softcap);
      s[j] -= slope * std::abs(static_cast<double>(i + d - j));
    }
    double sum = 0;
    for (double x : s) sum += std::exp(x);
    if (sum == 0) continue;
    r.lse[i] = std::log(sum);
    for (std::int64_t j = 0; j < sk; ++j)
      for (std::int64_t x = 0; x < p.head_dim_v; ++x)
        r.out[i * p.head_dim_v + x] +=
            std::exp(s[j]) / sum * v[b * p.v_stride.batch + (k_start + j) * p.v_stride.row + hk * p.v_stride.head + x];
  }
  return r;
}

// Equal infinities, or finite values within tol.
::testing::AssertionResult near(double got, double want, double tol) {
  if (got == want || std::abs(got - want) <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << got << " vs " << want << " (tolerance " << tol << ")";
}

// Compares the reference with `direct` on every (b, h) of a fixed-length problem.
void expect_matches_direct(const AttentionParams& p, double tol = 1e-12) {
  const reference::ReferenceOutput r = reference::reference_forward(p);
  for (std::int64_t b = 0; b < p.batch; ++b)
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      const Direct want = direct(p, b, h, 0, 0, p.seqlen_q, p.seqlen_k);
      for (std::int64_t i = 0; i < p.seqlen_q; ++i) {
        const std::int64_t row = b * p.seqlen_q + i;
        EXPECT_TRUE(near(r.lse[h * r.rows + row], want.lse[i], tol)) << "b=" << b << " h=" << h << " i=" << i;
        for (std::int64_t x = 0; x < p.head_dim_v; ++x)
          EXPECT_NEAR(r.out[(row * p.heads_q + h) * p.head_dim_v + x], want.out[i * p.head_dim_v + x], tol)
              << "b=" << b << " h=" << h << " i=" << i << " x=" << x;
      }
    }
}

TEST(Reference, OneKeyGivesItsValue) {
  Tiny t;
  t.dim = 3;
  t.q = {0.5, -1.0, 2.0};
  t.k = {1.5, 0.25, -0.75};
  t.v = {3.0, -4.0, 0.125};
  AttentionParams p = t.params();
  p.softmax_scale = 0.5f;
  const auto r = reference::reference_forward(p);
  EXPECT_EQ(r.out, t.v);
  EXPECT_DOUBLE_EQ(r.lse[0], 0.5 * (0.75 - 0.25 - 1.5));  // log exp(s) = s
}

TEST(Reference, TwoKeysWithKnownScores) {
  Tiny t;
  t.sk = 2;
  t.q = {1.0, 0.0};
  t.k = {1.0, 0.0, 0.0, 1.0};  // scores (1, 0)
  t.v = {2.0, 0.0, 0.0, 4.0};
  const auto r = reference::reference_forward(t.params());
  const double p0 = std::exp(1.0) / (std::exp(1.0) + 1.0);
  EXPECT_NEAR(r.out[0], 2.0 * p0, 1e-15);
  EXPECT_NEAR(r.out[1], 4.0 * (1.0 - p0), 1e-15);
  EXPECT_NEAR(r.lse[0], std::log(std::exp(1.0) + 1.0), 1e-15);
}

TEST(Reference, FullyMaskedRowsGiveZeroAndMinusInfinity) {
  // Sq = 5, Sk = 2, bottom-right causal: rows 0..2 keep nothing.
  Tiny t;
  t.sq = 5;
  t.sk = 2;
  t.heads = 2;
  auto rng = test_rng();
  t.randomize(rng);
  AttentionParams p = t.params();
  p.mask = {MaskAnchor::bottom_right, -1, 0};
  const auto r = reference::reference_forward(p);
  for (std::int64_t h = 0; h < 2; ++h)
    for (std::int64_t i = 0; i < 5; ++i) {
      if (i < 3) {
        EXPECT_EQ(r.lse[h * r.rows + i], -kInf);
        EXPECT_EQ(r.out[(i * 2 + h) * 2], 0.0);
        EXPECT_EQ(r.out[(i * 2 + h) * 2 + 1], 0.0);
      } else {
        EXPECT_TRUE(std::isfinite(r.lse[h * r.rows + i]));
      }
    }
  // Row 3 sees key 0 only: its output is v[0].
  EXPECT_EQ(r.out[(3 * 2 + 0) * 2], t.v[0]);
  expect_matches_direct(p);
}

TEST(Reference, MasksMatchDirect) {
  auto rng = test_rng();
  for (MaskAnchor anchor : {MaskAnchor::top_left, MaskAnchor::bottom_right})
    for (auto [left, right] : {std::pair{-1, 0}, {2, 1}, {0, 0}, {-1, 3}, {4, -1}}) {
      for (auto [sq, sk] : {std::pair{4, 7}, {7, 4}}) {
        Tiny t;
        t.sq = sq;
        t.sk = sk;
        t.dim = 5;
        t.randomize(rng);
        AttentionParams p = t.params();
        p.softmax_scale = 0.7f;
        p.mask = {anchor, left, right};
        SCOPED_TRACE(::testing::Message() << (anchor == MaskAnchor::top_left ? "TL" : "BR") << "(" << left << ", "
                                        << right << ") " << sq << "x" << sk);
        expect_matches_direct(p);
      }
    }
}

TEST(Reference, SoftcapFormula) {
  auto rng = test_rng();
  Tiny t;
  t.batch = 2;
  t.sq = 3;
  t.sk = 6;
  t.heads = 2;
  t.dim = 4;
  t.randomize(rng);
  for (double& x : t.q) x *= 4;  // scores well past the cap
  AttentionParams p = t.params();
  p.softcap = 1.5f;
  p.softmax_scale = 0.8f;
  expect_matches_direct(p);
  // One key: the score itself is softcap * tanh(scale * q.k / softcap).
  Tiny one;
  one.q = {3.0, 1.0};
  one.k = {2.0, -0.5};
  one.v = {1.0, 1.0};
  AttentionParams p1 = one.params();
  p1.softcap = 2.0f;
  EXPECT_NEAR(reference::reference_forward(p1).lse[0], 2.0 * std::tanh(5.5 / 2.0), 1e-15);
}

TEST(Reference, AlibiFormula) {
  auto rng = test_rng();
  Tiny t;
  t.batch = 2;
  t.sq = 3;
  t.sk = 5;
  t.heads = 4;
  t.heads_kv = 2;
  t.dim = 3;
  t.randomize(rng);
  const std::vector<float> per_head{0.5f, 0.25f, 0.125f, 1.0f};
  const std::vector<float> per_batch_head{0.5f, 0.25f, 0.125f, 1.0f, 2.0f, 0.0625f, 0.75f, 0.3f};
  AttentionParams p = t.params();
  p.alibi_slopes = per_head.data();
  expect_matches_direct(p);
  p.alibi_slopes = per_batch_head.data();
  p.alibi_batch_stride = 4;
  expect_matches_direct(p);
  p.softcap = 0.9f;  // softcap first, then alibi
  p.mask = {MaskAnchor::bottom_right, 1, 1};
  expect_matches_direct(p);
  // Hand check: q . k = 0, so row i's scores are -slope * |i + 2 - j|.
  Tiny zero;
  zero.sq = 1;
  zero.sk = 3;
  zero.dim = 1;
  zero.q = {0.0};
  zero.k = {1.0, 1.0, 1.0};
  zero.v = {1.0, 2.0, 4.0};
  AttentionParams pz = zero.params();
  const float slope = 1.0f;
  pz.alibi_slopes = &slope;
  const double e0 = std::exp(-2.0), e1 = std::exp(-1.0), e2 = 1.0, sum = e0 + e1 + e2;
  const auto r = reference::reference_forward(pz);
  EXPECT_NEAR(r.out[0], (e0 * 1 + e1 * 2 + e2 * 4) / sum, 1e-15);
  EXPECT_NEAR(r.lse[0], std::log(sum), 1e-15);
}

TEST(Reference, GroupedQueryHeadsReadTheirKvHead) {
  auto rng = test_rng();
  Tiny t;
  t.sq = 2;
  t.sk = 3;
  t.heads = 6;
  t.heads_kv = 2;
  t.randomize(rng);
  expect_matches_direct(t.params());  // direct maps h -> h / 3
}

TEST(Reference, VarlenExtents) {
  // Sequences (q, k): (2, 3), (0, 1), (3, 0), (1, 4); seqused_k trims the last to 2.
  auto rng = test_rng();
  Tiny t;
  t.sq = 6;  // total q rows
  t.sk = 8;  // total k rows
  t.heads = 2;
  t.dim = 3;
  t.randomize(rng);
  const std::vector<std::int32_t> cu_q{0, 2, 2, 5, 6}, cu_k{0, 3, 4, 4, 8}, used{3, 1, 0, 2};
  for (bool with_used : {false, true}) {
    for (bool causal : {false, true}) {
      AttentionParams p = t.params();
      p.batch = 4;
      p.seqlen_q = 3;
      p.seqlen_k = 4;
      p.q_stride.batch = p.k_stride.batch = p.v_stride.batch = 0;
      p.cu_seqlens_q = cu_q.data();
      p.cu_seqlens_k = cu_k.data();
      if (with_used) p.seqused_k = used.data();
      if (causal) p.mask = {MaskAnchor::bottom_right, -1, 0};
      SCOPED_TRACE(::testing::Message() << (with_used ? "seqused_k " : "") << (causal ? "causal" : ""));
      const auto r = reference::reference_forward(p);
      ASSERT_EQ(r.rows, 6);
      for (std::int64_t b = 0; b < 4; ++b) {
        const std::int64_t sq = cu_q[b + 1] - cu_q[b], sk = with_used ? used[b] : cu_k[b + 1] - cu_k[b];
        for (std::int64_t h = 0; h < 2; ++h) {
          const Direct want = direct(p, 0, h, cu_q[b], cu_k[b], sq, sk);
          for (std::int64_t i = 0; i < sq; ++i) {
            const std::int64_t row = cu_q[b] + i;
            EXPECT_TRUE(near(r.lse[h * r.rows + row], want.lse[i], 1e-12)) << "b=" << b << " h=" << h << " i=" << i;
            for (std::int64_t x = 0; x < 3; ++x)
              EXPECT_NEAR(r.out[(row * 2 + h) * 3 + x], want.out[i * 3 + x], 1e-12);
          }
        }
      }
      // Sequence 2 has no keys: out 0, lse -inf.
      for (std::int64_t row = 2; row < 5; ++row) EXPECT_EQ(r.lse[row], -kInf);
    }
  }
}

TEST(Reference, DropoutScalesKeptWeightsAndMarksDropped) {
  auto rng = test_rng();
  Tiny t;
  t.sq = 4;
  t.sk = 9;
  t.heads = 2;
  t.randomize(rng);
  AttentionParams p = t.params();
  std::vector<float> probs(2 * 4 * 9, -1.0f);
  p.probs = probs.data();
  p.dropout_p = 0.4f;
  p.seed = 42;
  const double keep_scale = 1.0 / (1.0 - static_cast<double>(p.dropout_p));
  const auto r = reference::reference_forward(p);
  AttentionParams no_drop = p;
  no_drop.dropout_p = 0;
  const auto full = reference::reference_forward(no_drop);
  std::int64_t dropped = 0;
  for (std::int64_t h = 0; h < 2; ++h) {
    const core::DropoutStream s = core::make_dropout_stream(42, 0, 0.4f, 0, h, 2);
    for (std::int64_t i = 0; i < 4; ++i) {
      std::vector<double> want(2, 0.0);
      for (std::int64_t j = 0; j < 9; ++j) {
        const double prob = full.probs[(h * 4 + i) * 9 + j];
        const bool drop = s.dropped(i, j);
        dropped += drop;
        EXPECT_EQ(r.probs[(h * 4 + i) * 9 + j], drop ? -prob : prob);
        if (!drop)
          for (int x = 0; x < 2; ++x) want[x] += prob * keep_scale * t.v[(j * 1 + 0) * 2 + x];
      }
      for (int x = 0; x < 2; ++x) EXPECT_NEAR(r.out[(i * 2 + h) * 2 + x], want[x], 1e-12);
      EXPECT_EQ(r.lse[h * r.rows + i], full.lse[h * r.rows + i]);  // lse is before dropout
    }
  }
  EXPECT_GT(dropped, 0);
}

TEST(Reference, LowerPrecisionEmulation) {
  auto rng = test_rng();
  Tiny t;
  t.sq = 16;
  t.sk = 40;
  t.heads = 2;
  t.dim = 16;
  t.randomize(rng);
  const AttentionParams p = t.params();
  const auto exact = reference::reference_forward(p, DType::f64);
  auto max_err = [&](DType precision) {
    const auto r = reference::reference_forward(p, precision);
    double err = 0;
    for (std::size_t i = 0; i < r.out.size(); ++i) err = std::max(err, std::abs(r.out[i] - exact.out[i]));
    return err;
  };
  const double f32 = max_err(DType::f32), f16 = max_err(DType::f16), bf16 = max_err(DType::bf16);
  EXPECT_GT(f32, 0.0);
  EXPECT_LT(f32, 1e-5);
  EXPECT_LT(f32, f16);
  EXPECT_LT(f16, bf16);
  EXPECT_LT(bf16, 0.05);
}

TEST(Reference, BackendWritesOutputsWithTheEmptyRowConvention) {
  auto rng = test_rng();
  Tiny t;
  t.sq = 5;
  t.sk = 2;
  t.heads = 2;
  t.randomize(rng);
  AttentionParams p = t.params();
  p.mask = {MaskAnchor::bottom_right, -1, 0};
  std::vector<double> out(5 * 2 * 2, std::nan(""));
  std::vector<float> lse(2 * 5, std::nanf(""));
  p.out = out.data();
  p.out_stride = {20, 4, 2};
  p.lse = lse.data();
  p.lse_batch_stride = 10;
  p.lse_head_stride = 5;
  p.lse_of_empty_row = std::numeric_limits<float>::infinity();
  reference::reference_backend_forward(p);
  const auto r = reference::reference_forward(p);
  for (std::int64_t i = 0; i < 20; ++i) EXPECT_EQ(out[i], r.out[i]);
  for (std::int64_t h = 0; h < 2; ++h)
    for (std::int64_t i = 0; i < 5; ++i)
      EXPECT_EQ(lse[h * 5 + i], i < 3 ? std::numeric_limits<float>::infinity()
                                      : static_cast<float>(r.lse[h * r.rows + i]));
}

}  // namespace
}  // namespace flashattn::testing
