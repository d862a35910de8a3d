// The mask predicate (src/core/mask.hpp): SEMANTICS.md §0's worked examples
// exactly, the range helpers against brute force, and the public API's
// attention probabilities against the predicate.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/mask.hpp"
#include "flashattn/flashattn.hpp"
#include "support/attention_problem.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

using core::KeyRange;

constexpr MaskAnchor kTL = MaskAnchor::top_left;
constexpr MaskAnchor kBR = MaskAnchor::bottom_right;

// The kept pattern as rows of '0'/'1', as SEMANTICS.md draws it.
std::vector<std::string> pattern(const MaskSpec& mask, std::int64_t sq, std::int64_t sk) {
  std::vector<std::string> rows;
  for (std::int64_t i = 0; i < sq; ++i) {
    std::string row;
    for (std::int64_t j = 0; j < sk; ++j) row += core::is_kept(mask, i, j, sq, sk) ? '1' : '0';
    rows.push_back(row);
  }
  return rows;
}

using Rows = std::vector<std::string>;

TEST(MaskWorkedExamples, Sq3Sk5) {
  EXPECT_EQ(pattern({kTL, -1, 0}, 3, 5), (Rows{"10000", "11000", "11100"}));  // TL-causal
  EXPECT_EQ(pattern({kBR, -1, 0}, 3, 5), (Rows{"11100", "11110", "11111"}));  // BR-causal
  EXPECT_EQ(pattern({kTL, 1, 1}, 3, 5), (Rows{"11000", "11100", "01110"}));   // TL-band(1, 1)
  EXPECT_EQ(pattern({kBR, 1, 0}, 3, 5), (Rows{"01100", "00110", "00011"}));   // BR-band(1, 0)
}

TEST(MaskWorkedExamples, BottomRightCausalWithEmptyRows) {
  const MaskSpec causal{kBR, -1, 0};
  EXPECT_EQ(pattern(causal, 5, 2), (Rows{"00", "00", "00", "10", "11"}));
  for (std::int64_t i = 0; i < 3; ++i) EXPECT_TRUE(core::kept_keys(causal, i, 5, 2).empty()) << "row " << i;
  const KeyRange rows = core::nonempty_rows(causal, 0, 5, 5, 2);
  EXPECT_EQ(rows.begin, 3);
  EXPECT_EQ(rows.end, 5);
}

TEST(MaskWorkedExamples, BottomRightCausalShortQuery) {
  EXPECT_EQ(pattern({kBR, -1, 0}, 2, 5), (Rows{"11110", "11111"}));
}

// SEMANTICS.md §0 says "Sq=3, Sk=5, window (1, 2): query 0 sees keys [0, 3],
// query 1 [1, 4], query 2 [2, 4]". Those ranges are window_size (left=2,
// right=1): by the table's own BR-band formula (and flash-attn's docstring,
// keys [i + d - left, i + d + right]) window (1, 2) keeps [1, 4], [2, 4],
// [3, 4]. Both are asserted; the example's labels are the doc's slip.
void expect_ranges(const MaskSpec& mask, std::int64_t sq, std::int64_t sk,
                   const std::vector<std::pair<std::int64_t, std::int64_t>>& inclusive) {
  for (std::int64_t i = 0; i < sq; ++i) {
    const KeyRange r = core::kept_keys(mask, i, sq, sk);
    EXPECT_EQ(r.begin, inclusive[i].first) << "row " << i;
    EXPECT_EQ(r.end - 1, inclusive[i].second) << "row " << i;
  }
}

TEST(MaskWorkedExamples, WindowRanges) {
  expect_ranges({kBR, 2, 1}, 3, 5, {{0, 3}, {1, 4}, {2, 4}});  // the ranges of the worked example
  expect_ranges({kBR, 1, 2}, 3, 5, {{1, 4}, {2, 4}, {3, 4}});  // window (1, 2) by the formula
}

TEST(MaskWorkedExamples, AnchorsAgreeWhenSquare) {
  for (std::int64_t left : {-1, 0, 2})
    for (std::int64_t right : {-1, 0, 3})
      EXPECT_EQ(pattern({kTL, left, right}, 7, 7), pattern({kBR, left, right}, 7, 7)) << left << " " << right;
}

// ---------------------------------------------------------------------------
// Range helpers against brute force on random small masks.

struct RandomMask {
  MaskSpec mask;
  std::int64_t sq, sk;
};

