// The fp64 reference backward (src/reference/reference_backward.hpp) against
// central finite differences of the fp64 reference forward, on tiny problems
// covering every forward feature.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "reference/reference_backward.hpp"
#include "reference/reference_forward.hpp"
#include "support/tiny_problem.hpp"

namespace flashattn::testing {
namespace {

// A tiny problem with dout; loss = sum(out * dout) by the fp64 forward.
struct GradCase {
  Tiny t;
  std::vector<double> dout;      // like out: (rows_q, heads, dim)
  std::vector<float> slopes;     // (heads,) when alibi
  std::vector<std::int32_t> cu_q, cu_k, used_k;  // varlen: t.batch = 1 holds every row
  AttentionParams extra;         // mask, softcap, dropout, scale to copy into params()

  AttentionParams params() const {
    AttentionParams p = t.params();
    p.mask = extra.mask;
    p.softcap = extra.softcap;
    p.softmax_scale = extra.softmax_scale;
    p.dropout_p = extra.dropout_p;
    p.seed = extra.seed;
    p.offset = extra.offset;
    if (!slopes.empty()) p.alibi_slopes = slopes.data();
    if (!cu_q.empty()) {
      p.batch = static_cast<std::int64_t>(cu_q.size()) - 1;
      p.cu_seqlens_q = cu_q.data();
      p.cu_seqlens_k = cu_k.data();
      p.q_stride.batch = p.k_stride.batch = p.v_stride.batch = 0;
      if (!used_k.empty()) p.seqused_k = used_k.data();
    }
    p.dout = dout.data();
    p.dout_stride = {p.q_stride.batch, p.q_stride.row, p.q_stride.head};
    return p;
  }

  double loss() const {
    const reference::ReferenceOutput r = reference::reference_forward(params(), DType::f64);
    double sum = 0;
    for (std::size_t n = 0; n < r.out.size(); ++n) sum += r.out[n] * dout[n];
    return sum;
  }
};

void prepare(GradCase& g, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  g.t.randomize(rng);
  std::normal_distribution<double> n(0, 1);
  g.dout.resize(g.t.q.size());
  for (double& x : g.dout) x = n(rng);
  g.extra.softmax_scale = 0.7f;
}

// Central differences of every q, k and v element against the analytic gradient.
void expect_matches_finite_differences(GradCase& g) {
  const reference::ReferenceGrads grads = reference::reference_backward(g.params(), DType::f64);
  const double h = 1e-5;
  struct Input {
    std::vector<double>* values;
    const std::vector<double>* grad;
    const char* name;
  };
  for (const Input& in : {Input{&g.t.q, &grads.dq, "dq"}, Input{&g.t.k, &grads.dk, "dk"}, Input{&g.t.v, &grads.dv, "dv"}}) {
    ASSERT_EQ(in.values->size(), in.grad->size()) << in.name;
    for (std::size_t n = 0; n < in.values->size(); ++n) {
      double& x = (*in.values)[n];
      const double saved = x;
      x = saved + h;
      const double up = g.loss();
      x = saved - h;
      const double down = g.loss();
      x = saved;
      const double numeric = (up - down) / (2 * h);
      EXPECT_NEAR((*in.grad)[n], numeric, 1e-7 * (1 + std::abs(numeric))) << in.name << "[" << n << "]";
    }
  }
}

TEST(ReferenceBackward, PlainGqaMatchesFiniteDifferences) {
  GradCase g;
  g.t.batch = 2, g.t.sq = 3, g.t.sk = 5, g.t.heads = 4, g.t.heads_kv = 2, g.t.dim = 3;
  prepare(g, 1);
  expect_matches_finite_differences(g);
}

TEST(ReferenceBackward, CausalWithEmptyRowsMatchesFiniteDifferences) {
  GradCase g;
  g.t.sq = 5, g.t.sk = 3, g.t.heads = 2, g.t.heads_kv = 1, g.t.dim = 2;
  prepare(g, 2);
  g.extra.mask.right = 0;  // bottom-right causal: rows 0 and 1 keep nothing
  expect_matches_finite_differences(g);
  const reference::ReferenceGrads grads = reference::reference_backward(g.params());
  for (int c = 0; c < 2 * 2 * 2; ++c) EXPECT_EQ(grads.dq[c], 0.0) << "empty rows have zero dq";
}

TEST(ReferenceBackward, WindowAlibiSoftcapMatchesFiniteDifferences) {
  GradCase g;
  g.t.sq = 4, g.t.sk = 6, g.t.heads = 2, g.t.heads_kv = 2, g.t.dim = 3;
  prepare(g, 3);
  g.extra.mask = {MaskAnchor::top_left, 1, 2};
  g.extra.softcap = 1.5f;
  g.slopes = {0.5f, 0.25f};
  expect_matches_finite_differences(g);
}

TEST(ReferenceBackward, DropoutMatchesFiniteDifferences) {
  GradCase g;
  g.t.sq = 4, g.t.sk = 7, g.t.heads = 2, g.t.heads_kv = 1, g.t.dim = 2;
  prepare(g, 4);
  g.extra.dropout_p = 0.3f;
  g.extra.seed = 1234;
  g.extra.offset = 8;
  expect_matches_finite_differences(g);
}

TEST(ReferenceBackward, VarlenSequsedMatchesFiniteDifferences) {
  GradCase g;
  g.t.sq = 2 + 3, g.t.sk = 4 + 3, g.t.heads = 2, g.t.heads_kv = 1, g.t.dim = 2;  // total rows
  prepare(g, 5);
  g.cu_q = {0, 2, 5};
  g.cu_k = {0, 4, 7};
  g.used_k = {3, 3};  // key 3 of sequence 0 is unused: its dk, dv are 0
  g.extra.mask.right = 0;
  expect_matches_finite_differences(g);
  const reference::ReferenceGrads grads = reference::reference_backward(g.params());
  for (int c = 0; c < 2; ++c) EXPECT_EQ(grads.dk[3 * 2 + c], 0.0);
}

TEST(ReferenceBackward, InputPrecisionVersionIsCloseToFp64) {
  GradCase g;
  g.t.sq = 5, g.t.sk = 9, g.t.heads = 2, g.t.heads_kv = 1, g.t.dim = 4;
  prepare(g, 6);
  const reference::ReferenceGrads exact = reference::reference_backward(g.params(), DType::f64);
  const reference::ReferenceGrads f32 = reference::reference_backward(g.params(), DType::f32);
  double max_err = 0;
  for (std::size_t n = 0; n < exact.dq.size(); ++n) max_err = std::max(max_err, std::abs(exact.dq[n] - f32.dq[n]));
  for (std::size_t n = 0; n < exact.dk.size(); ++n) max_err = std::max(max_err, std::abs(exact.dk[n] - f32.dk[n]));
  for (std::size_t n = 0; n < exact.dv.size(); ++n) max_err = std::max(max_err, std::abs(exact.dv[n] - f32.dv[n]));
  EXPECT_GT(max_err, 0.0) << "the f32 version must actually round";
  EXPECT_LT(max_err, 1e-5);
}

}  // namespace
}  // namespace flashattn::testing
