#include "reference/reference_rows.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/mask.hpp"

namespace flashattn::reference {
namespace detail {

double load(const void* base, DType dtype, std::int64_t index) {
  switch (dtype) {
    case DType::f32: return static_cast<const float*>(base)[index];
    case DType::f64: return static_cast<const double*>(base)[index];
    case DType::bf16: return to_float(static_cast<const bfloat16*>(base)[index]);
    case DType::f16: return to_float(static_cast<const float16*>(base)[index]);
    default: return 0.0;
  }
}

void store(void* base, DType dtype, std::int64_t index, double x) {
  switch (dtype) {
    case DType::f32: static_cast<float*>(base)[index] = static_cast<float>(x); break;
    case DType::f64: static_cast<double*>(base)[index] = x; break;
    case DType::bf16: static_cast<bfloat16*>(base)[index] = to_bfloat16(static_cast<float>(x)); break;
    case DType::f16: static_cast<float16*>(base)[index] = to_float16(static_cast<float>(x)); break;
    default: break;
  }
}

double round_to(DType precision, double x) {
  switch (precision) {
    case DType::f32: return static_cast<float>(x);
    case DType::bf16: return to_float(to_bfloat16(static_cast<float>(x)));
    case DType::f16: return to_float(to_float16(static_cast<float>(x)));
    default: return x;
  }
}

Extent extent_of(const AttentionParams& p, std::int64_t b) {
  const std::int64_t k_batch = p.kv_batch_index ? p.kv_batch_index[b] : b;
  if (p.cu_seqlens_q == nullptr) {
    const std::int64_t leftpad = p.k_leftpad ? p.k_leftpad[b] : 0;
    // A kv cache's row ends after its cached and appended keys; otherwise at seqlen_k.
    const std::int64_t end = p.cache_seqlens ? p.cache_seqlens[b] + p.seqlen_new : p.seqlen_k;
    const std::int64_t seqlen_k = p.seqused_k ? p.seqused_k[b] : end - leftpad;
    return {0, leftpad, p.seqlen_q, seqlen_k, b * p.seqlen_q, b * p.seqlen_k, k_batch};
  }
  const std::int64_t qs = p.cu_seqlens_q[b], ks = p.cu_seqlens_k[b];
  return {qs, ks, p.cu_seqlens_q[b + 1] - qs, p.seqused_k ? p.seqused_k[b] : p.cu_seqlens_k[b + 1] - ks, qs, ks,
          k_batch};
}

std::int64_t key_offset_of(const AttentionParams& p, const BshdStrides& s, const Extent& e, std::int64_t b,
                           std::int64_t j, std::int64_t hk) {
  if (p.block_table != nullptr) {
    const std::int64_t page = p.block_table[b * p.block_table_stride + j / p.page_size];
    return offset_of(s, page, j % p.page_size, hk);
  }
  return offset_of(s, e.k_batch, e.k_start + j, hk);
}

std::int64_t total_rows_q(const AttentionParams& p) {
  return p.cu_seqlens_q ? p.cu_seqlens_q[p.batch] : p.batch * p.seqlen_q;
}
std::int64_t total_rows_k(const AttentionParams& p) {
  return p.cu_seqlens_k ? p.cu_seqlens_k[p.batch] : p.batch * p.seqlen_k;
}

template <typename Acc>
RowScores row_scores(const AttentionParams& p, DType precision, const Extent& e, std::int64_t b, std::int64_t h,
                     std::int64_t i) {
  const std::int64_t hk = h / (p.heads_q / p.heads_kv);
  const double neg_inf = -std::numeric_limits<double>::infinity();
  const std::int64_t q_at = offset_of(p.q_stride, b, e.q_start + i, h);
  const double slope = p.alibi_slopes ? p.alibi_slopes[b * p.alibi_batch_stride + h] : 0.0;
  RowScores r{std::vector<double>(e.seqlen_k, 0.0), std::vector<double>(e.seqlen_k, neg_inf), neg_inf};
  for (std::int64_t j = 0; j < e.seqlen_k; ++j) {
    if (!core::is_kept(p.mask, i, j, e.seqlen_q, e.seqlen_k)) continue;
    const std::int64_t k_at = key_offset_of(p, p.k_stride, e, b, j, hk);
    Acc dot = 0;
    for (std::int64_t c = 0; c < p.head_dim; ++c) {
      dot += static_cast<Acc>(load(p.q, p.dtype, q_at + c)) * static_cast<Acc>(load(p.k, p.dtype, k_at + c));
    }
    double s = round_to(precision, static_cast<double>(dot) * p.softmax_scale);
    r.scaled[j] = s;
    if (p.softcap > 0) s = round_to(precision, p.softcap * std::tanh(s / p.softcap));
    if (p.alibi_slopes) {
      const double dist = std::abs(static_cast<double>(i + e.seqlen_k - e.seqlen_q - j));
      s = round_to(precision, s - slope * dist);
    }
    r.final_score[j] = s;
    r.row_max = std::max(r.row_max, s);
  }
  return r;
}

template RowScores row_scores<double>(const AttentionParams&, DType, const Extent&, std::int64_t, std::int64_t,
                                      std::int64_t);
template RowScores row_scores<float>(const AttentionParams&, DType, const Extent&, std::int64_t, std::int64_t,
                                     std::int64_t);

}  // namespace detail

}  // namespace flashattn::reference
