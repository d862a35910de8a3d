// Metamorphic properties of the CPU forward, on every ISA, all BITWISE:
//   - a batch equals its sequences run one at a time;
//   - varlen equals padded fixed-length, and varlen over padded storage with
//     seqused_k equals packed varlen;
//   - the result does not depend on the thread count;
//   - repeated calls give identical results.
//
// Why bitwise (not just within the oracle): a row's arithmetic depends only
// on its query, its sequence's kept keys and the key-tile boundaries, which
// sit at multiples of k_cols from the sequence start and depend only on the
// head dims (cpu/tile_shape.hpp). Which rows share a query tile (q_rows, set
// by the thread count and the problem size), where the sequence lives in
// memory and which thread runs it change nothing. Dropout depends only on
// (seed, offset, b, h, i, j). So any difference is a bug, not rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "flashattn/flashattn.hpp"
#include "support/attention_problem.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

class ForwardMetamorphic : public ::testing::Test {
 protected:
  void TearDown() override {
    set_isa(supported_isas().back());
    set_num_threads(0);
  }
};

std::string isa_string(Isa isa) { return std::string(isa_name(isa)); }

// Copies rows [src_row, src_row + rows) of a (rows, heads, dim) block of
// `src` into `dst` at dst_row; both viewed as flat row-major (.., heads, dim).
void copy_rows(const HostTensor& src, std::int64_t src_row, HostTensor& dst, std::int64_t dst_row, std::int64_t rows,
               std::int64_t row_elems) {
  for (std::int64_t e = 0; e < rows * row_elems; ++e) dst.set(dst_row * row_elems + e, src.get(src_row * row_elems + e));
}

// True when the flat ranges hold the same bits (values compared exactly,
// NaN never equal): out / lse elements of one sequence.
::testing::AssertionResult same_values(const HostTensor& a, std::int64_t a_at, const HostTensor& b, std::int64_t b_at,
                                       std::int64_t n, const char* what) {
  for (std::int64_t e = 0; e < n; ++e) {
    const double x = a.get(a_at + e), y = b.get(b_at + e);
    if (!(x == y) || std::signbit(x) != std::signbit(y)) {
      return ::testing::AssertionFailure() << what << " differs at element " << e << ": " << x << " vs " << y;
    }
  }
  return ::testing::AssertionSuccess();
}

struct Features {
  bool causal = false;
  WindowSize window{};
  float softcap = 0.0f;
  float dropout = 0.0f;
  Alibi alibi = Alibi::none;
};

void apply(const Features& f, AttentionProblem& pr) {
  pr.alibi = f.alibi;
  pr.options.causal = f.causal;
  pr.options.window_size = f.window;
  pr.options.softcap = f.softcap;
  pr.options.dropout_p = f.dropout;
  pr.options.seed = 0xfeed;
  pr.options.offset = 3;
}

// A batch of 3 equals each sequence run alone (batch 1). Dropout is off
// except for sequence 0: the RNG stream depends on the batch index b.
TEST_F(ForwardMetamorphic, BatchEqualsSequencesOneAtATime) {
  const Features configs[] = {{.causal = true, .alibi = Alibi::per_batch_head},
                              {.window = {9, 4}, .softcap = 3.0f},
                              {.dropout = 0.25f}};
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (const Features& f : configs) {
      auto rng = test_rng(static_cast<std::uint64_t>(dtype) + 10 * f.causal + 100 * (f.dropout > 0));
      AttentionProblem batch;
      batch.dtype = dtype;
      batch.batch = 3;
      batch.seqlen_q = 70;
      batch.seqlen_k = 133;
      batch.heads_kv = 2;
      batch.head_dim = 40;
      apply(f, batch);
      batch.allocate(rng);
      const std::int64_t sequences = f.dropout > 0 ? 1 : batch.batch;
      for_each_isa([&](Isa isa) {
        batch.poison_outputs();
        batch.run();
        for (std::int64_t b = 0; b < sequences; ++b) {
          SCOPED_TRACE(isa_string(isa) + " " + std::string(dtype_name(dtype)) + " sequence " + std::to_string(b));
          AttentionProblem one;
          one.dtype = dtype;
          one.seqlen_q = batch.seqlen_q;
          one.seqlen_k = batch.seqlen_k;
          one.heads_kv = batch.heads_kv;
          one.head_dim = batch.head_dim;
          apply(f, one);
          if (f.alibi == Alibi::per_batch_head) one.alibi = Alibi::per_head;
          one.allocate(rng);
          const std::int64_t q_row = one.heads * one.head_dim, k_row = one.heads_kv * one.head_dim;
          copy_rows(batch.q, b * one.seqlen_q, one.q, 0, one.seqlen_q, q_row);
          copy_rows(batch.k, b * one.seqlen_k, one.k, 0, one.seqlen_k, k_row);
          copy_rows(batch.v, b * one.seqlen_k, one.v, 0, one.seqlen_k, k_row);
          if (f.alibi == Alibi::per_batch_head) copy_rows(batch.alibi_slopes, b, one.alibi_slopes, 0, 1, one.heads);
          one.run();
          EXPECT_TRUE(same_values(batch.out, b * one.seqlen_q * q_row, one.out, 0, one.seqlen_q * q_row, "out"));
          EXPECT_TRUE(same_values(batch.lse, b * one.heads * one.seqlen_q, one.lse, 0, one.heads * one.seqlen_q, "lse"));
        }
      });
    }
  }
}

