// The oracle rule of DESIGN.md for gradients, on a sample, for
// `flashattn bench --mode bwd`:
//   max |kernel - fp64| <= 3 * max |naive(input precision) - fp64| + floor
// for each of dq, dk and dv over sampled dq rows and sampled dk / dv key rows
// (floor = reference::oracle_floor).
//
// dq of one query row needs only that row's scores: O(seqlen_k * D). dk and
// dv of one key sum over every query row of every query head of its GQA
// group, and each row needs its own statistics (lse, D = sum_j P_j dP_j):
// O(group * seqlen_q * seqlen_k * D) per sampled (batch, kv head). The fp64
// reference_backward pays that for every head, so this recomputes its
// formulas, in its order (bit-identical, tests/tools/test_sampled_backward_
// oracle.cpp), for the sampled heads only, with loops the compiler vectorises.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "flashattn/params.hpp"
#include "sampled_oracle.hpp"

namespace flashattn::tools {

struct KeyIndex {
  std::int64_t batch = 0;
  std::int64_t head_kv = 0;
  std::int64_t key = 0;  // key index j within the sequence
};

struct BackwardSample {
  std::vector<RowIndex> dq_rows;  // query rows whose dq is checked
  std::vector<KeyIndex> keys;     // key rows whose dk and dv are checked
};

// Multiply-adds the recomputation of a sample may cost (both precisions):
// 1e10 take about 1.2 s on the 2-core development machine. With D = 128:
// S = 2048 checks two (batch, kv head) pairs (4.3e9, ~0.5 s), S = 4096 one
// (non-causal) or two (causal), S >= 8192 none.
constexpr double kMaxRecomputeMacs = 1e10;

// dq rows: sample_rows(params, rows, seed). Keys: `keys_per_head` of each of
// up to `kv_heads` (batch, kv head) pairs: the problem's first and last
// pairs, then random ones; in each, the first and last keys, then random
// ones. Pairs are dropped, last first, while the recomputation would cost
// more than kMaxRecomputeMacs (none left: dk and dv are not checked).
// Fixed-length params only (not varlen, no seqused_k).
BackwardSample sample_backward(const AttentionParams& params, int rows, int kv_heads, int keys_per_head,
                               std::uint64_t seed);

// Multiply-adds sampled_gradients costs for `sample` in one precision.
double recompute_macs(const AttentionParams& params, const BackwardSample& sample);

// The gradients of loss = sum(out * dout) at the sample, as
// reference::reference_backward(params, precision) computes them (precision
// f64: the oracle; f32 / f16 / bf16: the naive algorithm in that precision).
// Reads q, k, v and dout; q, k, v and dout must be f32, f16 or bf16.
struct SampledGrads {
  std::vector<double> dq;  // (dq_rows, head_dim)
  std::vector<double> dk;  // (keys, head_dim)
  std::vector<double> dv;  // (keys, head_dim_v)
};
SampledGrads sampled_gradients(const AttentionParams& params, DType precision, const BackwardSample& sample);

struct GradientError {
  double err = 0;        // max |kernel - fp64| on the sample; NaN when a sampled element is NaN
  double naive_err = 0;  // max |naive in the input precision - fp64|
  double bound = 0;      // 3 * naive_err + reference::oracle_floor(dtype, max |fp64|)
};

struct BackwardVerdict {
  std::int64_t rows_checked = 0;  // dq rows
  std::int64_t keys_checked = 0;  // dk and dv rows; 0: dk and dv not checked (their errors NaN)
  GradientError dq, dk, dv;
  bool ok = false;
  std::string failure;  // why not ok; empty when ok
};

// Reads params.dq, dk and dv as the kernel left them. Also fails when any
// element of them anywhere is NaN (callers poison them first).
BackwardVerdict check_backward(const AttentionParams& params, const BackwardSample& sample);

}  // namespace flashattn::tools
