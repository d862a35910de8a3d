// The fp64 oracle: naive attention over AttentionParams, written for clarity.
// It shares only the mask predicate and the dropout RNG with the kernels.
#pragma once

#include <cstdint>
#include <vector>

#include "flashattn/params.hpp"

namespace flashattn::reference {

struct ReferenceOutput {
  std::int64_t rows = 0;      // batch * seqlen_q, or total_q for varlen
  std::vector<double> out;    // (rows, heads_q, head_dim_v); row r = sequence start + i
  std::vector<double> lse;    // (heads_q, rows); -inf for rows with no kept key
  std::vector<double> probs;  // (batch, heads_q, seqlen_q, seqlen_k) when params.probs is set
};

// Row i of sequence b, query head h (fixed or varlen params).
struct ReferenceRow {
  std::vector<double> out;    // (head_dim_v,)
  double lse = 0;             // -inf when the row keeps no key
  std::vector<double> probs;  // (seqlen_k of sequence b,) when params.probs is set
};
ReferenceRow reference_row(const AttentionParams& params, DType precision, std::int64_t b, std::int64_t h,
                           std::int64_t i);

// Unit roundoff of a dtype (2^-24 f32, 2^-11 f16, 2^-8 bf16, 2^-53 f64).
double unit_roundoff(DType dtype);

// The absolute floor of the oracle rule for a result of magnitude max_ref
// stored in `dtype`: one ulp at that magnitude (2 * unit_roundoff * max_ref),
// what storing and normalising the output alone can cost. (flash-attn's tests
// use a similar atol.) Measured need: with half an ulp, 4 of 40 random f32
// grids failed, all on head_dim-1 cases with 6-12 outputs, where the naive
// algorithm's max error over so few elements is often far below an ulp.
inline double oracle_floor(DType dtype, double max_ref) { return 2.0 * unit_roundoff(dtype) * max_ref; }

// precision = f64: the oracle (every step in double).
// precision = f32 / f16 / bf16: the same naive algorithm as a framework runs it
// in that precision (fp32 accumulation, each intermediate tensor — scores,
// probabilities, output — rounded to `precision`). The oracle rule compares a
// kernel's error with this one's.
ReferenceOutput reference_forward(const AttentionParams& params, DType precision = DType::f64);

// The `reference` backend: runs reference_forward in f64 and writes
// params.out (rounded to params.dtype), params.lse and params.probs.
void reference_backend_forward(const AttentionParams& params);

}  // namespace flashattn::reference
