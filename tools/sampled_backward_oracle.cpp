// Sampled gradient oracle for `bench --mode bwd` (see sampled_backward_oracle.hpp).
// The formulas and their order of operations are reference_backward's
// (src/reference/reference_backward.cpp); only the loop nests differ: the
// dot products over the head dim run for all keys of a row at once, down a
// transposed K / V, which keeps each key's own sum in the same order.
#include "sampled_backward_oracle.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <utility>

#include "core/dropout.hpp"
#include "core/mask.hpp"
#include "flashattn/error.hpp"
#include "reference/reference_forward.hpp"
#include "reference/reference_rows.hpp"

namespace flashattn::tools {
namespace {

using reference::detail::load;
using reference::detail::offset_of;
using reference::detail::round_to;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr double kGradientFactor = 3.0;  // DESIGN.md: 3x the naive error for gradients

std::int64_t group_of(const AttentionParams& p) { return p.heads_q / p.heads_kv; }

// k and v of one (batch, kv head) in fp32 (exact for f32, f16 and bf16), in
// the layouts the loops below read.
struct KvHead {
  std::int64_t batch = 0, head_kv = 0;
  std::vector<float> k_t;  // (head_dim, seqlen_k)
  std::vector<float> v_t;  // (head_dim_v, seqlen_k)
  std::vector<float> k;    // (seqlen_k, head_dim)
};

KvHead load_kv_head(const AttentionParams& p, std::int64_t b, std::int64_t hk) {
  const std::int64_t sk = p.seqlen_k;
  KvHead kv{b, hk, std::vector<float>(p.head_dim * sk), std::vector<float>(p.head_dim_v * sk),
            std::vector<float>(sk * p.head_dim)};
  for (std::int64_t j = 0; j < sk; ++j) {
    const std::int64_t k_at = offset_of(p.k_stride, b, j, hk), v_at = offset_of(p.v_stride, b, j, hk);
    for (std::int64_t c = 0; c < p.head_dim; ++c) {
      kv.k[j * p.head_dim + c] = kv.k_t[c * sk + j] = static_cast<float>(load(p.k, p.dtype, k_at + c));
    }
    for (std::int64_t c = 0; c < p.head_dim_v; ++c) kv.v_t[c * sk + j] = static_cast<float>(load(p.v, p.dtype, v_at + c));
  }
  return kv;
}

// acc[jj] += x[c] * cols[c * stride + jj] for every c in order: the dot
// product of x with each column, each summed over c in order as
// reference_backward sums it. Four c per pass (the sum is still left to
// right) so acc is read and written a quarter as often.
template <typename Acc>
void dot_columns(const AttentionParams& p, const void* x, std::int64_t x_at, std::int64_t depth, const float* cols,
                 std::int64_t stride, std::vector<Acc>& acc) {
  const std::int64_t n = static_cast<std::int64_t>(acc.size());
  Acc* sum = acc.data();
  auto xc = [&](std::int64_t c) { return static_cast<Acc>(load(x, p.dtype, x_at + c)); };
  std::int64_t c = 0;
  for (; c + 4 <= depth; c += 4) {
    const Acc x0 = xc(c), x1 = xc(c + 1), x2 = xc(c + 2), x3 = xc(c + 3);
    const float *c0 = cols + c * stride, *c1 = c0 + stride, *c2 = c1 + stride, *c3 = c2 + stride;
    for (std::int64_t jj = 0; jj < n; ++jj) {
      sum[jj] = sum[jj] + x0 * static_cast<Acc>(c0[jj]) + x1 * static_cast<Acc>(c1[jj]) +
                x2 * static_cast<Acc>(c2[jj]) + x3 * static_cast<Acc>(c3[jj]);
    }
  }
  for (; c < depth; ++c) {
    const Acc x0 = xc(c);
    const float* c0 = cols + c * stride;
    for (std::int64_t jj = 0; jj < n; ++jj) sum[jj] += x0 * static_cast<Acc>(c0[jj]);
  }
}

// The backward of query row i of head h over its kept keys.
struct RowGrad {
  core::KeyRange keys;         // kept keys; empty: every gradient term is 0
  std::vector<double> ds;      // (keys,) dS_j, after the softcap chain rule
  std::vector<double> weight;  // (keys,) P_j z_j: dv_j += weight_j dout
};

// Scores (reference::detail::row_scores), P, dP, D and dS of one row, in
// reference_backward's backward_row order.
template <typename Acc>
RowGrad row_gradient(const AttentionParams& p, DType precision, const KvHead& kv, std::int64_t h, std::int64_t i) {
  const std::int64_t b = kv.batch, sq = p.seqlen_q, sk = p.seqlen_k;
  RowGrad g{core::kept_keys(p.mask, i, sq, sk), {}, {}};
  const std::int64_t first = g.keys.begin, n = g.keys.end - g.keys.begin;
  if (n <= 0) return g;
  std::vector<Acc> dot(n, Acc(0));  // (keys,) q . k_j
  dot_columns(p, p.q, offset_of(p.q_stride, b, i, h), p.head_dim, kv.k_t.data() + first, sk, dot);
  const double slope = p.alibi_slopes ? p.alibi_slopes[b * p.alibi_batch_stride + h] : 0.0;
  std::vector<double> scaled(n), e(n);  // (keys,) each
  double row_max = kNegInf;
  for (std::int64_t jj = 0; jj < n; ++jj) {
    double s = round_to(precision, static_cast<double>(dot[jj]) * p.softmax_scale);
    scaled[jj] = s;
    if (p.softcap > 0) s = round_to(precision, p.softcap * std::tanh(s / p.softcap));
    if (p.alibi_slopes) s = round_to(precision, s - slope * std::abs(static_cast<double>(i + sk - sq - (first + jj))));
    e[jj] = s;
    row_max = std::max(row_max, s);
  }
  Acc sum = 0;
  for (std::int64_t jj = 0; jj < n; ++jj) {
    e[jj] = std::exp(e[jj] - row_max);
    sum += static_cast<Acc>(e[jj]);
  }
  std::vector<Acc> dp_dot(n, Acc(0));  // (keys,) dout . v_j
  dot_columns(p, p.dout, offset_of(p.dout_stride, b, i, h), p.head_dim_v, kv.v_t.data() + first, sk, dp_dot);
  const core::DropoutStream dropout = core::make_dropout_stream(p.seed, p.offset, p.dropout_p, b, h, p.heads_q);
  const double keep_scale = 1.0 / (1.0 - static_cast<double>(p.dropout_p));
  g.ds.resize(n);
  g.weight.resize(n);
  Acc big_d = 0;  // D = sum_j P_j dP_j
  unsigned dropped_bits = 0;
  for (std::int64_t jj = 0; jj < n; ++jj) {
    const std::int64_t j = first + jj;
    if (p.dropout_p > 0 && (jj == 0 || j % 4 == 0)) dropped_bits = dropout.dropped_bits(i, j / 4);
    const double keep = (p.dropout_p > 0 && ((dropped_bits >> (j % 4)) & 1u)) ? 0.0 : keep_scale;
    const double prob = round_to(precision, e[jj] / static_cast<double>(sum));
    const double dprob = round_to(precision, keep * static_cast<double>(dp_dot[jj]));
    big_d += static_cast<Acc>(prob) * static_cast<Acc>(dprob);
    g.ds[jj] = dprob;  // dS below
    g.weight[jj] = prob * keep;
    e[jj] = prob;
  }
  for (std::int64_t jj = 0; jj < n; ++jj) {
    double ds = round_to(precision, e[jj] * (g.ds[jj] - static_cast<double>(big_d)));
    if (p.softcap > 0) {
      const double t = std::tanh(scaled[jj] / p.softcap);
      ds = round_to(precision, ds * (1.0 - t * t));
    }
    g.ds[jj] = ds;
  }
  return g;
}

// dq of row i of head h: scale * sum_j dS_j k_j, rounded to `precision`.
template <typename Acc>
void row_dq(const AttentionParams& p, DType precision, const KvHead& kv, std::int64_t h, std::int64_t i,
            double* dq) {
  const RowGrad g = row_gradient<Acc>(p, precision, kv, h, i);
  std::vector<Acc> acc(p.head_dim, Acc(0));  // (head_dim,)
  for (std::int64_t jj = 0; jj < static_cast<std::int64_t>(g.ds.size()); ++jj) {
    const Acc ds = static_cast<Acc>(g.ds[jj]);
    const float* k_row = kv.k.data() + (g.keys.begin + jj) * p.head_dim;
    for (std::int64_t c = 0; c < p.head_dim; ++c) acc[c] += ds * static_cast<Acc>(k_row[c]);
  }
  for (std::int64_t c = 0; c < p.head_dim; ++c) dq[c] = round_to(precision, p.softmax_scale * static_cast<double>(acc[c]));
}

// slot += term in the accumulator type, as reference_backward sums dk and dv.
template <typename Acc>
void accumulate(double& slot, double term) {
  slot = static_cast<double>(static_cast<Acc>(slot) + static_cast<Acc>(term));
}

// True when row i keeps key j.
bool row_keeps(const AttentionParams& p, std::int64_t i, std::int64_t j) {
  return core::is_kept(p.mask, i, j, p.seqlen_q, p.seqlen_k);
}

// Query rows (h, i) of kv head `kv`'s group that keep at least one of `keys`,
// in reference_backward's order (h, then i).
std::vector<std::pair<std::int64_t, std::int64_t>> rows_keeping(const AttentionParams& p, std::int64_t hk,
                                                                const std::vector<std::int64_t>& keys) {
  std::vector<std::pair<std::int64_t, std::int64_t>> rows;
  for (std::int64_t h = hk * group_of(p); h < (hk + 1) * group_of(p); ++h) {
    for (std::int64_t i = 0; i < p.seqlen_q; ++i) {
      if (std::any_of(keys.begin(), keys.end(), [&](std::int64_t j) { return row_keeps(p, i, j); })) {
        rows.emplace_back(h, i);
      }
    }
  }
  return rows;
}

// dk and dv of `keys` (all of kv head `kv`), written to (dk, dv) rows `slots`.
template <typename Acc>
void keys_dk_dv(const AttentionParams& p, DType precision, const KvHead& kv, const std::vector<std::int64_t>& keys,
                const std::vector<std::size_t>& slots, SampledGrads& out) {
  const auto rows = rows_keeping(p, kv.head_kv, keys);
  const std::size_t nkeys = keys.size();
  // Per row and key: dS and P z (NaN: the row does not keep the key). Rows
  // in parallel; the sums below run over them in order.
  std::vector<double> ds(rows.size() * nkeys), weight(rows.size() * nkeys);  // (rows, keys) each
#pragma omp parallel for schedule(dynamic, 8)
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const RowGrad g = row_gradient<Acc>(p, precision, kv, rows[r].first, rows[r].second);
    for (std::size_t s = 0; s < nkeys; ++s) {
      const bool kept = keys[s] >= g.keys.begin && keys[s] < g.keys.end;
      ds[r * nkeys + s] = kept ? g.ds[keys[s] - g.keys.begin] : std::numeric_limits<double>::quiet_NaN();
      weight[r * nkeys + s] = kept ? g.weight[keys[s] - g.keys.begin] : 0.0;
    }
  }
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto [h, i] = rows[r];
    const std::int64_t q_at = offset_of(p.q_stride, kv.batch, i, h), dout_at = offset_of(p.dout_stride, kv.batch, i, h);
    for (std::size_t s = 0; s < nkeys; ++s) {
      const double row_ds = ds[r * nkeys + s];
      if (std::isnan(row_ds)) continue;
      double* dk = out.dk.data() + slots[s] * p.head_dim;
      double* dv = out.dv.data() + slots[s] * p.head_dim_v;
      for (std::int64_t c = 0; c < p.head_dim; ++c) {
        accumulate<Acc>(dk[c], p.softmax_scale * row_ds * load(p.q, p.dtype, q_at + c));
      }
      for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
        accumulate<Acc>(dv[c], weight[r * nkeys + s] * load(p.dout, p.dtype, dout_at + c));
      }
    }
  }
}

