// Pieces of the naive reference shared by its forward and backward: element
// access, rounding to an emulated precision, sequence extents and the scores
// of one query row. Internal to src/reference/ and the bench's sampled
// oracles (tools/sampled_*oracle.cpp), which recompute parts of the reference.
#pragma once

#include <cstdint>
#include <vector>

#include "flashattn/params.hpp"

namespace flashattn::reference::detail {

double load(const void* base, DType dtype, std::int64_t index);
void store(void* base, DType dtype, std::int64_t index, double x);
// Rounds an intermediate value to the emulated precision (f64: unchanged).
double round_to(DType precision, double x);

// Where sequence b lives (re-derived here, independent of the kernels).
struct Extent {
  std::int64_t q_start, k_start, seqlen_q, seqlen_k;
  std::int64_t result_row;    // first row of this sequence in (rows_q, ...) results
  std::int64_t result_row_k;  // first key row of this sequence in (rows_k, ...) results
  std::int64_t k_batch;       // batch index of k / v (cache_batch_idx), b otherwise
};
Extent extent_of(const AttentionParams& p, std::int64_t b);
std::int64_t total_rows_q(const AttentionParams& p);
std::int64_t total_rows_k(const AttentionParams& p);

// Element offsets of row `row` (absolute, i.e. start + i) of head h.
inline std::int64_t offset_of(const BshdStrides& s, std::int64_t b, std::int64_t row, std::int64_t h) {
  return b * s.batch + row * s.row + h * s.head;
}

// Element offset of key j (from the sequence's first key) of kv head hk in k
// or v: through the block table when paged, else batch k_batch, row k_start + j.
std::int64_t key_offset_of(const AttentionParams& p, const BshdStrides& s, const Extent& e, std::int64_t b,
                           std::int64_t j, std::int64_t hk);

// The scores of query row i of sequence b, head h, over its keys:
// scaled[j] = scale * q.k_j (before softcap), final_score[j] after softcap and
// alibi, -inf where masked. row_max is -inf when no key is kept.
struct RowScores {
  std::vector<double> scaled;       // (seqlen_k,)
  std::vector<double> final_score;  // (seqlen_k,)
  double row_max;
};
template <typename Acc>
RowScores row_scores(const AttentionParams& p, DType precision, const Extent& e, std::int64_t b, std::int64_t h,
                     std::int64_t i);

}  // namespace flashattn::reference::detail
