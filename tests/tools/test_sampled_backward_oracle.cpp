// The bench's sampled gradient oracle (tools/sampled_backward_oracle.*): its
// gradients are bit-identical to reference_backward's in fp64 and in the
// input precision, its verdict passes run_backward and fails wrong or
// unwritten gradients, and its sample stays within the cost budget.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "flashattn/flashattn.hpp"
#include "frontends/flash_attn_params.hpp"
#include "reference/reference_backward.hpp"
#include "sampled_backward_oracle.hpp"
#include "sampled_cases.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

BshdStrides bshd_of(const TensorView& t) { return {t.stride[0], t.stride[1], t.stride[2]}; }

// A forward problem run once (out, lse), random dout and NaN-poisoned gradients.
struct BackwardCase {
  FixedProblem fwd;
  HostTensor dout, dq, dk, dv;
  AttentionParams params;

  BackwardCase(const SampledCase& c, std::mt19937_64& rng) : fwd(make_sampled_problem(c, rng)) {
    flash_attn(fwd.q, fwd.k, fwd.v, fwd.outputs(), c.options);
    dout = HostTensor(c.dtype, {fwd.batch, fwd.seqlen_q, fwd.heads, fwd.head_dim});
    dout.randomize(rng);
    dq = HostTensor(c.dtype, {fwd.batch, fwd.seqlen_q, fwd.heads, fwd.head_dim}, NAN);
    dk = HostTensor(c.dtype, {fwd.batch, fwd.seqlen_k, fwd.heads_kv, fwd.head_dim}, NAN);
    dv = HostTensor(c.dtype, {fwd.batch, fwd.seqlen_k, fwd.heads_kv, fwd.head_dim}, NAN);
    params = frontend::flash_attn_params("t", fwd.q, fwd.k, fwd.v, fwd.outputs(), c.options);
    params.dout = dout.view().data, params.dout_stride = bshd_of(dout);
    params.dq = dq.view().data, params.dq_stride = bshd_of(dq);
    params.dk = dk.view().data, params.dk_stride = bshd_of(dk);
    params.dv = dv.view().data, params.dv_stride = bshd_of(dv);
  }
};

// Every query row and every key of the problem.
tools::BackwardSample everything(const AttentionParams& p) {
  tools::BackwardSample s;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t h = 0; h < p.heads_q; ++h)
      for (std::int64_t i = 0; i < p.seqlen_q; ++i) s.dq_rows.push_back({b, h, i});
    for (std::int64_t hk = 0; hk < p.heads_kv; ++hk)
      for (std::int64_t j = 0; j < p.seqlen_k; ++j) s.keys.push_back({b, hk, j});
  }
  return s;
}

TEST(SampledBackwardOracle, GradientsAreBitIdenticalToReferenceBackward) {
  const std::vector<float> alibi = alibi_slopes(4);
  for (const SampledCase& c : sampled_cases(TensorView::contiguous(alibi.data(), DType::f32, {4}))) {
    SCOPED_TRACE(c.name);
    auto rng = test_rng();
    const BackwardCase bc(c, rng);
    const AttentionParams& p = bc.params;
    const tools::BackwardSample sample = everything(p);
    for (DType precision : {DType::f64, c.dtype}) {
      SCOPED_TRACE(std::string(dtype_name(precision)));
      const reference::ReferenceGrads ref = reference::reference_backward(p, precision);
      const tools::SampledGrads got = tools::sampled_gradients(p, precision, sample);
      for (std::size_t r = 0; r < sample.dq_rows.size(); ++r) {
        const tools::RowIndex& at = sample.dq_rows[r];
        const std::int64_t ref_row = (at.batch * p.seqlen_q + at.row) * p.heads_q + at.head;
        for (std::int64_t d = 0; d < p.head_dim; ++d) {
          ASSERT_EQ(got.dq[r * p.head_dim + d], ref.dq[ref_row * p.head_dim + d]) << "dq row " << r << " " << d;
        }
      }
      for (std::size_t s = 0; s < sample.keys.size(); ++s) {
        const tools::KeyIndex& at = sample.keys[s];
        const std::int64_t ref_row = (at.batch * p.seqlen_k + at.key) * p.heads_kv + at.head_kv;
        for (std::int64_t d = 0; d < p.head_dim; ++d) {
          ASSERT_EQ(got.dk[s * p.head_dim + d], ref.dk[ref_row * p.head_dim + d]) << "dk key " << s << " " << d;
          ASSERT_EQ(got.dv[s * p.head_dim + d], ref.dv[ref_row * p.head_dim + d]) << "dv key " << s << " " << d;
        }
      }
    }
  }
}