template <typename Acc>
SampledGrads gradients(const AttentionParams& p, DType precision, const BackwardSample& sample) {
  SampledGrads out{std::vector<double>(sample.dq_rows.size() * p.head_dim),
                   std::vector<double>(sample.keys.size() * p.head_dim),
                   std::vector<double>(sample.keys.size() * p.head_dim_v)};
  // Work per (batch, kv head), so each one's k and v are loaded once.
  std::map<std::pair<std::int64_t, std::int64_t>, std::pair<std::vector<std::size_t>, std::vector<std::size_t>>> work;
  for (std::size_t r = 0; r < sample.dq_rows.size(); ++r) {
    const RowIndex& at = sample.dq_rows[r];
    work[{at.batch, at.head / group_of(p)}].first.push_back(r);
  }
  for (std::size_t s = 0; s < sample.keys.size(); ++s) work[{sample.keys[s].batch, sample.keys[s].head_kv}].second.push_back(s);
  for (const auto& [head, items] : work) {
    const KvHead kv = load_kv_head(p, head.first, head.second);
    for (std::size_t r : items.first) {
      row_dq<Acc>(p, precision, kv, sample.dq_rows[r].head, sample.dq_rows[r].row, out.dq.data() + r * p.head_dim);
    }
    if (items.second.empty()) continue;
    std::vector<std::int64_t> keys;
    for (std::size_t s : items.second) keys.push_back(sample.keys[s].key);
    keys_dk_dv<Acc>(p, precision, kv, keys, items.second, out);
  }
  if (precision != DType::f64) {  // summed in fp32; stored in the input precision
    for (double& x : out.dk) x = round_to(precision, x);
    for (double& x : out.dv) x = round_to(precision, x);
  }
  return out;
}

