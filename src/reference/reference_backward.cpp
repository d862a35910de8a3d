#include "reference/reference_backward.hpp"

#include <cmath>
#include <limits>

#include "core/dropout.hpp"
#include "reference/reference_rows.hpp"

namespace flashattn::reference {
namespace {

using namespace detail;

// slot += term in the accumulator type (dk and dv sum over rows and heads).
template <typename Acc>
void accumulate(double& slot, double term) {
  slot = static_cast<double>(static_cast<Acc>(slot) + static_cast<Acc>(term));
}

// Adds the gradient contributions of query row i of sequence b, head h.
template <typename Acc>
void backward_row(const AttentionParams& p, DType precision, const Extent& e, std::int64_t b, std::int64_t h,
                  std::int64_t i, ReferenceGrads& g) {
  const RowScores sc = row_scores<Acc>(p, precision, e, b, h, i);
  if (sc.row_max == -std::numeric_limits<double>::infinity()) return;  // no kept key: zero gradients
  const std::int64_t hk = h / (p.heads_q / p.heads_kv);
  const std::int64_t n = e.seqlen_k;
  Acc sum = 0;
  for (std::int64_t j = 0; j < n; ++j) sum += static_cast<Acc>(std::exp(sc.final_score[j] - sc.row_max));

  const core::DropoutStream dropout = core::make_dropout_stream(p.seed, p.offset, p.dropout_p, b, h, p.heads_q);
  const double keep_scale = 1.0 / (1.0 - static_cast<double>(p.dropout_p));
  const std::int64_t q_at = offset_of(p.q_stride, b, e.q_start + i, h);
  const std::int64_t dout_at = offset_of(p.dout_stride, b, e.q_start + i, h);

  std::vector<double> prob(n, 0.0), keep(n, 0.0), dprob(n, 0.0);  // (seqlen_k,) each
  Acc big_d = 0;                                                  // D = sum_j P_j dP_j
  for (std::int64_t j = 0; j < n; ++j) {
    if (sc.final_score[j] == -std::numeric_limits<double>::infinity()) continue;
    prob[j] = round_to(precision, std::exp(sc.final_score[j] - sc.row_max) / static_cast<double>(sum));
    keep[j] = (p.dropout_p > 0 && dropout.dropped(i, j)) ? 0.0 : keep_scale;
    const std::int64_t v_at = offset_of(p.v_stride, b, e.k_start + j, hk);
    Acc dot = 0;
    for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
      dot += static_cast<Acc>(load(p.dout, p.dtype, dout_at + c)) * static_cast<Acc>(load(p.v, p.dtype, v_at + c));
    }
    dprob[j] = round_to(precision, keep[j] * static_cast<double>(dot));
    big_d += static_cast<Acc>(prob[j]) * static_cast<Acc>(dprob[j]);
  }

  std::vector<Acc> dq(p.head_dim, Acc(0));  // (head_dim,)
  for (std::int64_t j = 0; j < n; ++j) {
    if (sc.final_score[j] == -std::numeric_limits<double>::infinity()) continue;
    double ds = round_to(precision, prob[j] * (dprob[j] - static_cast<double>(big_d)));
    if (p.softcap > 0) {
      const double t = std::tanh(sc.scaled[j] / p.softcap);
      ds = round_to(precision, ds * (1.0 - t * t));
    }
    const std::int64_t k_at = offset_of(p.k_stride, b, e.k_start + j, hk);
    const std::int64_t grad_k_row = ((e.result_row_k + j) * p.heads_kv + hk);
    for (std::int64_t c = 0; c < p.head_dim; ++c) {
      dq[c] += static_cast<Acc>(ds) * static_cast<Acc>(load(p.k, p.dtype, k_at + c));
      accumulate<Acc>(g.dk[grad_k_row * p.head_dim + c], p.softmax_scale * ds * load(p.q, p.dtype, q_at + c));
    }
    const double weight = prob[j] * keep[j];
    for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
      accumulate<Acc>(g.dv[grad_k_row * p.head_dim_v + c], weight * load(p.dout, p.dtype, dout_at + c));
    }
  }
  const std::int64_t dq_row = (e.result_row + i) * p.heads_q + h;
  for (std::int64_t c = 0; c < p.head_dim; ++c) {
    g.dq[dq_row * p.head_dim + c] = round_to(precision, p.softmax_scale * static_cast<double>(dq[c]));
  }
}

}  // namespace

ReferenceGrads reference_backward(const AttentionParams& p, DType precision) {
  ReferenceGrads g;
  g.rows_q = total_rows_q(p);
  g.rows_k = total_rows_k(p);
  g.dq.assign(g.rows_q * p.heads_q * p.head_dim, 0.0);
  g.dk.assign(g.rows_k * p.heads_kv * p.head_dim, 0.0);
  g.dv.assign(g.rows_k * p.heads_kv * p.head_dim_v, 0.0);
  const std::int64_t group = p.heads_q / p.heads_kv;
  // One (batch, kv head) per task: dk and dv rows of a kv head are only written by its own task.
#pragma omp parallel for collapse(2) schedule(dynamic)
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t hk = 0; hk < p.heads_kv; ++hk) {
      const Extent e = extent_of(p, b);
      for (std::int64_t h = hk * group; h < (hk + 1) * group; ++h) {
        for (std::int64_t i = 0; i < e.seqlen_q; ++i) {
          if (precision == DType::f64) {
            backward_row<double>(p, precision, e, b, h, i, g);
          } else {
            backward_row<float>(p, precision, e, b, h, i, g);
          }
        }
      }
    }
  }
  if (precision != DType::f64) {  // summed in fp32; stored in the input precision
    for (double& x : g.dk) x = round_to(precision, x);
    for (double& x : g.dv) x = round_to(precision, x);
  }
  return g;
}

void reference_backend_backward(const AttentionParams& p) {
  const ReferenceGrads g = reference_backward(p, DType::f64);
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const Extent e = extent_of(p, b);
    const std::int64_t full_k = p.cu_seqlens_k ? p.cu_seqlens_k[b + 1] - e.k_start : p.seqlen_k;
    for (std::int64_t i = 0; i < e.seqlen_q; ++i)
      for (std::int64_t h = 0; h < p.heads_q; ++h)
        for (std::int64_t c = 0; c < p.head_dim; ++c)
          store(p.dq, p.dtype, offset_of(p.dq_stride, b, e.q_start + i, h) + c,
                g.dq[((e.result_row + i) * p.heads_q + h) * p.head_dim + c]);
    for (std::int64_t j = 0; j < full_k; ++j)  // keys past seqused_k: 0 in g
      for (std::int64_t h = 0; h < p.heads_kv; ++h) {
        const std::int64_t at = (e.result_row_k + j) * p.heads_kv + h;
        for (std::int64_t c = 0; c < p.head_dim; ++c)
          store(p.dk, p.dtype, offset_of(p.dk_stride, b, e.k_start + j, h) + c, g.dk[at * p.head_dim + c]);
        for (std::int64_t c = 0; c < p.head_dim_v; ++c)
          store(p.dv, p.dtype, offset_of(p.dv_stride, b, e.k_start + j, h) + c, g.dv[at * p.head_dim_v + c]);
      }
  }
}

}  // namespace flashattn::reference
