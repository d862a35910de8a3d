// A forward problem run once through the front-end (so out and softmax_lse
// are the forward's), plus a random dout and NaN-poisoned gradients shaped
// like q, k and v (strided views when the problem is). Header-only (the
// support library's source list is fixed).
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "flashattn/flash_attn_backward.hpp"
#include "flashattn/params.hpp"
#include "support/attention_problem.hpp"
#include "support/host_tensor.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {

struct BackwardProblem {
  AttentionProblem fwd;
  HostTensor dout, dq, dk, dv;  // like out, q, k, v

  void allocate(std::mt19937_64& rng) {
    fwd.allocate(rng);
    fwd.run();  // fills out and lse, which the backward reads
    dout = like(fwd.out);
    dout.randomize(rng, 1.0);
    dq = like(fwd.q);
    dk = like(fwd.k);
    dv = like(fwd.v);
    poison();
  }

  // The forward front-end's params plus dout and the gradients, filled here
  // (not by the backward front-end, which the tests check against this).
  AttentionParams params() const {
    AttentionParams p = fwd.params();
    p.dout = dout.view().data;
    p.dout_stride = bshd_of(dout.view());
    p.dq = dq.view().data;
    p.dk = dk.view().data;
    p.dv = dv.view().data;
    p.dq_stride = bshd_of(dq.view());
    p.dk_stride = bshd_of(dk.view());
    p.dv_stride = bshd_of(dv.view());
    return p;
  }

  FlashAttnGrads grads() const { return {dq, dk, dv}; }

  // flash_attn_backward or flash_attn_varlen_backward on the unpacked tensors.
  void run() const {
    const AttentionProblem& a = fwd;
    if (a.varlen()) {
      flash_attn_varlen_backward(dout, a.q, a.k, a.v, a.out, a.lse, grads(), a.cu_seqlens_q, a.cu_seqlens_k, a.seqlen_q,
                                 a.seqlen_k, a.opts(), a.seqused_view());
    } else {
      flash_attn_backward(dout, a.q, a.k, a.v, a.out, a.lse, grads(), a.opts());
    }
  }

  void poison() {
    for (HostTensor* t : {&dq, &dk, &dv}) t->fill(std::numeric_limits<double>::quiet_NaN());
  }

 private:
  static BshdStrides bshd_of(const TensorView& t) {
    if (t.rank == 3) return {0, t.stride[0], t.stride[1]};  // varlen (rows, heads, dim)
    return {t.stride[0], t.stride[1], t.stride[2]};
  }
  // Same dtype and shape as t; padded in every dimension when the problem is strided.
  HostTensor like(const HostTensor& t) const {
    const std::vector<std::int64_t> shape = shape_of(t);
    if (!fwd.strided) return HostTensor(t.view().dtype, shape);
    std::vector<std::int64_t> storage = shape;
    for (std::size_t d = 0; d < storage.size(); ++d) storage[d] += d == 0 ? 1 : 2;
    return HostTensor::padded(t.view().dtype, shape, storage);
  }
};

// A named gradient test: sizes, dtype and the features `configure` turns on.
struct GradientCase {
  std::string name;
  DType dtype;
  std::int64_t head_dim, seqlen_q, seqlen_k, heads, heads_kv;
  void (*configure)(AttentionProblem&);

  // Sizes problem.fwd (batch 2), configures it and allocates it with random
  // inputs drawn from the name.
  void allocate(BackwardProblem& problem) const {
    AttentionProblem& a = problem.fwd;
    a.dtype = dtype;
    a.head_dim = head_dim;
    a.seqlen_q = seqlen_q;
    a.seqlen_k = seqlen_k;
    a.heads = heads;
    a.heads_kv = heads_kv;
    a.batch = 2;
    configure(a);
    auto rng = test_rng(std::hash<std::string>{}(name));
    problem.allocate(rng);
  }
};

inline void PrintTo(const GradientCase& c, std::ostream* os) { *os << c.name; }

}  // namespace flashattn::testing