// Max |got - exact|, |naive - exact| and |exact| of one gradient on the sample.
struct ErrorSums {
  double err = 0, naive_err = 0, max_ref = 0;
  bool nan = false;

  void add(double got, double exact, double naive) {
    nan |= std::isnan(got);
    if (!std::isnan(got)) err = std::max(err, std::abs(got - exact));
    naive_err = std::max(naive_err, std::abs(naive - exact));
    max_ref = std::max(max_ref, std::abs(exact));
  }
  GradientError result(DType dtype) const {
    return {nan ? std::numeric_limits<double>::quiet_NaN() : err, naive_err,
            kGradientFactor * naive_err + reference::oracle_floor(dtype, max_ref)};
  }
};

// True when no element of a (batch, seqlen, heads, dim) gradient is NaN.
bool gradient_written(const void* base, DType dtype, const BshdStrides& stride, std::int64_t batch,
                      std::int64_t seqlen, std::int64_t heads, std::int64_t dim) {
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t s = 0; s < seqlen; ++s)
      for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t c = 0; c < dim; ++c)
          if (std::isnan(load(base, dtype, offset_of(stride, b, s, h) + c))) return false;
  return true;
}

// The first of dq, dk, dv above its bound (NaN counts as above), or "".
std::string first_failure(const BackwardVerdict& v) {
  const std::pair<const char*, const GradientError*> grads[] = {{"dq", &v.dq}, {"dk", &v.dk}, {"dv", &v.dv}};
  for (const auto& [name, g] : grads) {
    if (name != std::string("dq") && v.keys_checked == 0) continue;
    if (std::isnan(g->err)) return std::string(name) + " is NaN (unwritten) on a sampled row";
    if (!(g->err <= g->bound)) return std::string(name) + " error above the bound";
  }
  return "";
}

}  // namespace