// Varlen (packed, unpadded) equals a fixed-length run on padded tensors,
// bitwise, where the two describe the same attention: every sequence has
// all max_seqlen_k keys (fixed-length runs have no key padding) and no
// bottom-right anchored feature (causal, window, alibi anchor at
// seqlen_k - seqlen_q, which differs between the two); softcap and dropout
// are position-free. Query padding rows of the fixed run are ignored.
TEST_F(ForwardMetamorphic, VarlenEqualsPaddedFixedLength) {
  const std::vector<std::int32_t> lens_q{37, 0, 80, 5};
  const std::int64_t max_q = 80, sk = 101;
  for (const Features& f : {Features{}, Features{.softcap = 2.5f, .dropout = 0.2f}}) {
    auto rng = test_rng(f.dropout > 0);
    AttentionProblem varlen;
    varlen.lens_q = lens_q;
    varlen.lens_k.assign(lens_q.size(), static_cast<std::int32_t>(sk));
    varlen.heads_kv = 3;
    varlen.head_dim = 59;
    apply(f, varlen);
    varlen.allocate(rng);
    AttentionProblem fixed;
    fixed.batch = static_cast<std::int64_t>(lens_q.size());
    fixed.seqlen_q = max_q;
    fixed.seqlen_k = sk;
    fixed.heads_kv = 3;
    fixed.head_dim = 59;
    apply(f, fixed);
    fixed.allocate(rng);  // random padding rows
    const std::int64_t q_row = fixed.heads * fixed.head_dim, k_row = fixed.heads_kv * fixed.head_dim;
    std::int64_t start = 0;
    for (std::size_t b = 0; b < lens_q.size(); ++b) {
      copy_rows(varlen.q, start, fixed.q, b * max_q, lens_q[b], q_row);
      copy_rows(varlen.k, b * sk, fixed.k, b * sk, sk, k_row);
      copy_rows(varlen.v, b * sk, fixed.v, b * sk, sk, k_row);
      start += lens_q[b];
    }
    for_each_isa([&](Isa isa) {
      SCOPED_TRACE(isa_string(isa) + (f.dropout > 0 ? " softcap dropout" : ""));
      varlen.poison_outputs();
      fixed.poison_outputs();
      varlen.run();
      fixed.run();
      start = 0;
      for (std::size_t b = 0; b < lens_q.size(); ++b) {
        EXPECT_TRUE(same_values(fixed.out, b * max_q * q_row, varlen.out, start * q_row, lens_q[b] * q_row, "out"))
            << "sequence " << b;
        for (std::int64_t h = 0; h < fixed.heads; ++h) {
          EXPECT_TRUE(same_values(fixed.lse, (b * fixed.heads + h) * max_q, varlen.lse, h * varlen.rows_q() + start,
                                  lens_q[b], "lse"))
              << "sequence " << b << " head " << h;
        }
        start += lens_q[b];
      }
    });
  }
}