RandomMask random_mask(std::mt19937_64& rng) {
  std::uniform_int_distribution<int> bound(-1, 6), size(1, 12), anchor(0, 1);
  RandomMask m;
  m.mask = {anchor(rng) ? kBR : kTL, bound(rng), bound(rng)};
  m.sq = size(rng);
  m.sk = size(rng);
  return m;
}

std::string describe(const RandomMask& m) {
  return std::string(m.mask.anchor == kTL ? "TL" : "BR") + "(" + std::to_string(m.mask.left) + ", " +
         std::to_string(m.mask.right) + ") sq=" + std::to_string(m.sq) + " sk=" + std::to_string(m.sk);
}

TEST(MaskProperties, KeptKeysMatchesIsKept) {
  auto rng = test_rng();
  for (int n = 0; n < 500; ++n) {
    const RandomMask m = random_mask(rng);
    SCOPED_TRACE(describe(m));
    for (std::int64_t i = 0; i < m.sq; ++i) {
      const KeyRange r = core::kept_keys(m.mask, i, m.sq, m.sk);
      EXPECT_GE(r.begin, 0);
      if (!r.empty()) EXPECT_LE(r.end, m.sk);
      for (std::int64_t j = 0; j < m.sk; ++j) {
        const std::int64_t c = m.mask.anchor == kBR ? i + m.sk - m.sq : i;
        const bool want = (m.mask.left < 0 || j >= c - m.mask.left) && (m.mask.right < 0 || j <= c + m.mask.right);
        ASSERT_EQ(core::is_kept(m.mask, i, j, m.sq, m.sk), want) << "i=" << i << " j=" << j;
      }
    }
  }
}

TEST(MaskProperties, KeptKeysOfRowsIsTheUnionOfRows) {
  auto rng = test_rng();
  for (int n = 0; n < 500; ++n) {
    const RandomMask m = random_mask(rng);
    for (std::int64_t rb = 0; rb < m.sq; ++rb) {
      for (std::int64_t re = rb + 1; re <= m.sq; ++re) {
        std::int64_t lo = m.sk, hi = -1, count = 0;
        for (std::int64_t j = 0; j < m.sk; ++j) {
          bool any = false;
          for (std::int64_t i = rb; i < re; ++i) any = any || core::is_kept(m.mask, i, j, m.sq, m.sk);
          if (any) {
            lo = std::min(lo, j);
            hi = std::max(hi, j);
            ++count;
          }
        }
        const KeyRange r = core::kept_keys_of_rows(m.mask, rb, re, m.sq, m.sk);
        SCOPED_TRACE(describe(m) + " rows [" + std::to_string(rb) + ", " + std::to_string(re) + ")");
        ASSERT_EQ(r.empty(), count == 0);
        if (count == 0) continue;
        ASSERT_EQ(count, hi - lo + 1) << "the union is not contiguous";
        ASSERT_EQ(r.begin, lo);
        ASSERT_EQ(r.end, hi + 1);
      }
    }
  }
}

TEST(MaskProperties, NonemptyRowsMatchesBruteForce) {
  auto rng = test_rng();
  for (int n = 0; n < 500; ++n) {
    const RandomMask m = random_mask(rng);
    for (std::int64_t rb = 0; rb < m.sq; ++rb) {
      for (std::int64_t re = rb; re <= m.sq; ++re) {
        std::int64_t lo = re, hi = rb - 1, count = 0;
        for (std::int64_t i = rb; i < re; ++i) {
          if (core::kept_keys(m.mask, i, m.sq, m.sk).empty()) continue;
          lo = std::min(lo, i);
          hi = std::max(hi, i);
          ++count;
        }
        const KeyRange r = core::nonempty_rows(m.mask, rb, re, m.sq, m.sk);
        SCOPED_TRACE(describe(m) + " rows [" + std::to_string(rb) + ", " + std::to_string(re) + ")");
        ASSERT_EQ(r.empty(), count == 0);
        if (count == 0) continue;
        ASSERT_EQ(count, hi - lo + 1) << "non-empty rows are not contiguous";
        ASSERT_EQ(r.begin, lo);
        ASSERT_EQ(r.end, hi + 1);
      }
    }
  }
}

TEST(MaskProperties, NonemptyRowsWithNoKeys) {
  const KeyRange r = core::nonempty_rows({kBR, -1, -1}, 0, 4, 4, 0);
  EXPECT_TRUE(r.empty());
  EXPECT_TRUE(core::kept_keys_of_rows({kBR, -1, -1}, 0, 4, 4, 0).empty());
}

