// The CPU backward (run_backward, params level) against the fp64 reference
// backward by the oracle rule for gradients (DESIGN.md):
//   max |kernel - fp64| <= 3 * max |naive(input precision) - fp64| + floor
// per gradient tensor, on every ISA, over the forward's features. Also:
// bitwise determinism across repeats and thread counts.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "flashattn/params.hpp"
#include "flashattn/runtime.hpp"
#include "reference/reference_backward.hpp"
#include "reference/reference_forward.hpp"
#include "support/attention_problem.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

BshdStrides bshd_of(const TensorView& t) {
  if (t.rank == 3) return {0, t.stride[0], t.stride[1]};  // varlen (rows, heads, dim)
  return {t.stride[0], t.stride[1], t.stride[2]};
}

// A forward problem, run once, plus dout and the gradient tensors.
struct BackwardProblem {
  AttentionProblem fwd;
  HostTensor dout, dq, dk, dv;

  void allocate(std::mt19937_64& rng) {
    fwd.allocate(rng);
    fwd.run();  // fills out and lse, which the backward reads
    dout = HostTensor(fwd.dtype, shape_of(fwd.out));
    dout.randomize(rng, 1.0);
    dq = HostTensor(fwd.dtype, shape_of(fwd.q));
    dk = HostTensor(fwd.dtype, shape_of(fwd.k));
    dv = HostTensor(fwd.dtype, shape_of(fwd.v));
  }

  AttentionParams params() const {
    AttentionParams p = fwd.params();
    p.dout = dout.view().data;
    p.dout_stride = bshd_of(dout.view());
    p.dq = dq.view().data;
    p.dk = dk.view().data;
    p.dv = dv.view().data;
    p.dq_stride = bshd_of(dq.view());
    p.dk_stride = bshd_of(dk.view());
    p.dv_stride = bshd_of(dv.view());
    return p;
  }

  void poison() {
    for (HostTensor* t : {&dq, &dk, &dv}) t->fill(std::numeric_limits<double>::quiet_NaN());
  }

 private:
  static std::vector<std::int64_t> shape_of(const HostTensor& t) {
    return std::vector<std::int64_t>(t.view().shape.begin(), t.view().shape.begin() + t.view().rank);
  }
};

::testing::AssertionResult check_gradient(const char* name, const HostTensor& kernel, const std::vector<double>& exact,
                                          const std::vector<double>& naive, DType dtype) {
  if (static_cast<std::size_t>(kernel.numel()) != exact.size())
    return ::testing::AssertionFailure() << name << ": " << kernel.numel() << " elements, reference " << exact.size();
  double max_ref = 0, naive_err = 0, err = 0;
  std::int64_t worst = 0;
  for (std::int64_t n = 0; n < kernel.numel(); ++n) {
    const double got = kernel.get(n);
    if (std::isnan(got)) return ::testing::AssertionFailure() << name << "[" << n << "] not written (NaN)";
    max_ref = std::max(max_ref, std::abs(exact[n]));
    naive_err = std::max(naive_err, std::abs(naive[n] - exact[n]));
    if (std::abs(got - exact[n]) > err) {
      err = std::abs(got - exact[n]);
      worst = n;
    }
  }
  const double bound = 3 * naive_err + reference::oracle_floor(dtype, max_ref);
  if (err <= bound) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << name << ": max error " << err << " at " << worst << " (got "
                                       << kernel.get(worst) << ", exact " << exact[worst] << ") vs bound " << bound
                                       << " (= 3 x naive " << naive_err << " + floor)";
}

struct Case {
  std::string name;
  DType dtype;
  std::int64_t head_dim, seqlen_q, seqlen_k, heads, heads_kv;
  void (*configure)(AttentionProblem&);
};

void none(AttentionProblem&) {}

// Logits ~1e3-1e4, exact in fp32 (integer q and k, power-of-two scale; see
// test_forward_oracle.cpp): |lse| far above kRefineLse, so P comes from the
// refined row statistics, not from the fp32 lse.
void large_logits(AttentionProblem& a, float power_of_two_scale) {
  a.stddev = 30.0;
  a.integer_qk = true;
  a.options.softmax_scale = power_of_two_scale;
}

