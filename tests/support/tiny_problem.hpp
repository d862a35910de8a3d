// A tiny fp64 attention problem for the reference's own tests (forward
// formulas, backward finite differences). Header-only.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "flashattn/params.hpp"

namespace flashattn::testing {

// fp64 tensors (b, s, h, d), contiguous (varlen: b = 1 row block of total rows).
struct Tiny {
  std::int64_t batch = 1, sq = 1, sk = 1, heads = 1, heads_kv = 1, dim = 2;
  std::vector<double> q, k, v;

  void randomize(std::mt19937_64& rng) {
    std::normal_distribution<double> n(0, 1);
    q.resize(batch * sq * heads * dim);
    k.resize(batch * sk * heads_kv * dim);
    v.resize(k.size());
    for (auto* t : {&q, &k, &v})
      for (double& x : *t) x = n(rng);
  }

  AttentionParams params() const {
    AttentionParams p;
    p.dtype = DType::f64;
    p.q = q.data();
    p.k = k.data();
    p.v = v.data();
    p.q_stride = {sq * heads * dim, heads * dim, dim};
    p.k_stride = p.v_stride = {sk * heads_kv * dim, heads_kv * dim, dim};
    p.batch = batch;
    p.heads_q = heads;
    p.heads_kv = heads_kv;
    p.seqlen_q = sq;
    p.seqlen_k = sk;
    p.head_dim = p.head_dim_v = dim;
    p.softmax_scale = 1.0f;
    return p;
  }
};

}  // namespace flashattn::testing
