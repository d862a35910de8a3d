// The bench's sampled-row oracle (tools/sampled_oracle.*): its rows are
// bit-identical to reference_forward's, and its verdict fails on wrong,
// unwritten or mislabelled results.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "flashattn/flashattn.hpp"
#include "frontends/flash_attn_params.hpp"
#include "reference/reference_forward.hpp"
#include "sampled_oracle.hpp"
#include "sampled_cases.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

// Exact equality, where both are -inf too.
bool same(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

TEST(SampledOracle, RowsAreBitIdenticalToReferenceForward) {
  const std::vector<float> alibi = alibi_slopes(4);
  for (const SampledCase& c : sampled_cases(TensorView::contiguous(alibi.data(), DType::f32, {4}))) {
    SCOPED_TRACE(c.name);
    auto rng = test_rng();
    FixedProblem pr = make_sampled_problem(c, rng);
    const AttentionParams p = frontend::flash_attn_params("t", pr.q, pr.k, pr.v, pr.outputs(), c.options);
    for (DType precision : {DType::f64, c.dtype}) {
      const reference::ReferenceOutput ref = reference::reference_forward(p, precision);
      for (std::int64_t b = 0; b < p.batch; ++b)
        for (std::int64_t h = 0; h < p.heads_q; ++h)
          for (std::int64_t i = 0; i < p.seqlen_q; ++i) {
            const tools::NaiveRow row = tools::naive_attention_row(p, precision, {b, h, i});
            const std::int64_t r = b * p.seqlen_q + i;
            ASSERT_TRUE(same(row.lse, ref.lse[h * ref.rows + r])) << b << " " << h << " " << i;
            for (std::int64_t d = 0; d < p.head_dim_v; ++d) {
              ASSERT_TRUE(same(row.out[d], ref.out[(r * p.heads_q + h) * p.head_dim_v + d]))
                  << b << " " << h << " " << i << " " << d;
            }
          }
    }
  }
}

TEST(SampledOracle, PassesTheKernelAndFailsWrongResults) {
  const std::vector<float> alibi = alibi_slopes(4);
  for (const SampledCase& c : sampled_cases(TensorView::contiguous(alibi.data(), DType::f32, {4}))) {
    SCOPED_TRACE(c.name);
    auto rng = test_rng();
    FixedProblem pr = make_sampled_problem(c, rng);
    const AttentionParams p = frontend::flash_attn_params("t", pr.q, pr.k, pr.v, pr.outputs(), c.options);
    const std::vector<tools::RowIndex> rows = tools::sample_rows(p, 8, 1);
    ASSERT_EQ(rows.size(), 8u);
    flash_attn(pr.q, pr.k, pr.v, pr.outputs(), c.options);
    const tools::OracleVerdict good = tools::check_rows(p, rows);
    EXPECT_TRUE(good.ok) << good.failure << ": " << good.max_abs_err << " > " << good.bound;
    EXPECT_EQ(good.rows_checked, 8);

    // The last row of the problem is always sampled: corrupt one of its outputs by a few bounds.
    const std::int64_t last = pr.out.numel() - 1;
    const double saved = pr.out.get(last);
    pr.out.set(last, saved + 8 * good.bound + 0.05);
    EXPECT_FALSE(tools::check_rows(p, rows).ok);
    pr.out.set(last, saved);

    // An unwritten (NaN) element outside the sample.
    const std::int64_t middle = (pr.batch * pr.seqlen_q / 2) * pr.heads * pr.head_dim + 1;
    const double saved_middle = pr.out.get(middle);
    pr.out.set(middle, std::numeric_limits<double>::quiet_NaN());
    EXPECT_FALSE(tools::check_rows(p, rows).ok);
    pr.out.set(middle, saved_middle);

    // A wrong lse on the first row.
    const double lse = pr.lse.get(0);
    pr.lse.set(0, std::isinf(lse) ? 0.0 : lse + 0.01);
    EXPECT_FALSE(tools::check_rows(p, rows).ok);
  }
}

}  // namespace
}  // namespace flashattn::testing
