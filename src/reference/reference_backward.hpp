// The fp64 oracle of the backward: analytic gradients of
// loss = sum(out * dout) with respect to q, k and v, by the naive formulas
// (no tiling). Checked against central finite differences of
// reference_forward in tests/reference/test_reference_backward.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "flashattn/params.hpp"

namespace flashattn::reference {

struct ReferenceGrads {
  std::int64_t rows_q = 0;  // batch * seqlen_q, or total_q for varlen
  std::int64_t rows_k = 0;  // batch * seqlen_k, or total_k for varlen
  std::vector<double> dq;   // (rows_q, heads_q, head_dim); row = sequence start + i
  std::vector<double> dk;   // (rows_k, heads_kv, head_dim)
  std::vector<double> dv;   // (rows_k, heads_kv, head_dim_v)
};

// Reads q, k, v and dout (params.dout, params.dout_stride) and recomputes
// the forward itself; params.out and params.lse are not read. Per row i:
//   P_j = softmax(scores)_j, z_j = kept ? 1 / (1 - p_drop) : 0
//   dP_j = z_j dout.v_j,  D = sum_j P_j dP_j,  dU_j = P_j (dP_j - D)
//   dS_j = dU_j (1 - tanh^2(s_j / softcap)) with softcap, else dU_j
//   dq += scale dS_j k_j,  dk_j += scale dS_j q,  dv_j += P_j z_j dout
// Keys outside a sequence (past seqused_k) and rows with no kept key get 0.
// precision = f32 / f16 / bf16: the same naive algorithm as a framework runs
// it in that precision (fp32 accumulation, P, dP, dS and the results rounded
// to `precision`) — the comparison point of the oracle rule for gradients.
ReferenceGrads reference_backward(const AttentionParams& params, DType precision = DType::f64);

// The `reference` backend's backward: reference_backward in f64, stored into
// params.dq, dk and dv in params.dtype.
void reference_backend_backward(const AttentionParams& params);

}  // namespace flashattn::reference
