// A flash-attn problem of any form the front-end takes — fixed or varlen,
// seqused_k, alibi (h,) or (b, h), attention probabilities, strided views —
// with random inputs and NaN-poisoned outputs. Header-only (the support
// library's source list is fixed).
//
// Not copyable: HostTensor views point into their own storage, so a copy
// would alias the original. Set the fields, then allocate().
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "flashattn/flash_attn.hpp"
#include "flashattn/params.hpp"
#include "frontends/flash_attn_params.hpp"
#include "support/host_tensor.hpp"

namespace flashattn::testing {

enum class Alibi { none, per_head, per_batch_head };

struct AttentionProblem {
  DType dtype = DType::f32;
  std::int64_t batch = 1, seqlen_q = 16, seqlen_k = 16, heads = 6, heads_kv = 6, head_dim = 64;
  // Varlen when lens_q is non-empty: one length per sequence (batch becomes
  // their count); seqlen_q / seqlen_k are the max_seqlen arguments, raised
  // to the longest sequence by allocate().
  std::vector<std::int32_t> lens_q, lens_k;
  std::vector<std::int32_t> seqused_k;  // varlen only; empty = not given
  bool strided = false;                 // every tensor a view into a larger buffer
  std::int64_t column_pad = 5;          // strided: extra columns per stored row (CUDA needs multiples of 8)
  double stddev = 1.0;                  // of q and k (logit magnitude)
  // q and k rounded to integers: with a power-of-two softmax_scale every
  // score is exact in fp32 (see test_forward_oracle.cpp, large logits).
  bool integer_qk = false;
  Alibi alibi = Alibi::none;
  bool probs = false;                   // return_attn_probs
  FlashAttnOptions options;             // alibi_slopes / return_attn_probs come from the fields above

  HostTensor q, k, v;                   // (b, s, h, d) or varlen (total, h, d)
  HostTensor out, lse, attn_probs;      // like q; (b, h, sq) or (h, total_q); (b, h, sq, sk)
  HostTensor alibi_slopes, cu_seqlens_q, cu_seqlens_k, seqused;

  AttentionProblem() = default;
  AttentionProblem(const AttentionProblem&) = delete;
  AttentionProblem& operator=(const AttentionProblem&) = delete;

  bool varlen() const { return !lens_q.empty(); }
  std::int64_t rows_q() const { return varlen() ? sum(lens_q) : batch * seqlen_q; }
  std::int64_t rows_k() const { return varlen() ? sum(lens_k) : batch * seqlen_k; }

  void allocate(std::mt19937_64& rng) {
    if (varlen()) {
      batch = static_cast<std::int64_t>(lens_q.size());
      seqlen_q = std::max<std::int64_t>(seqlen_q, *std::max_element(lens_q.begin(), lens_q.end()));
      seqlen_k = std::max<std::int64_t>(seqlen_k, *std::max_element(lens_k.begin(), lens_k.end()));
      cu_seqlens_q = int_tensor(cumulative(lens_q));
      cu_seqlens_k = int_tensor(cumulative(lens_k));
      if (!seqused_k.empty()) seqused = int_tensor(seqused_k);
    }
    q = rows_tensor(seqlen_q, rows_q(), heads);
    k = rows_tensor(seqlen_k, rows_k(), heads_kv);
    v = rows_tensor(seqlen_k, rows_k(), heads_kv);
    out = rows_tensor(seqlen_q, rows_q(), heads);
    if (varlen()) {
      lse = tensor(DType::f32, {heads, rows_q()}, {heads + 1, rows_q() + 2});
    } else {
      lse = tensor(DType::f32, {batch, heads, seqlen_q}, {batch, heads + 1, seqlen_q + 2});
    }
    if (probs) {
      attn_probs = tensor(DType::f32, {batch, heads, seqlen_q, seqlen_k}, {batch, heads, seqlen_q + 1, seqlen_k + 3});
    }
    q.randomize(rng, stddev);
    k.randomize(rng, stddev);
    if (integer_qk) {
      for (HostTensor* t : {&q, &k})
        for (std::int64_t i = 0; i < t->numel(); ++i) t->set(i, std::round(t->get(i)));
    }
    v.randomize(rng, 1.0);
    if (alibi != Alibi::none) {
      alibi_slopes = alibi == Alibi::per_head ? HostTensor(DType::f32, {heads})
                                              : HostTensor(DType::f32, {batch, heads});
      std::uniform_real_distribution<double> slope(0.01, 1.0);
      for (std::int64_t i = 0; i < alibi_slopes.numel(); ++i) alibi_slopes.set(i, slope(rng));
    }
    poison_outputs();
  }

  void poison_outputs() {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    out.fill(nan);
    lse.fill(nan);
    if (probs) attn_probs.fill(nan);
  }

  // Nothing was written outside the views of out, lse and attn_probs.
  bool outputs_stay_in_view() const {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    return out.outside_view_holds(nan) && lse.outside_view_holds(nan) &&
           (!probs || attn_probs.outside_view_holds(nan));
  }

  FlashAttnOptions opts() const {
    FlashAttnOptions o = options;
    if (alibi != Alibi::none) o.alibi_slopes = alibi_slopes;
    o.return_attn_probs = probs;
    return o;
  }
  FlashAttnOutputs outputs() const { return {out, lse, probs ? attn_probs.view() : TensorView{}}; }
  TensorView seqused_view() const { return seqused_k.empty() ? TensorView{} : seqused.view(); }

  // The params the front-end fills for this problem (for the oracle).
  AttentionParams params() const {
    if (varlen()) {
      return frontend::flash_attn_varlen_params("test", q, k, v, cu_seqlens_q, cu_seqlens_k, seqlen_q, seqlen_k,
                                                outputs(), opts(), seqused_view());
    }
    return frontend::flash_attn_params("test", q, k, v, outputs(), opts());
  }

  // flash_attn or flash_attn_varlen on the unpacked tensors.
  void run() const {
    if (varlen()) {
      flash_attn_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, seqlen_q, seqlen_k, outputs(), opts(), seqused_view());
    } else {
      flash_attn(q, k, v, outputs(), opts());
    }
  }

 private:
  static std::int64_t sum(const std::vector<std::int32_t>& x) {
    std::int64_t s = 0;
    for (std::int32_t n : x) s += n;
    return s;
  }
  HostTensor tensor(DType t, std::vector<std::int64_t> shape, std::vector<std::int64_t> storage) const {
    return strided ? HostTensor::padded(t, shape, storage) : HostTensor(t, shape);
  }
  // (b, s, h, d) or varlen (rows, h, d); strided: padded rows, heads and columns.
  HostTensor rows_tensor(std::int64_t seqlen, std::int64_t rows, std::int64_t h) const {
    if (varlen()) return tensor(dtype, {rows, h, head_dim}, {rows + 3, h + 1, head_dim + column_pad});
    return tensor(dtype, {batch, seqlen, h, head_dim}, {batch, seqlen + 3, h + 1, head_dim + column_pad});
  }
};

}  // namespace flashattn::testing