BackwardSample sample_backward(const AttentionParams& p, int rows, int kv_heads, int keys_per_head,
                               std::uint64_t seed) {
  if (p.is_varlen() || p.seqused_k) throw Error("sample_backward: varlen params are not supported");
  BackwardSample sample{sample_rows(p, rows, seed), {}};
  std::mt19937_64 rng(seed + 1);
  auto below = [&](std::int64_t n) { return std::uniform_int_distribution<std::int64_t>(0, n - 1)(rng); };
  std::vector<std::pair<std::int64_t, std::int64_t>> pairs;  // (batch, kv head)
  for (int n = 0; n < kv_heads && n < p.batch * p.heads_kv; ++n) {
    if (n == 0) {
      pairs.emplace_back(0, 0);
    } else if (n == 1) {
      pairs.emplace_back(p.batch - 1, p.heads_kv - 1);
    } else {
      pairs.emplace_back(below(p.batch), below(p.heads_kv));
    }
  }
  for (const auto& [b, hk] : pairs) {
    for (int n = 0; n < keys_per_head; ++n) {
      sample.keys.push_back({b, hk, n == 0 ? 0 : n == 1 ? p.seqlen_k - 1 : below(p.seqlen_k)});
    }
  }
  while (!sample.keys.empty() && 2 * recompute_macs(p, sample) > kMaxRecomputeMacs) {  // two precisions
    sample.keys.resize(sample.keys.size() - std::min<std::size_t>(sample.keys.size(), keys_per_head));
  }
  return sample;
}