TEST(SampledBackwardOracle, PassesTheKernelAndFailsWrongGradients) {
  const std::vector<float> alibi = alibi_slopes(4);
  for (const SampledCase& c : sampled_cases(TensorView::contiguous(alibi.data(), DType::f32, {4}))) {
    SCOPED_TRACE(c.name);
    auto rng = test_rng();
    BackwardCase bc(c, rng);
    const AttentionParams& p = bc.params;
    const tools::BackwardSample sample = tools::sample_backward(p, 8, 2, 4, 1);
    ASSERT_EQ(sample.dq_rows.size(), 8u);
    ASSERT_EQ(sample.keys.size(), 8u);  // two (batch, kv head) pairs of four keys
    run_backward(p);
    const tools::BackwardVerdict good = tools::check_backward(p, sample);
    EXPECT_TRUE(good.ok) << good.failure << ": dq " << good.dq.err << " / " << good.dq.bound << ", dk "
                         << good.dk.err << " / " << good.dk.bound << ", dv " << good.dv.err << " / " << good.dv.bound;
    EXPECT_EQ(good.rows_checked, 8);
    EXPECT_EQ(good.keys_checked, 8);

    // The last query row and the last key of the problem are always sampled.
    for (HostTensor* grad : {&bc.dq, &bc.dk, &bc.dv}) {
      const std::int64_t last = grad->numel() - 1;
      const double saved = grad->get(last);
      grad->set(last, saved + 8 * std::max({good.dq.bound, good.dk.bound, good.dv.bound}) + 0.05);
      EXPECT_FALSE(tools::check_backward(p, sample).ok);
      grad->set(last, saved);
    }
    // An unwritten (NaN) element outside the sample.
    const std::int64_t middle = bc.dk.numel() / 2 + 1;
    const double saved = bc.dk.get(middle);
    bc.dk.set(middle, std::numeric_limits<double>::quiet_NaN());
    const tools::BackwardVerdict unwritten = tools::check_backward(p, sample);
    EXPECT_FALSE(unwritten.ok);
    EXPECT_NE(unwritten.failure.find("NaN"), std::string::npos) << unwritten.failure;
    bc.dk.set(middle, saved);
    EXPECT_TRUE(tools::check_backward(p, sample).ok);
  }
}

// Sizes only: sample_backward reads no tensor.
AttentionParams sized(std::int64_t seqlen, std::int64_t heads, bool causal) {
  AttentionParams p;
  p.batch = 1, p.heads_q = p.heads_kv = heads, p.seqlen_q = p.seqlen_k = seqlen, p.head_dim = p.head_dim_v = 128;
  if (causal) p.mask.right = 0;
  return p;
}

TEST(SampledBackwardOracle, SampleStaysWithinTheCostBudget) {
  // The default bench problem checks two (batch, kv head) pairs...
  const tools::BackwardSample two = tools::sample_backward(sized(2048, 16, false), 16, 2, 8, 3);
  EXPECT_EQ(two.keys.size(), 16u);
  EXPECT_LE(2 * tools::recompute_macs(sized(2048, 16, false), two), tools::kMaxRecomputeMacs);
  // ... a longer one fewer, and a far longer one none (its dq rows still).
  const tools::BackwardSample one = tools::sample_backward(sized(4096, 16, false), 16, 2, 8, 3);
  EXPECT_EQ(one.keys.size(), 8u);
  EXPECT_EQ(tools::sample_backward(sized(4096, 16, true), 16, 2, 8, 3).keys.size(), 16u);
  EXPECT_TRUE(tools::sample_backward(sized(8192, 16, true), 16, 2, 8, 3).keys.empty());
  const tools::BackwardSample none = tools::sample_backward(sized(65536, 4, true), 16, 2, 8, 3);
  EXPECT_TRUE(none.keys.empty());
  EXPECT_EQ(none.dq_rows.size(), 16u);
}

}  // namespace
}  // namespace flashattn::testing
