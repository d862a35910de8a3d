// The flash-attn backward front-end (flash_attn_backward.hpp): gradients
// through the API against the fp64 reference by the oracle rule for
// gradients (params built by the tests, not by the front-end under test);
// packed forms bitwise equal to the unpacked one; varlen bitwise equal to its
// sequences run one by one; flash_attn_forward_backward bitwise equal to the
// two calls. The every-ISA sweep of the kernel is tests/cpu/test_backward_oracle.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "flashattn/flash_attn.hpp"
#include "flashattn/flash_attn_backward.hpp"
#include "support/attention_problem.hpp"
#include "support/backward_problem.hpp"
#include "support/host_tensor.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

void none(AttentionProblem&) {}

const GradientCase kCases[] = {
    {"f32_gqa", DType::f32, 32, 23, 41, 6, 2, none},
    {"f32_mqa_strided", DType::f32, 24, 17, 30, 4, 1, [](AttentionProblem& a) { a.strided = true; }},
    {"bf16_causal", DType::bf16, 64, 33, 33, 2, 2, [](AttentionProblem& a) { a.options.causal = true; }},
    {"f32_causal_window_sq_gt_sk", DType::f32, 16, 40, 25, 4, 2,
     [](AttentionProblem& a) {
       a.options.causal = true;
       a.options.window_size = {6, -1};
     }},
    {"f32_dropout", DType::f32, 32, 29, 37, 2, 1,
     [](AttentionProblem& a) {
       a.options.dropout_p = 0.3f;
       a.options.seed = 2024;
       a.options.offset = 7;
     }},
    {"f32_softcap_scale", DType::f32, 40, 19, 50, 2, 2,
     [](AttentionProblem& a) {
       a.options.softcap = 2.5f;
       a.options.softmax_scale = 0.3f;
     }},
    {"f16_alibi_bh", DType::f16, 24, 21, 35, 4, 2, [](AttentionProblem& a) { a.alibi = Alibi::per_batch_head; }},
    {"f32_varlen_seqused_causal", DType::f32, 16, 1, 1, 4, 2,
     [](AttentionProblem& a) {
       a.lens_q = {7, 0, 20, 11};
       a.lens_k = {9, 4, 26, 8};
       a.seqused_k = {9, 2, 17, 0};
       a.options.causal = true;
       a.alibi = Alibi::per_head;
     }},
};

class FlashAttnBackwardOracle : public ::testing::TestWithParam<GradientCase> {};

TEST_P(FlashAttnBackwardOracle, GradientsMatchTheReference) {
  BackwardProblem problem;
  GetParam().allocate(problem);
  problem.run();
  const GradientOracle oracle(problem.params());
  EXPECT_TRUE(oracle.check_dq(problem.dq));
  EXPECT_TRUE(oracle.check_dk(problem.dk));
  EXPECT_TRUE(oracle.check_dv(problem.dv));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const HostTensor* t : {&problem.dq, &problem.dk, &problem.dv})
    EXPECT_TRUE(t->outside_view_holds(nan)) << "written outside a gradient's view";
}

INSTANTIATE_TEST_SUITE_P(Cases, FlashAttnBackwardOracle, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param.name; });

// A problem for the bitwise comparisons: every feature that touches the
// backward's arithmetic (causal band, softcap, alibi, dropout).
void configure_features(AttentionProblem& a) {
  a.options.causal = true;
  a.options.window_size = {9, -1};
  a.options.softcap = 4.0f;
  a.options.dropout_p = 0.2f;
  a.options.seed = 99;
  a.alibi = Alibi::per_head;
}

