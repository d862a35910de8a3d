// The oracle rule of DESIGN.md on a sample of query rows, for the bench.
//
// The fp64 reference over a whole S = 2048 problem costs as much as a slow
// attention run, so the bench checks a few (batch, head, row) triples with
// reference::reference_row, the reference's own per-row algorithm.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "flashattn/params.hpp"

namespace flashattn::tools {

struct RowIndex {
  std::int64_t batch = 0;
  std::int64_t head = 0;
  std::int64_t row = 0;  // query index i within the sequence
};

struct NaiveRow {
  std::vector<double> out;  // (head_dim_v,)
  double lse = 0;           // -inf when the row keeps no key
};

// Row `at` of reference::reference_row over fixed-length params (not varlen;
// seqused_k, paged and cache-indexed keys are fine: out keeps the (b, sq, h, d)
// layout). precision f64: the oracle; f32 / f16 / bf16: the naive algorithm
// in that precision.
NaiveRow naive_attention_row(const AttentionParams& params, DType precision, RowIndex at);

// `count` rows: the first and last rows of the problem, then random ones
// drawn from `seed`.
std::vector<RowIndex> sample_rows(const AttentionParams& params, int count, std::uint64_t seed);

struct OracleVerdict {
  std::int64_t rows_checked = 0;
  double max_abs_err = 0;  // of out on the sampled rows, vs fp64
  double naive_err = 0;    // same naive algorithm in the input precision, vs fp64
  double bound = 0;        // 2 * naive_err + reference::oracle_floor(dtype, max |fp64 out|)
  double lse_err = 0;
  double lse_bound = 0;
  bool ok = false;
  std::string failure;  // why not ok; empty when ok
};

// Reads params.out and params.lse as the kernel left them. Also fails when
// any element of out or lse anywhere is NaN (callers poison them first).
OracleVerdict check_rows(const AttentionParams& params, std::span<const RowIndex> rows);

}  // namespace flashattn::tools
