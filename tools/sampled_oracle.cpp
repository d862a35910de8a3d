// Sampled-row oracle for the bench (see sampled_oracle.hpp for why rows are
// recomputed here instead of calling reference_forward).
#include "sampled_oracle.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "flashattn/error.hpp"
#include "reference/reference_forward.hpp"
#include "reference/reference_rows.hpp"

namespace flashattn::tools {
namespace {

using reference::detail::load;

// True when no element of out (or lse, when present) is NaN.
bool outputs_written(const AttentionParams& p) {
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t i = 0; i < p.seqlen_q; ++i) {
      for (std::int64_t h = 0; h < p.heads_q; ++h) {
        const std::int64_t at = b * p.out_stride.batch + i * p.out_stride.row + h * p.out_stride.head;
        for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
          if (std::isnan(load(p.out, p.dtype, at + c))) return false;
        }
        if (p.lse && std::isnan(p.lse[b * p.lse_batch_stride + h * p.lse_head_stride + i])) return false;
      }
    }
  }
  return true;
}

}  // namespace

NaiveRow naive_attention_row(const AttentionParams& params, DType precision, RowIndex at) {
  if (params.is_varlen()) throw Error("naive_attention_row: varlen params are not supported");
  reference::ReferenceRow row = reference::reference_row(params, precision, at.batch, at.head, at.row);
  return {std::move(row.out), row.lse};
}

std::vector<RowIndex> sample_rows(const AttentionParams& p, int count, std::uint64_t seed) {
  std::vector<RowIndex> rows;
  if (count <= 0) return rows;
  rows.push_back({0, 0, 0});
  if (count > 1) rows.push_back({p.batch - 1, p.heads_q - 1, p.seqlen_q - 1});
  std::mt19937_64 rng(seed);
  auto below = [&](std::int64_t n) { return std::uniform_int_distribution<std::int64_t>(0, n - 1)(rng); };
  while (static_cast<int>(rows.size()) < count) rows.push_back({below(p.batch), below(p.heads_q), below(p.seqlen_q)});
  return rows;
}

OracleVerdict check_rows(const AttentionParams& p, std::span<const RowIndex> rows) {
  OracleVerdict v;
  bool out_nan = false;
  double max_ref = 0, max_lse = 0, lse_naive_err = 0;
  for (const RowIndex& at : rows) {
    const NaiveRow exact = naive_attention_row(p, DType::f64, at);
    const NaiveRow naive = naive_attention_row(p, p.dtype, at);
    const std::int64_t out_at = at.batch * p.out_stride.batch + at.row * p.out_stride.row + at.head * p.out_stride.head;
    for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
      const double got = load(p.out, p.dtype, out_at + c);
      out_nan |= std::isnan(got);
      if (!std::isnan(got)) v.max_abs_err = std::max(v.max_abs_err, std::abs(got - exact.out[c]));
      v.naive_err = std::max(v.naive_err, std::abs(naive.out[c] - exact.out[c]));
      max_ref = std::max(max_ref, std::abs(exact.out[c]));
    }
    if (p.lse) {
      const float got = p.lse[at.batch * p.lse_batch_stride + at.head * p.lse_head_stride + at.row];
      if (std::isinf(exact.lse)) {  // empty row: the front-end's marker, exactly
        if (got != p.lse_of_empty_row) v.failure = "lse of an empty row is not the empty-row marker";
      } else {
        const double err = std::isfinite(got) ? std::abs(got - exact.lse) : std::numeric_limits<double>::infinity();
        v.lse_err = std::max(v.lse_err, err);
        lse_naive_err = std::max(lse_naive_err, std::abs(naive.lse - exact.lse));
        max_lse = std::max(max_lse, std::abs(exact.lse));
      }
    }
    ++v.rows_checked;
  }
  if (out_nan) v.max_abs_err = std::numeric_limits<double>::quiet_NaN();
  v.bound = 2 * v.naive_err + reference::oracle_floor(p.dtype, max_ref);
  // lse is fp32 whatever the input dtype: fp32's rounding is its floor (as in tests/support/oracle.cpp).
  v.lse_bound = 2 * lse_naive_err + reference::unit_roundoff(DType::f32) * std::max(1.0, max_lse) * 4;
  if (!v.failure.empty()) return v;
  if (out_nan) {
    v.failure = "out is NaN (unwritten) on a sampled row";
  } else if (!(v.max_abs_err <= v.bound)) {
    v.failure = "out error above the bound";
  } else if (!(v.lse_err <= v.lse_bound)) {
    v.failure = "lse error above the bound";
  } else if (!outputs_written(p)) {
    v.failure = "out or lse holds NaN (unwritten) outside the sample";
  }
  v.ok = v.failure.empty();
  return v;
}

}  // namespace flashattn::tools