// CPU backward: deterministic is documented to change nothing.
TEST(FlashAttnBackward, DeterministicFlagChangesNothing) {
  BackwardProblem problem;
  problem.fwd.heads = 4, problem.fwd.heads_kv = 2, problem.fwd.head_dim = 16;
  configure_features(problem.fwd);
  auto rng = test_rng();
  problem.allocate(rng);
  problem.run();
  const HostTensor dq = problem.dq.contiguous_copy(), dk = problem.dk.contiguous_copy(),
                   dv = problem.dv.contiguous_copy();
  problem.fwd.options.deterministic = true;
  problem.poison();
  problem.run();
  EXPECT_TRUE(problem.dq.same_bits(dq));
  EXPECT_TRUE(problem.dk.same_bits(dk));
  EXPECT_TRUE(problem.dv.same_bits(dv));
}

// ------------------------------------------------------------------ packed
struct PackedCase {
  bool varlen;
  bool qkv;  // qkvpacked (heads_kv == heads, seqlen_k == seqlen_q), else kvpacked
};

// Packed gradients equal the unpacked ones bit for bit (same params, only
// the strides differ).
void expect_packed_equals_unpacked(const PackedCase& pc) {
  BackwardProblem problem;
  AttentionProblem& a = problem.fwd;
  a.batch = 2, a.heads = 4, a.heads_kv = pc.qkv ? 4 : 2, a.head_dim = 24;
  a.seqlen_q = 19, a.seqlen_k = pc.qkv ? 19 : 28;
  if (pc.varlen) {
    a.lens_q = {7, 0, 12};
    a.lens_k = pc.qkv ? a.lens_q : std::vector<std::int32_t>{10, 3, 15};
    a.seqlen_q = a.seqlen_k = 0;  // raised to the longest sequence
  }
  configure_features(a);
  auto rng = test_rng(pc.varlen * 2 + pc.qkv);
  problem.allocate(rng);
  problem.run();

  const int dim = pc.varlen ? 1 : 2;  // the packing dimension
  const FlashAttnOptions o = a.opts();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (pc.qkv) {
    const HostTensor qkv = stack({&a.q, &a.k, &a.v}, dim);
    HostTensor dqkv(a.dtype, shape_of(qkv), nan);
    if (pc.varlen) {
      flash_attn_varlen_qkvpacked_backward(problem.dout, qkv, a.out, a.lse, dqkv, a.cu_seqlens_q, a.seqlen_q, o);
    } else {
      flash_attn_qkvpacked_backward(problem.dout, qkv, a.out, a.lse, dqkv, o);
    }
    EXPECT_TRUE(dqkv.same_bits(stack({&problem.dq, &problem.dk, &problem.dv}, dim)));
    return;
  }
  const HostTensor kv = stack({&a.k, &a.v}, dim);
  HostTensor dq(a.dtype, shape_of(a.q), nan), dkv(a.dtype, shape_of(kv), nan);
  if (pc.varlen) {
    flash_attn_varlen_kvpacked_backward(problem.dout, a.q, kv, a.out, a.lse, dq, dkv, a.cu_seqlens_q, a.cu_seqlens_k,
                                        a.seqlen_q, a.seqlen_k, o);
  } else {
    flash_attn_kvpacked_backward(problem.dout, a.q, kv, a.out, a.lse, dq, dkv, o);
  }
  EXPECT_TRUE(dq.same_bits(problem.dq));
  EXPECT_TRUE(dkv.same_bits(stack({&problem.dk, &problem.dv}, dim)));
}

TEST(FlashAttnBackward, KvpackedEqualsUnpackedBitwise) { expect_packed_equals_unpacked({false, false}); }
TEST(FlashAttnBackward, QkvpackedEqualsUnpackedBitwise) { expect_packed_equals_unpacked({false, true}); }
TEST(FlashAttnBackward, VarlenKvpackedEqualsUnpackedBitwise) { expect_packed_equals_unpacked({true, false}); }
TEST(FlashAttnBackward, VarlenQkvpackedEqualsUnpackedBitwise) { expect_packed_equals_unpacked({true, true}); }