// Varlen over padded storage (every sequence owns max_seqlen_k rows of k/v,
// seqused_k gives the real lengths) equals packed varlen, bitwise, with
// every feature: seqused_k sets the bottom-right anchor like a real length.
TEST_F(ForwardMetamorphic, SequsedOverPaddedStorageEqualsPackedVarlen) {
  const std::vector<std::int32_t> lens_q{37, 0, 80, 5, 12}, lens_k{101, 9, 64, 0, 3};
  const std::int32_t max_k = 101;
  const Features f{.causal = true, .window = {17, -1}, .softcap = 4.0f, .dropout = 0.1f,
                   .alibi = Alibi::per_batch_head};
  auto rng = test_rng();
  AttentionProblem packed;
  packed.lens_q = lens_q;
  packed.lens_k = lens_k;
  packed.heads_kv = 1;
  packed.head_dim = 96;
  apply(f, packed);
  packed.allocate(rng);
  AttentionProblem padded;
  padded.lens_q = lens_q;
  padded.lens_k.assign(lens_q.size(), max_k);
  padded.seqused_k = lens_k;
  padded.heads_kv = 1;
  padded.head_dim = 96;
  apply(f, padded);
  padded.allocate(rng);
  const std::int64_t q_row = padded.heads * padded.head_dim, k_row = padded.heads_kv * padded.head_dim;
  copy_rows(packed.q, 0, padded.q, 0, packed.rows_q(), q_row);
  copy_rows(packed.alibi_slopes, 0, padded.alibi_slopes, 0, padded.batch, padded.heads);
  std::int64_t k_start = 0;
  for (std::size_t b = 0; b < lens_k.size(); ++b) {
    copy_rows(packed.k, k_start, padded.k, b * max_k, lens_k[b], k_row);
    copy_rows(packed.v, k_start, padded.v, b * max_k, lens_k[b], k_row);
    k_start += lens_k[b];
  }
  for_each_isa([&](Isa isa) {
    SCOPED_TRACE(isa_string(isa));
    packed.poison_outputs();
    padded.poison_outputs();
    packed.run();
    padded.run();
    EXPECT_TRUE(padded.out.same_bits(packed.out));
    EXPECT_TRUE(padded.lse.same_bits(packed.lse));
  });
}

// set_num_threads(1, 2, 3, 4) changes the query tile height and the work
// split, never a bit of out, lse or attn_probs.
TEST_F(ForwardMetamorphic, ThreadCountDoesNotChangeABit) {
  struct Config {
    DType dtype;
    bool varlen;
    Features f;
  };
  const Config configs[] = {
      {DType::f32, false, {.causal = true, .alibi = Alibi::per_head}},
      {DType::bf16, true, {.window = {30, 7}, .softcap = 2.0f, .dropout = 0.15f}},
      {DType::f16, false, {.window = {-1, 11}, .dropout = 0.3f, .alibi = Alibi::per_batch_head}},
  };
  for (const Config& c : configs) {
    auto rng = test_rng(static_cast<std::uint64_t>(c.dtype));
    AttentionProblem pr;
    pr.dtype = c.dtype;
    pr.batch = 2;
    pr.seqlen_q = 211;
    pr.seqlen_k = 173;
    pr.heads_kv = 2;
    pr.head_dim = 64;
    pr.probs = true;
    if (c.varlen) {
      pr.lens_q = {211, 3, 150};
      pr.lens_k = {100, 173, 0};
    }
    apply(c.f, pr);
    pr.allocate(rng);
    for_each_isa([&](Isa isa) {
      set_num_threads(1);
      pr.poison_outputs();
      pr.run();
      const HostTensor out = pr.out.contiguous_copy(), lse = pr.lse.contiguous_copy();
      const HostTensor probs = pr.attn_probs.contiguous_copy();
      for (int threads : {2, 3, 4}) {
        SCOPED_TRACE(isa_string(isa) + " " + std::string(dtype_name(c.dtype)) + " threads " + std::to_string(threads));
        set_num_threads(threads);
        pr.poison_outputs();
        pr.run();
        EXPECT_TRUE(pr.out.same_bits(out));
        EXPECT_TRUE(pr.lse.same_bits(lse));
        EXPECT_TRUE(pr.attn_probs.same_bits(probs));
      }
    });
  }
}

TEST_F(ForwardMetamorphic, RepeatedCallsAreIdentical) {
  auto rng = test_rng();
  AttentionProblem pr;
  pr.dtype = DType::bf16;
  pr.seqlen_q = 129;
  pr.seqlen_k = 257;
  pr.heads_kv = 3;
  pr.head_dim = 59;
  pr.options.causal = true;
  pr.options.dropout_p = 0.1f;
  pr.options.seed = 1;
  pr.alibi = Alibi::per_head;
  pr.allocate(rng);
  for_each_isa([&](Isa isa) {
    SCOPED_TRACE(isa_string(isa));
    pr.run();
    const HostTensor out = pr.out.contiguous_copy(), lse = pr.lse.contiguous_copy();
    for (int call = 0; call < 3; ++call) {
      pr.poison_outputs();
      pr.run();
      EXPECT_TRUE(pr.out.same_bits(out)) << "call " << call;
      EXPECT_TRUE(pr.lse.same_bits(lse)) << "call " << call;
    }
  });
}

}  // namespace
}  // namespace flashattn::testing