double recompute_macs(const AttentionParams& p, const BackwardSample& sample) {
  const double per_key = static_cast<double>(p.head_dim + p.head_dim_v);
  auto kept = [&](std::int64_t i) {
    const core::KeyRange r = core::kept_keys(p.mask, i, p.seqlen_q, p.seqlen_k);
    return static_cast<double>(r.end - r.begin);
  };
  double macs = 0;
  for (const RowIndex& at : sample.dq_rows) macs += kept(at.row) * (per_key + p.head_dim);
  std::map<std::pair<std::int64_t, std::int64_t>, std::vector<std::int64_t>> keys;
  for (const KeyIndex& at : sample.keys) keys[{at.batch, at.head_kv}].push_back(at.key);
  for (const auto& [head, head_keys] : keys) {
    for (const auto& [h, i] : rows_keeping(p, head.second, head_keys)) macs += kept(i) * per_key;
  }
  return macs;
}

SampledGrads sampled_gradients(const AttentionParams& p, DType precision, const BackwardSample& sample) {
  if (p.is_varlen() || p.seqused_k) throw Error("sampled_gradients: varlen params are not supported");
  if (p.dtype != DType::f32 && p.dtype != DType::f16 && p.dtype != DType::bf16) {
    throw Error("sampled_gradients: dtype must be f32, f16 or bf16");
  }
  return precision == DType::f64 ? gradients<double>(p, precision, sample) : gradients<float>(p, precision, sample);
}

BackwardVerdict check_backward(const AttentionParams& p, const BackwardSample& sample) {
  const SampledGrads exact = sampled_gradients(p, DType::f64, sample);
  const SampledGrads naive = sampled_gradients(p, p.dtype, sample);
  ErrorSums dq, dk, dv;
  for (std::size_t r = 0; r < sample.dq_rows.size(); ++r) {
    const RowIndex& at = sample.dq_rows[r];
    const std::int64_t base = offset_of(p.dq_stride, at.batch, at.row, at.head);
    for (std::int64_t c = 0; c < p.head_dim; ++c) {
      const std::size_t n = r * p.head_dim + c;
      dq.add(load(p.dq, p.dtype, base + c), exact.dq[n], naive.dq[n]);
    }
  }
  for (std::size_t s = 0; s < sample.keys.size(); ++s) {
    const KeyIndex& at = sample.keys[s];
    const std::int64_t k_base = offset_of(p.dk_stride, at.batch, at.key, at.head_kv);
    const std::int64_t v_base = offset_of(p.dv_stride, at.batch, at.key, at.head_kv);
    for (std::int64_t c = 0; c < p.head_dim; ++c) {
      dk.add(load(p.dk, p.dtype, k_base + c), exact.dk[s * p.head_dim + c], naive.dk[s * p.head_dim + c]);
    }
    for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
      dv.add(load(p.dv, p.dtype, v_base + c), exact.dv[s * p.head_dim_v + c], naive.dv[s * p.head_dim_v + c]);
    }
  }
  BackwardVerdict v;
  v.rows_checked = static_cast<std::int64_t>(sample.dq_rows.size());
  v.keys_checked = static_cast<std::int64_t>(sample.keys.size());
  v.dq = dq.result(p.dtype);
  v.dk = dk.result(p.dtype);
  v.dv = dv.result(p.dtype);
  if (v.keys_checked == 0) {
    constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
    v.dk = v.dv = {kNaN, kNaN, kNaN};
  }
  v.failure = first_failure(v);
  if (v.failure.empty() &&
      !(gradient_written(p.dq, p.dtype, p.dq_stride, p.batch, p.seqlen_q, p.heads_q, p.head_dim) &&
        gradient_written(p.dk, p.dtype, p.dk_stride, p.batch, p.seqlen_k, p.heads_kv, p.head_dim) &&
        gradient_written(p.dv, p.dtype, p.dv_stride, p.batch, p.seqlen_k, p.heads_kv, p.head_dim_v))) {
    v.failure = "dq, dk or dv holds NaN (unwritten) outside the sample";
  }
  v.ok = v.failure.empty();
  return v;
}

}  // namespace flashattn::tools