// dk and dv as two interleaved views of one dkv buffer, through the unpacked
// entry point: they do not overlap, so the call is accepted and writes what
// flash_attn_kvpacked_backward writes.
TEST(FlashAttnBackward, InterleavedGradientViewsAreAccepted) {
  BackwardProblem problem;
  problem.fwd.heads = 4, problem.fwd.heads_kv = 4, problem.fwd.head_dim = 8, problem.fwd.seqlen_k = 16;
  auto rng = test_rng();
  problem.allocate(rng);
  problem.run();
  const AttentionProblem& a = problem.fwd;
  HostTensor dqkv(a.dtype, {a.batch, a.seqlen_q, 3, a.heads, a.head_dim}, std::numeric_limits<double>::quiet_NaN());
  TensorView parts[3];
  for (int i = 0; i < 3; ++i) {
    parts[i] = dqkv.view();
    parts[i].data = dqkv.data<float>() + i * a.heads * a.head_dim;
    parts[i].rank = 4;
    parts[i].shape = {a.batch, a.seqlen_q, a.heads, a.head_dim};
    parts[i].stride = {dqkv.view().stride[0], dqkv.view().stride[1], dqkv.view().stride[3], 1};
  }
  ASSERT_NO_THROW(
      flash_attn_backward(problem.dout, a.q, a.k, a.v, a.out, a.lse, {parts[0], parts[1], parts[2]}, a.opts()));
  EXPECT_TRUE(dqkv.same_bits(stack({&problem.dq, &problem.dk, &problem.dv}, 2)));
}

// ------------------------------------------------------ varlen vs one by one
// Copies n rows of (heads, dim) from row from_row of `from` to row to_row of
// `to`; rows count across the batch: (total, h, d) and (1, s, h, d) alike.
void copy_rows(const HostTensor& from, std::int64_t from_row, HostTensor& to, std::int64_t to_row, std::int64_t n) {
  const std::int64_t row = from.view().shape[from.view().rank - 2] * from.view().shape[from.view().rank - 1];
  for (std::int64_t i = 0; i < n * row; ++i) to.set(to_row * row + i, from.get(from_row * row + i));
}