TEST(MaskProperties, TileFullyKeptMatchesBruteForce) {
  auto rng = test_rng();
  for (int n = 0; n < 300; ++n) {
    const RandomMask m = random_mask(rng);
    for (std::int64_t rb = 0; rb < m.sq; ++rb)
      for (std::int64_t re = rb + 1; re <= m.sq; ++re)
        for (std::int64_t kb = 0; kb < m.sk; ++kb)
          for (std::int64_t ke = kb + 1; ke <= m.sk; ++ke) {
            bool all = true;
            for (std::int64_t i = rb; i < re && all; ++i)
              for (std::int64_t j = kb; j < ke && all; ++j) all = core::is_kept(m.mask, i, j, m.sq, m.sk);
            ASSERT_EQ(core::tile_fully_kept(m.mask, rb, re, kb, ke, m.sq, m.sk), all)
                << describe(m) << " rows [" << rb << ", " << re << ") keys [" << kb << ", " << ke << ")";
          }
  }
}

// ---------------------------------------------------------------------------
// Through the public API: attn_probs is nonzero exactly where the mask keeps
// (i, j); rows with no kept key give out 0 and lse +inf.

struct ApiMaskCase {
  std::int64_t sq, sk;
  bool causal;
  WindowSize window;
};

TEST(MaskThroughApi, ProbsNonzeroExactlyWhereKept) {
  const ApiMaskCase cases[] = {
      {3, 5, true, {}},       {5, 2, true, {}},        {2, 5, true, {}},     {37, 53, true, {}},
      {53, 37, true, {}},     {3, 5, false, {1, 2}},   {3, 5, false, {1, 0}}, {40, 29, false, {3, 5}},
      {29, 140, false, {7, -1}}, {140, 29, false, {-1, 4}}, {33, 33, false, {0, 0}}, {50, 20, true, {2, -1}},
  };
  const std::vector<Isa> isas = supported_isas();
  for (const ApiMaskCase& c : cases) {
    auto rng = test_rng(c.sq * 1000 + c.sk);
    AttentionProblem pr;
    pr.batch = 2;
    pr.seqlen_q = c.sq;
    pr.seqlen_k = c.sk;
    pr.heads = 2;
    pr.heads_kv = 1;
    pr.head_dim = 24;
    pr.probs = true;
    pr.options.causal = c.causal;
    pr.options.window_size = c.window;
    pr.allocate(rng);
    const MaskSpec mask{kBR, c.window.left, c.causal ? 0 : c.window.right};
    for (Isa isa : isas) {
      SCOPED_TRACE(std::string(isa_name(isa)) + " sq=" + std::to_string(c.sq) + " sk=" + std::to_string(c.sk) +
                   (c.causal ? " causal" : "") + " window (" + std::to_string(c.window.left) + ", " +
                   std::to_string(c.window.right) + ")");
      set_isa(isa);
      pr.poison_outputs();
      pr.run();
      std::int64_t wrong = 0;
      for (std::int64_t b = 0; b < pr.batch; ++b)
        for (std::int64_t h = 0; h < pr.heads; ++h)
          for (std::int64_t i = 0; i < c.sq; ++i) {
            const bool empty = core::kept_keys(mask, i, c.sq, c.sk).empty();
            for (std::int64_t j = 0; j < c.sk; ++j) {
              const double prob = pr.attn_probs.get(((b * pr.heads + h) * c.sq + i) * c.sk + j);
              if ((prob != 0.0) != core::is_kept(mask, i, j, c.sq, c.sk) || std::isnan(prob)) ++wrong;
            }
            const double lse = pr.lse.get((b * pr.heads + h) * c.sq + i);
            if (empty) {
              EXPECT_EQ(lse, std::numeric_limits<double>::infinity()) << "b=" << b << " h=" << h << " i=" << i;
              for (std::int64_t col = 0; col < pr.head_dim; ++col)
                ASSERT_EQ(pr.out.get(((b * c.sq + i) * pr.heads + h) * pr.head_dim + col), 0.0);
            } else {
              EXPECT_TRUE(std::isfinite(lse)) << "b=" << b << " h=" << h << " i=" << i;
            }
          }
      EXPECT_EQ(wrong, 0) << "probabilities disagreeing with the mask";
    }
  }
  set_isa(isas.back());
}

}  // namespace
}  // namespace flashattn::testing
