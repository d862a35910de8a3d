// The bench's unfused baseline (tools/unfused_baseline.*): the same result as
// the library's forward and as the fp64 reference (forward and backward),
// with each GEMM backend (OpenBLAS where it loads), each ISA's own kernels,
// and both ways of scheduling heads; and it declines what it does not
// implement.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "flashattn/flashattn.hpp"
#include "frontends/flash_attn_params.hpp"
#include "reference/reference_backward.hpp"
#include "reference/reference_forward.hpp"
#include "support/oracle.hpp"
#include "unfused_baseline.hpp"

namespace flashattn::testing {
namespace {

using tools::GemmBackend;

struct Case {
  std::string name;
  DType dtype;
  std::int64_t batch, seqlen_q, seqlen_k, heads, heads_kv, head_dim;
  bool strided;
  FlashAttnOptions options;
};

// Odd sizes for the GEMM tails; seqlen_k 300 > one packed depth block (256).
std::vector<Case> cases() {
  return {
      {"plain", DType::f32, 2, 37, 53, 4, 4, 24, false, {}},
      {"causal sq<sk, deep", DType::f32, 1, 29, 300, 4, 2, 72, false, {.causal = true}},
      {"causal sq>sk, empty rows", DType::f32, 1, 40, 17, 2, 1, 16, false, {.causal = true}},
      {"window, strided", DType::f32, 2, 33, 65, 4, 2, 40, true, {.window_size = {5, 3}}},
      {"one head", DType::f32, 1, 70, 70, 1, 1, 130, false, {.causal = true}},
      {"bf16", DType::bf16, 1, 31, 45, 4, 2, 32, false, {.causal = true}},
      {"f16 window", DType::f16, 2, 19, 27, 2, 2, 8, false, {.window_size = {-1, 4}}},
  };
}

FixedProblem make_problem(const Case& c) {
  auto rng = test_rng();
  FixedProblem pr;
  pr.dtype = c.dtype;
  pr.batch = c.batch;
  pr.seqlen_q = c.seqlen_q;
  pr.seqlen_k = c.seqlen_k;
  pr.heads = c.heads;
  pr.heads_kv = c.heads_kv;
  pr.head_dim = c.head_dim;
  pr.strided = c.strided;
  pr.allocate(rng);
  return pr;
}

std::vector<GemmBackend> gemm_backends() {
  std::vector<GemmBackend> backends{GemmBackend::own};
  if (tools::openblas_available()) backends.push_back(GemmBackend::openblas);
  return backends;
}

// max |a - b| over (batch, seqlen_q, heads, head_dim) in the same order.
template <typename Expected>
double max_abs_diff(std::span<const float> actual, Expected&& expected) {
  double diff = 0;
  for (std::size_t e = 0; e < actual.size(); ++e) diff = std::max(diff, std::abs(actual[e] - expected(e)));
  return diff;
}

TEST(UnfusedBaseline, MatchesTheLibraryAndTheReference) {
  if (!tools::openblas_available()) std::cout << "libopenblas.so.0 not found: own GEMM only\n";
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    FixedProblem pr = make_problem(c);
    const AttentionParams p = frontend::flash_attn_params("t", pr.q, pr.k, pr.v, pr.outputs(), c.options);
    ASSERT_EQ(tools::unfused_unsupported_reason(p), "");
    flash_attn(pr.q, pr.k, pr.v, pr.outputs(), c.options);
    const reference::ReferenceOutput exact = reference::reference_forward(p, DType::f64);
    for_each_isa([&](Isa isa) {
      for (GemmBackend gemm : gemm_backends()) {
        for (int threads : {1, 2, 3}) {  // 1: heads in turn; 2, 3: heads in parallel, or one head on all threads
          SCOPED_TRACE(std::string(isa_name(isa)) + " " + std::string(tools::gemm_backend_name(gemm)) + " threads " +
                       std::to_string(threads));
          tools::UnfusedAttention baseline(p, gemm, isa, threads);
          baseline.run();
          // Inputs are converted to fp32 exactly, so fp32 arithmetic bounds the error in every dtype.
          EXPECT_LT(max_abs_diff(baseline.out(), [&](std::size_t e) { return exact.out[e]; }), 1e-4);
          if (c.dtype == DType::f32) {
            EXPECT_LT(max_abs_diff(baseline.out(), [&](std::size_t e) { return pr.out.get(std::int64_t(e)); }), 1e-4);
          }
        }
      }
    });
  }
}

TEST(UnfusedBaseline, BackwardMatchesTheReference) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    FixedProblem pr = make_problem(c);
    auto rng = test_rng(1);
    HostTensor dout(c.dtype, {c.batch, c.seqlen_q, c.heads, c.head_dim});
    dout.randomize(rng);
    AttentionParams p = frontend::flash_attn_params("t", pr.q, pr.k, pr.v, pr.outputs(), c.options);
    p.dout = dout.view().data;
    p.dout_stride = {dout.view().stride[0], dout.view().stride[1], dout.view().stride[2]};
    const reference::ReferenceGrads exact = reference::reference_backward(p, DType::f64);
    for_each_isa([&](Isa isa) {
      for (GemmBackend gemm : gemm_backends()) {
        for (int threads : {1, 2, 3}) {  // 1: kv heads in turn; 2, 3: in parallel, or one on all threads
          SCOPED_TRACE(std::string(isa_name(isa)) + " " + std::string(tools::gemm_backend_name(gemm)) + " threads " +
                       std::to_string(threads));
          tools::UnfusedAttention baseline(p, gemm, isa, threads, tools::UnfusedPass::backward);
          baseline.run();
          // fp32 arithmetic on exactly converted inputs; gradients sum up to seqlen terms.
          EXPECT_LT(max_abs_diff(baseline.dq(), [&](std::size_t e) { return exact.dq[e]; }), 1e-4);
          EXPECT_LT(max_abs_diff(baseline.dk(), [&](std::size_t e) { return exact.dk[e]; }), 1e-4);
          EXPECT_LT(max_abs_diff(baseline.dv(), [&](std::size_t e) { return exact.dv[e]; }), 1e-4);
        }
      }
    });
  }
}

