// The problems both sampled-oracle tests run (test_sampled_oracle.cpp,
// test_sampled_backward_oracle.cpp): every mask kind, GQA, empty rows,
// sq > sk, softcap + alibi + dropout, a strided layout, each dtype.
#pragma once

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "flashattn/flash_attn.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {

struct SampledCase {
  std::string name;
  DType dtype;
  std::int64_t seqlen_q, seqlen_k, heads, heads_kv;
  FlashAttnOptions options;
  bool strided = false;  // q, k, v and out are views into larger buffers
};

// Alibi slopes 2^(-8 (h + 1) / heads), as the bench uses.
inline std::vector<float> alibi_slopes(std::int64_t heads) {
  std::vector<float> s;  // (heads,)
  for (std::int64_t h = 0; h < heads; ++h) s.push_back(std::exp2(-8.0f * (h + 1) / heads));
  return s;
}

// `alibi`: (4,) slopes.
inline std::vector<SampledCase> sampled_cases(const TensorView& alibi) {
  return {
      {"plain f32", DType::f32, 19, 23, 2, 2, {}},
      {"causal bf16 sq>sk gqa", DType::bf16, 29, 11, 4, 2, {.causal = true}},
      {"window f16 with empty rows", DType::f16, 9, 31, 4, 1, {.window_size = {2, 1}}},
      {"softcap alibi dropout strided",
       DType::f32,
       17,
       17,
       4,
       4,
       {.dropout_p = 0.3f, .softcap = 3.0f, .alibi_slopes = alibi, .seed = 77},
       true},
      {"everything bf16",
       DType::bf16,
       13,
       21,
       4,
       2,
       {.dropout_p = 0.2f, .causal = true, .window_size = {5, -1}, .softcap = 4.0f, .alibi_slopes = alibi, .seed = 5}},
  };
}

// The case's tensors (batch 2, head dim 24), random inputs, poisoned outputs.
inline FixedProblem make_sampled_problem(const SampledCase& c, std::mt19937_64& rng) {
  FixedProblem pr;
  pr.dtype = c.dtype;
  pr.batch = 2;
  pr.seqlen_q = c.seqlen_q;
  pr.seqlen_k = c.seqlen_k;
  pr.heads = c.heads;
  pr.heads_kv = c.heads_kv;
  pr.head_dim = 24;
  pr.strided = c.strided;
  pr.allocate(rng);
  return pr;
}

}  // namespace flashattn::testing