// Each sequence of a varlen batch, run as its own fixed-length problem on
// the varlen forward's out and lse, gives the same gradients bit for bit.
// Bitwise holds because every sequence has at most one key superblock here
// (seqlen_k <= 4 key tiles): the kernel then sums dq in one stripe and dk,
// dv over the same query chunks in both runs, so no sum depends on the batch.
// (With more superblocks the number of dq stripes depends on batch * heads_kv,
// so dq may differ in the last bits.) No dropout: its mask depends on the
// batch index, which differs between the two runs.
TEST(FlashAttnBackward, VarlenEqualsSequencesOneByOneBitwise) {
  BackwardProblem problem;
  AttentionProblem& a = problem.fwd;
  a.heads = 4, a.heads_kv = 2, a.head_dim = 16;
  a.lens_q = {13, 0, 21, 6, 9};
  a.lens_k = {17, 5, 11, 30, 7};
  a.seqused_k = {17, 5, 8, 22, 0};  // the last sequence uses no key: zero gradients
  a.strided = true;
  configure_features(a);
  a.options.dropout_p = 0.0f;
  auto rng = test_rng();
  problem.allocate(rng);
  problem.run();

  std::int64_t q0 = 0, k0 = 0;
  for (std::size_t b = 0; b < a.lens_q.size(); ++b) {
    SCOPED_TRACE("sequence " + std::to_string(b));
    const std::int64_t sq = a.lens_q[b], sk = a.lens_k[b], used = a.seqused_k[b];
    const double nan = std::numeric_limits<double>::quiet_NaN();
    HostTensor dq(a.dtype, {1, sq, a.heads, a.head_dim}, nan);
    HostTensor dk(a.dtype, {1, sk, a.heads_kv, a.head_dim}, 0.0), dv = dk.contiguous_copy();  // keys past used: 0
    if (sq > 0 && used > 0) {
      HostTensor q(a.dtype, {1, sq, a.heads, a.head_dim}), out = q.contiguous_copy(), dout = q.contiguous_copy();
      HostTensor k(a.dtype, {1, used, a.heads_kv, a.head_dim}), v = k.contiguous_copy();
      HostTensor lse(DType::f32, {1, a.heads, sq});
      copy_rows(a.q, q0, q, 0, sq);
      copy_rows(a.out, q0, out, 0, sq);
      copy_rows(problem.dout, q0, dout, 0, sq);
      copy_rows(a.k, k0, k, 0, used);
      copy_rows(a.v, k0, v, 0, used);
      for (std::int64_t h = 0; h < a.heads; ++h)
        for (std::int64_t i = 0; i < sq; ++i) lse.set(h * sq + i, a.lse.get(h * a.rows_q() + q0 + i));
      HostTensor dk_used(a.dtype, shape_of(k), nan), dv_used(a.dtype, shape_of(v), nan);
      flash_attn_backward(dout, q, k, v, out, lse, {dq, dk_used, dv_used}, a.opts());
      copy_rows(dk_used, 0, dk, 0, used);
      copy_rows(dv_used, 0, dv, 0, used);
    } else if (sq > 0) {
      dq.fill(0.0);  // rows without keys
    }
    HostTensor want_dq(a.dtype, {1, sq, a.heads, a.head_dim}), want_dk(a.dtype, {1, sk, a.heads_kv, a.head_dim});
    HostTensor want_dv = want_dk.contiguous_copy();
    copy_rows(problem.dq, q0, want_dq, 0, sq);
    copy_rows(problem.dk, k0, want_dk, 0, sk);
    copy_rows(problem.dv, k0, want_dv, 0, sk);
    EXPECT_TRUE(dq.same_bits(want_dq));
    EXPECT_TRUE(dk.same_bits(want_dk));
    EXPECT_TRUE(dv.same_bits(want_dv));
    q0 += sq;
    k0 += sk;
  }
}

// ----------------------------------------------------- forward + backward
TEST(FlashAttnBackward, ForwardBackwardEqualsTheTwoCallsBitwise) {
  for (bool with_lse : {true, false}) {
    SCOPED_TRACE(with_lse ? "softmax_lse given" : "softmax_lse allocated internally");
    BackwardProblem problem;
    AttentionProblem& a = problem.fwd;
    a.batch = 2, a.heads = 6, a.heads_kv = 3, a.seqlen_q = 21, a.seqlen_k = 34, a.head_dim = 20;
    a.dtype = DType::bf16;
    configure_features(a);
    auto rng = test_rng(with_lse);
    problem.allocate(rng);  // runs flash_attn: a.out, a.lse
    problem.run();          // flash_attn_backward: dq, dk, dv
    const double nan = std::numeric_limits<double>::quiet_NaN();
    HostTensor out(a.dtype, shape_of(a.out), nan), lse(DType::f32, shape_of(a.lse), nan);
    HostTensor dq(a.dtype, shape_of(a.q), nan), dk(a.dtype, shape_of(a.k), nan), dv(a.dtype, shape_of(a.v), nan);
    const FlashAttnOutputs outputs{out, with_lse ? lse.view() : TensorView{}, {}};
    flash_attn_forward_backward(a.q, a.k, a.v, problem.dout, outputs, {dq, dk, dv}, a.opts());
    EXPECT_TRUE(out.same_bits(a.out));
    if (with_lse) EXPECT_TRUE(lse.same_bits(a.lse));
    EXPECT_TRUE(dq.same_bits(problem.dq));
    EXPECT_TRUE(dk.same_bits(problem.dk));
    EXPECT_TRUE(dv.same_bits(problem.dv));
  }
}

}  // namespace
}  // namespace flashattn::testing
