// Where sequence b of a (possibly varlen) batch lives and how long it is.
#pragma once

#include <cstdint>

#include "flashattn/params.hpp"

namespace flashattn::core {

struct SequenceExtent {
  std::int64_t q_start = 0;  // first row of q / out / lse (varlen), else 0
  std::int64_t k_start = 0;  // first row of k / v (varlen), else 0
  std::int64_t seqlen_q = 0;
  std::int64_t seqlen_k = 0;  // keys used (seqused_k when given)
};

inline SequenceExtent sequence_extent(const AttentionParams& p, std::int64_t b) {
  SequenceExtent e;
  if (p.cu_seqlens_q != nullptr) {
    e.q_start = p.cu_seqlens_q[b];
    e.seqlen_q = p.cu_seqlens_q[b + 1] - e.q_start;
    e.k_start = p.cu_seqlens_k[b];
    e.seqlen_k = p.cu_seqlens_k[b + 1] - e.k_start;
  } else {
    e.seqlen_q = p.seqlen_q;
    e.seqlen_k = p.seqlen_k;
  }
  if (p.seqused_k != nullptr) e.seqlen_k = p.seqused_k[b];
  return e;
}

// Element offset of (batch b, row, head h) in a (batch, seqlen, heads, dim) tensor.
inline std::int64_t element_offset(const BshdStrides& s, std::int64_t b, std::int64_t row, std::int64_t h) {
  return b * s.batch + row * s.row + h * s.head;
}

}  // namespace flashattn::core