TEST(UnfusedBaseline, RowsWithNoKeyAreZero) {
  Case c{"sq>sk", DType::f32, 1, 12, 4, 2, 2, 8, false, {.causal = true}};
  FixedProblem pr = make_problem(c);
  const AttentionParams p = frontend::flash_attn_params("t", pr.q, pr.k, pr.v, pr.outputs(), c.options);
  tools::UnfusedAttention baseline(p, GemmBackend::own, active_isa(), 2);
  baseline.run();
  // Rows 0..7 of 12 see no key under a bottom-right causal mask with 4 keys.
  const std::span<const float> out = baseline.out();  // (1, 12, 2, 8)
  for (std::int64_t e = 0; e < 8 * 2 * 8; ++e) ASSERT_EQ(out[e], 0.0f) << e;
  for (float x : out) ASSERT_TRUE(std::isfinite(x));
}

TEST(UnfusedBaseline, DeclinesWhatItDoesNotImplement) {
  const std::vector<float> slopes(4, 0.5f);
  const TensorView alibi = TensorView::contiguous(slopes.data(), DType::f32, {4});
  Case c{"plain", DType::f32, 1, 8, 8, 4, 4, 8, false, {}};
  FixedProblem pr = make_problem(c);
  auto reason = [&](const FlashAttnOptions& options) {
    return tools::unfused_unsupported_reason(
        frontend::flash_attn_params("t", pr.q, pr.k, pr.v, pr.outputs(), options));
  };
  EXPECT_EQ(reason({}), "");
  EXPECT_EQ(reason({.softcap = 2.0f}), "softcap");
  EXPECT_EQ(reason({.alibi_slopes = alibi}), "alibi");
  EXPECT_EQ(reason({.dropout_p = 0.1f, .seed = 1}), "dropout");

  // One head's S over 1 GiB: sizes only, nothing is allocated.
  AttentionParams big = frontend::flash_attn_params("t", pr.q, pr.k, pr.v, pr.outputs(), {});
  big.seqlen_q = big.seqlen_k = 16384;  // exactly 1 GiB: still runs
  EXPECT_EQ(tools::unfused_unsupported_reason(big), "");
  big.seqlen_k = 16385;
  EXPECT_NE(tools::unfused_unsupported_reason(big), "");
}

}  // namespace
}  // namespace flashattn::testing
