// The oracle rule of DESIGN.md for the forward:
//   max |kernel - fp64| <= 2 * max |naive(input precision) - fp64| + floor,
// floor = reference::oracle_floor (one ulp of the output's magnitude), and
// for the gradients (GradientOracle) the same with a factor 3.
// Also: every output element written (outputs are poisoned with NaN first).
#pragma once

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "flashattn/flash_attn.hpp"
#include "flashattn/params.hpp"
#include "flashattn/runtime.hpp"
#include "reference/reference_backward.hpp"
#include "reference/reference_forward.hpp"
#include "support/host_tensor.hpp"

namespace flashattn::testing {

using reference::unit_roundoff;

class ForwardOracle {
 public:
  // Runs the fp64 reference and the naive algorithm in params.dtype.
  explicit ForwardOracle(const AttentionParams& params);

  // Reads params.out / params.lse / params.probs as the kernel left them.
  ::testing::AssertionResult check_out() const;
  // Finite rows by the oracle rule; empty rows must hold exactly `empty_row_value`.
  ::testing::AssertionResult check_lse(float empty_row_value) const;
  ::testing::AssertionResult check_probs() const;

  const reference::ReferenceOutput& exact() const { return exact_; }

 private:
  double out_at(std::int64_t row, std::int64_t h, std::int64_t c) const;
  AttentionParams params_;
  reference::ReferenceOutput exact_, naive_;
};

// The fp64 reference backward and the naive one in params.dtype, for
// gradients read back through HostTensor (rows, heads, dim order: (b, s, h, d)
// or varlen (total, h, d), any strides).
class GradientOracle {
 public:
  explicit GradientOracle(const AttentionParams& params);

  ::testing::AssertionResult check_dq(const HostTensor& dq) const { return check("dq", dq, exact_.dq, naive_.dq); }
  ::testing::AssertionResult check_dk(const HostTensor& dk) const { return check("dk", dk, exact_.dk, naive_.dk); }
  ::testing::AssertionResult check_dv(const HostTensor& dv) const { return check("dv", dv, exact_.dv, naive_.dv); }

 private:
  ::testing::AssertionResult check(const char* name, const HostTensor& kernel, const std::vector<double>& exact,
                                   const std::vector<double>& naive) const;
  DType dtype_;
  reference::ReferenceGrads exact_, naive_;
};

// A fixed-length problem with random inputs and NaN-poisoned outputs.
struct FixedProblem {
  DType dtype = DType::f32;
  std::int64_t batch = 1, seqlen_q = 16, seqlen_k = 16, heads = 6, heads_kv = 6, head_dim = 64;
  bool strided = false;  // q, k, v and out are views into larger buffers
  double stddev = 1.0;   // of q and k (logit magnitude)
  HostTensor q, k, v, out, lse;

  void allocate(std::mt19937_64& rng);
  void poison_outputs();
  FlashAttnOutputs outputs() const { return {out, lse, {}}; }
};

std::mt19937_64 test_rng(std::uint64_t salt = 0);

// Runs body(isa) once with each ISA this CPU supports made active (every
// forward test runs on every ISA), then makes the best one active again.
template <typename Body>
void for_each_isa(Body&& body) {
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    body(isa);
  }
  set_isa(supported_isas().back());
}

}  // namespace flashattn::testing
