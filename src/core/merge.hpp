// Merge of partial attention results over disjoint key sets (SEMANTICS.md §1):
// the one formula split-KV and merge_attention_states share.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/host_device.hpp"

namespace flashattn::core {

// For parts with log-sum-exps lse_of(0 .. parts-1) (-inf: an empty part),
// writes each part's weight exp(lse_s - lse) to weights[s] and returns the
// merged lse = m + log(sum_s exp(lse_s - m)), m = max_s lse_s. Every part
// empty: weights 0 and -inf. The merged output is sum_s weights[s] * out_s.
template <class LseOf>
FLASHATTN_HD inline double merge_weights(std::int64_t parts, LseOf lse_of, double* weights) {
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  double m = kNegInf;
  for (std::int64_t s = 0; s < parts; ++s) {
    const double lse_s = lse_of(s);
    m = lse_s > m ? lse_s : m;
  }
  if (m == kNegInf) {
    for (std::int64_t s = 0; s < parts; ++s) weights[s] = 0.0;
    return kNegInf;
  }
  double sum = 0.0;
  for (std::int64_t s = 0; s < parts; ++s) sum += std::exp(static_cast<double>(lse_of(s)) - m);
  const double lse = m + std::log(sum);
  for (std::int64_t s = 0; s < parts; ++s) weights[s] = std::exp(static_cast<double>(lse_of(s)) - lse);
  return lse;
}

}  // namespace flashattn::core
