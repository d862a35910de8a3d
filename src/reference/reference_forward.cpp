#include "reference/reference_forward.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/dropout.hpp"
#include "core/mask.hpp"
#include "reference/reference_rows.hpp"

namespace flashattn::reference {
namespace {

using namespace detail;

// One (batch, head, row) of naive attention with accumulator type Acc.
template <typename Acc>
ReferenceRow attend_row(const AttentionParams& p, DType precision, std::int64_t b, std::int64_t h, std::int64_t i) {
  const Extent e = extent_of(p, b);
  const std::int64_t hk = h / (p.heads_q / p.heads_kv);
  const double neg_inf = -std::numeric_limits<double>::infinity();
  const RowScores sc = row_scores<Acc>(p, precision, e, b, h, i);
  const std::vector<double>& scores = sc.final_score;  // (seqlen_k,)
  const double row_max = sc.row_max;

  ReferenceRow row{std::vector<double>(p.head_dim_v, 0.0), neg_inf, {}};
  if (p.probs) row.probs.assign(e.seqlen_k, 0.0);
  if (row_max == neg_inf) return row;  // no kept key: output 0, lse -inf
  Acc sum = 0;
  for (std::int64_t j = 0; j < e.seqlen_k; ++j) sum += static_cast<Acc>(std::exp(scores[j] - row_max));
  row.lse = row_max + std::log(static_cast<double>(sum));

  const core::DropoutStream dropout = core::make_dropout_stream(p.seed, p.offset, p.dropout_p, b, h, p.heads_q);
  const double keep_scale = 1.0 / (1.0 - p.dropout_p);
  std::vector<Acc> acc(p.head_dim_v, Acc(0));  // (head_dim_v,)
  for (std::int64_t j = 0; j < e.seqlen_k; ++j) {
    if (scores[j] == neg_inf) continue;
    double prob = round_to(precision, std::exp(scores[j] - row_max) / static_cast<double>(sum));
    const bool dropped = p.dropout_p > 0 && dropout.dropped(i, j);
    if (p.probs) row.probs[j] = dropped ? -prob : prob;
    if (dropped) continue;
    if (p.dropout_p > 0) prob = round_to(precision, prob * keep_scale);
    const std::int64_t v_at = key_offset_of(p, p.v_stride, e, b, j, hk);
    for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
      acc[c] += static_cast<Acc>(prob) * static_cast<Acc>(load(p.v, p.dtype, v_at + c));
    }
  }
  for (std::int64_t c = 0; c < p.head_dim_v; ++c) row.out[c] = round_to(precision, static_cast<double>(acc[c]));
  return row;
}

}  // namespace

ReferenceRow reference_row(const AttentionParams& p, DType precision, std::int64_t b, std::int64_t h,
                           std::int64_t i) {
  return precision == DType::f64 ? attend_row<double>(p, precision, b, h, i)
                                 : attend_row<float>(p, precision, b, h, i);
}

double unit_roundoff(DType dtype) {
  switch (dtype) {
    case DType::bf16: return std::ldexp(1.0, -8);
    case DType::f16: return std::ldexp(1.0, -11);
    case DType::f64: return std::ldexp(1.0, -53);
    default: return std::ldexp(1.0, -24);
  }
}

ReferenceOutput reference_forward(const AttentionParams& p, DType precision) {
  ReferenceOutput result;
  result.rows = total_rows_q(p);
  result.out.assign(result.rows * p.heads_q * p.head_dim_v, 0.0);
  result.lse.assign(p.heads_q * result.rows, -std::numeric_limits<double>::infinity());
  if (p.probs) result.probs.assign(p.batch * p.heads_q * p.seqlen_q * p.seqlen_k, 0.0);

#pragma omp parallel for collapse(2) schedule(dynamic)
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      const Extent e = extent_of(p, b);
      for (std::int64_t i = 0; i < e.seqlen_q; ++i) {
        const ReferenceRow row = reference_row(p, precision, b, h, i);
        const std::int64_t r = e.result_row + i;
        std::copy(row.out.begin(), row.out.end(), result.out.begin() + (r * p.heads_q + h) * p.head_dim_v);
        result.lse[h * result.rows + r] = row.lse;
        if (p.probs) {
          std::copy(row.probs.begin(), row.probs.end(),
                    result.probs.begin() + ((b * p.heads_q + h) * p.seqlen_q + i) * p.seqlen_k);
        }
      }
    }
  }
  return result;
}

void reference_backend_forward(const AttentionParams& p) {
  const ReferenceOutput r = reference_forward(p, DType::f64);
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const Extent e = extent_of(p, b);
    for (std::int64_t i = 0; i < e.seqlen_q; ++i) {
      const std::int64_t row = e.q_start + i, result_row = e.result_row + i;
      for (std::int64_t h = 0; h < p.heads_q; ++h) {
        const std::int64_t out_at = b * p.out_stride.batch + row * p.out_stride.row + h * p.out_stride.head;
        for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
          store(p.out, p.dtype, out_at + c, r.out[(result_row * p.heads_q + h) * p.head_dim_v + c]);
        }
        if (p.lse) {
          const double lse = r.lse[h * r.rows + result_row];
          p.lse[b * p.lse_batch_stride + h * p.lse_head_stride + row] =
              std::isinf(lse) ? p.lse_of_empty_row : static_cast<float>(lse);
        }
      }
    }
  }
  if (!p.probs) return;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      for (std::int64_t i = 0; i < p.seqlen_q; ++i) {  // rows past a short sequence hold 0
        for (std::int64_t j = 0; j < p.seqlen_k; ++j) {
          p.probs[b * p.probs_batch_stride + h * p.probs_head_stride + i * p.probs_row_stride + j] =
              static_cast<float>(r.probs[((b * p.heads_q + h) * p.seqlen_q + i) * p.seqlen_k + j]);
        }
      }
    }
  }
}

}  // namespace flashattn::reference