const Case kCases[] = {
    {"f32_d64_nomask", DType::f32, 64, 67, 131, 2, 2, none},
    {"f32_d128_causal_gqa", DType::f32, 128, 97, 97, 4, 2, [](AttentionProblem& a) { a.options.causal = true; }},
    {"f32_d40_sq_gt_sk_causal", DType::f32, 40, 70, 33, 2, 1, [](AttentionProblem& a) { a.options.causal = true; }},
    {"f32_d59_window_alibi", DType::f32, 59, 50, 200, 3, 3,
     [](AttentionProblem& a) {
       a.options.window_size = {17, 9};
       a.alibi = Alibi::per_head;
     }},
    {"f32_d32_softcap", DType::f32, 32, 40, 600, 2, 1, [](AttentionProblem& a) { a.options.softcap = 3.0f; }},
    {"f32_d64_dropout", DType::f32, 64, 45, 77, 2, 2,
     [](AttentionProblem& a) {
       a.options.dropout_p = 0.2f;
       a.options.seed = 77;
     }},
    {"f32_d16_varlen_seqused_strided", DType::f32, 16, 1, 1, 4, 2,
     [](AttentionProblem& a) {
       a.lens_q = {5, 0, 33, 17};
       a.lens_k = {9, 4, 20, 600};
       a.seqused_k = {9, 2, 13, 600};
       a.strided = true;
       a.options.causal = true;
     }},
    {"bf16_d128_causal", DType::bf16, 128, 64, 64, 2, 1, [](AttentionProblem& a) { a.options.causal = true; }},
    {"f16_d80_alibi_bh", DType::f16, 80, 33, 65, 2, 2, [](AttentionProblem& a) { a.alibi = Alibi::per_batch_head; }},
    {"bf16_d256_window_softcap_dropout", DType::bf16, 256, 40, 70, 2, 1,
     [](AttentionProblem& a) {
       a.options.window_size = {12, 3};
       a.options.softcap = 5.0f;
       a.options.dropout_p = 0.15f;
       a.options.seed = 3;
     }},
    {"f16_d96_sq_gt_sk_causal_gqa_dropout", DType::f16, 96, 90, 50, 4, 2,
     [](AttentionProblem& a) {
       a.options.causal = true;
       a.options.dropout_p = 0.1f;
       a.options.seed = 8;
     }},
    {"f32_d128_mqa_window_alibi_softcap", DType::f32, 128, 33, 129, 4, 1,
     [](AttentionProblem& a) {
       a.options.window_size = {-1, 20};
       a.alibi = Alibi::per_head;
       a.options.softcap = 10.0f;
     }},
    {"bf16_d72_varlen_strided_alibi", DType::bf16, 72, 1, 1, 4, 4,
     [](AttentionProblem& a) {
       a.lens_q = {31, 7, 0};
       a.lens_k = {40, 90, 12};
       a.strided = true;
       a.alibi = Alibi::per_batch_head;
     }},
    {"f16_d24_varlen_window_seqused", DType::f16, 24, 1, 1, 3, 1,
     [](AttentionProblem& a) {
       a.lens_q = {20, 45};
       a.lens_k = {60, 30};
       a.seqused_k = {0, 25};
       a.options.window_size = {8, 8};
     }},
    {"f32_d64_large_logits", DType::f32, 64, 70, 90, 2, 2, [](AttentionProblem& a) { large_logits(a, 0.125f); }},
    {"f32_d32_large_logits_causal_gqa", DType::f32, 32, 40, 300, 4, 2,
     [](AttentionProblem& a) {
       large_logits(a, 0.25f);
       a.options.causal = true;
     }},
    {"f32_d48_large_logits_dropout_window", DType::f32, 48, 60, 130, 2, 1,
     [](AttentionProblem& a) {
       large_logits(a, 0.125f);
       a.options.window_size = {40, 7};
       a.options.dropout_p = 0.3f;
       a.options.seed = 11;
     }},
    {"bf16_d64_large_logits", DType::bf16, 64, 50, 80, 2, 2, [](AttentionProblem& a) { large_logits(a, 0.125f); }},
};

class BackwardOracle : public ::testing::TestWithParam<Case> {};

TEST_P(BackwardOracle, MatchesReferenceOnEveryIsa) {
  const Case& c = GetParam();
  BackwardProblem problem;
  AttentionProblem& a = problem.fwd;
  a.dtype = c.dtype;
  a.head_dim = c.head_dim;
  a.seqlen_q = c.seqlen_q;
  a.seqlen_k = c.seqlen_k;
  a.heads = c.heads;
  a.heads_kv = c.heads_kv;
  a.batch = 2;
  c.configure(a);
  auto rng = test_rng(std::hash<std::string>{}(c.name));
  problem.allocate(rng);
  const AttentionParams p = problem.params();
  const reference::ReferenceGrads exact = reference::reference_backward(p, DType::f64);
  const reference::ReferenceGrads naive = reference::reference_backward(p, c.dtype);
  for_each_isa([&](Isa isa) {
    SCOPED_TRACE(std::string(isa_name(isa)));
    problem.poison();
    run_backward(p);
    EXPECT_TRUE(check_gradient("dq", problem.dq, exact.dq, naive.dq, c.dtype));
    EXPECT_TRUE(check_gradient("dk", problem.dk, exact.dk, naive.dk, c.dtype));
    EXPECT_TRUE(check_gradient("dv", problem.dv, exact.dv, naive.dv, c.dtype));
  });
}

INSTANTIATE_TEST_SUITE_P(Grid, BackwardOracle, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param.name; });

TEST(BackwardDeterminism, BitwiseAcrossRepeatsAndThreadCounts) {
  BackwardProblem problem;
  AttentionProblem& a = problem.fwd;
  a.batch = 1, a.heads = 4, a.heads_kv = 1, a.seqlen_q = 300, a.seqlen_k = 1100, a.head_dim = 64;
  a.options.causal = true;
  a.options.dropout_p = 0.1f;
  a.options.seed = 5;
  auto rng = test_rng(99);
  problem.allocate(rng);
  const AttentionParams p = problem.params();
  run_backward(p);
  const HostTensor dq = problem.dq.contiguous_copy(), dk = problem.dk.contiguous_copy(),
                   dv = problem.dv.contiguous_copy();
  for (int threads : {1, 2, 4}) {
    set_num_threads(threads);
    for (int repeat = 0; repeat < 20; ++repeat) {
      problem.poison();
      run_backward(p);
      ASSERT_TRUE(problem.dq.contiguous_copy().same_bits(dq)) << threads << " threads, repeat " << repeat;
      ASSERT_TRUE(problem.dk.contiguous_copy().same_bits(dk)) << threads << " threads, repeat " << repeat;
      ASSERT_TRUE(problem.dv.contiguous_copy().same_bits(dv)) << threads << " threads, repeat " << repeat;
    }
  }
  set_num_threads(0);
}

}  // namespace
}  // namespace flashattn::testing
