#include "support/oracle.hpp"

#include <cmath>
#include <limits>
#include <sstream>

namespace flashattn::testing {

ForwardOracle::ForwardOracle(const AttentionParams& params)
    : params_(params),
      exact_(reference::reference_forward(params, DType::f64)),
      naive_(reference::reference_forward(params, params.dtype)) {}

double ForwardOracle::out_at(std::int64_t row, std::int64_t h, std::int64_t c) const {
  const AttentionParams& p = params_;
  std::int64_t b = 0, r = row;
  if (!p.is_varlen()) {
    b = row / p.seqlen_q;
    r = row % p.seqlen_q;
  }
  const std::int64_t at = b * p.out_stride.batch + r * p.out_stride.row + h * p.out_stride.head + c;
  const auto* base = static_cast<const unsigned char*>(p.out) + at * dtype_size(p.dtype);
  switch (p.dtype) {
    case DType::f32: return *reinterpret_cast<const float*>(base);
    case DType::bf16: return to_float(*reinterpret_cast<const bfloat16*>(base));
    case DType::f16: return to_float(*reinterpret_cast<const float16*>(base));
    default: return std::numeric_limits<double>::quiet_NaN();
  }
}

namespace {
::testing::AssertionResult verdict(const char* what, double err, double naive_err, double floor, double factor) {
  const double bound = factor * naive_err + floor;
  std::ostringstream os;
  os << what << ": max error " << err << " vs bound " << bound << " (= " << factor << " x naive " << naive_err
     << " + floor " << floor << ")";
  if (std::isnan(naive_err)) {
    return ::testing::AssertionFailure() << what << ": the naive algorithm gave NaN (overflow?): no bound to test";
  }
  if (std::isnan(err) || err > bound) return ::testing::AssertionFailure() << os.str();
  return ::testing::AssertionSuccess() << os.str();
}
}  // namespace

::testing::AssertionResult ForwardOracle::check_out() const {
  const AttentionParams& p = params_;
  double err = 0, naive_err = 0, max_ref = 0;
  for (std::int64_t row = 0; row < exact_.rows; ++row) {
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
        const std::size_t at = (row * p.heads_q + h) * p.head_dim_v + c;
        const double got = out_at(row, h, c);
        if (std::isnan(got)) {
          return ::testing::AssertionFailure() << "out is NaN (unwritten or invalid) at row " << row << ", head "
                                               << h << ", column " << c;
        }
        err = std::max(err, std::abs(got - exact_.out[at]));
        naive_err = std::max(naive_err, std::abs(naive_.out[at] - exact_.out[at]));
        max_ref = std::max(max_ref, std::abs(exact_.out[at]));
      }
    }
  }
  return verdict("out", err, naive_err, reference::oracle_floor(p.dtype, max_ref), 2.0);
}

::testing::AssertionResult ForwardOracle::check_lse(float empty_row_value) const {
  const AttentionParams& p = params_;
  double err = 0, naive_err = 0, max_ref = 0;
  for (std::int64_t row = 0; row < exact_.rows; ++row) {
    std::int64_t b = 0, r = row;
    if (!p.is_varlen()) {
      b = row / p.seqlen_q;
      r = row % p.seqlen_q;
    }
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      const double want = exact_.lse[h * exact_.rows + row];
      const float got = p.lse[b * p.lse_batch_stride + h * p.lse_head_stride + r];
      if (std::isinf(want)) {
        if (got != empty_row_value) {
          return ::testing::AssertionFailure() << "lse of empty row " << row << ", head " << h << " is " << got
                                               << ", expected " << empty_row_value;
        }
        continue;
      }
      if (!std::isfinite(got)) {
        return ::testing::AssertionFailure() << "lse at row " << row << ", head " << h << " is " << got
                                             << ", expected " << want;
      }
      err = std::max(err, std::abs(got - want));
      naive_err = std::max(naive_err, std::abs(naive_.lse[h * exact_.rows + row] - want));
      max_ref = std::max(max_ref, std::abs(want));
    }
  }
  // lse is fp32 whatever the input dtype: its floor is fp32's rounding.
  return verdict("lse", err, naive_err, unit_roundoff(DType::f32) * std::max(1.0, max_ref) * 4, 2.0);
}

::testing::AssertionResult ForwardOracle::check_probs() const {
  const AttentionParams& p = params_;
  double err = 0, naive_err = 0;
  for (std::int64_t b = 0; b < p.batch; ++b)
    for (std::int64_t h = 0; h < p.heads_q; ++h)
      for (std::int64_t i = 0; i < p.seqlen_q; ++i)
        for (std::int64_t j = 0; j < p.seqlen_k; ++j) {
          const std::size_t at = ((b * p.heads_q + h) * p.seqlen_q + i) * p.seqlen_k + j;
          const float got =
              p.probs[b * p.probs_batch_stride + h * p.probs_head_stride + i * p.probs_row_stride + j];
          const double want = exact_.probs[at];
          if (std::isnan(got) || std::signbit(got) != std::signbit(want)) {
            if (!(got == 0 && want == 0)) {
              return ::testing::AssertionFailure() << "probs at (" << b << ", " << h << ", " << i << ", " << j
                                                   << ") is " << got << ", expected " << want;
            }
          }
          err = std::max(err, std::abs(got - want));
          naive_err = std::max(naive_err, std::abs(naive_.probs[at] - want));
        }
  return verdict("probs", err, naive_err, unit_roundoff(DType::f32) * 4, 2.0);
}

GradientOracle::GradientOracle(const AttentionParams& params)
    : dtype_(params.dtype),
      exact_(reference::reference_backward(params, DType::f64)),
      naive_(reference::reference_backward(params, params.dtype)) {}

::testing::AssertionResult GradientOracle::check(const char* name, const HostTensor& kernel,
                                                 const std::vector<double>& exact,
                                                 const std::vector<double>& naive) const {
  if (static_cast<std::size_t>(kernel.numel()) != exact.size())
    return ::testing::AssertionFailure() << name << ": " << kernel.numel() << " elements, reference " << exact.size();
  double max_ref = 0, naive_err = 0, err = 0;
  std::int64_t worst = 0;
  for (std::int64_t n = 0; n < kernel.numel(); ++n) {
    const double got = kernel.get(n);
    if (std::isnan(got)) return ::testing::AssertionFailure() << name << "[" << n << "] not written (NaN)";
    max_ref = std::max(max_ref, std::abs(exact[n]));
    naive_err = std::max(naive_err, std::abs(naive[n] - exact[n]));
    if (std::abs(got - exact[n]) > err) {
      err = std::abs(got - exact[n]);
      worst = n;
    }
  }
  const double bound = 3 * naive_err + reference::oracle_floor(dtype_, max_ref);
  if (err <= bound) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << name << ": max error " << err << " at " << worst << " (got "
                                       << kernel.get(worst) << ", exact " << exact[worst] << ") vs bound " << bound
                                       << " (= 3 x naive " << naive_err << " + floor)";
}

void FixedProblem::allocate(std::mt19937_64& rng) {
  auto make = [&](std::int64_t s, std::int64_t h) {
    const std::vector<std::int64_t> shape{batch, s, h, head_dim};
    if (!strided) return HostTensor(dtype, shape);
    return HostTensor::padded(dtype, shape, {batch, s + 3, h + 1, head_dim + 5});
  };
  q = make(seqlen_q, heads);
  k = make(seqlen_k, heads_kv);
  v = make(seqlen_k, heads_kv);
  out = make(seqlen_q, heads);
  lse = HostTensor(DType::f32, {batch, heads, seqlen_q});
  q.randomize(rng, stddev);
  k.randomize(rng, stddev);
  v.randomize(rng, 1.0);
  poison_outputs();
}

void FixedProblem::poison_outputs() {
  out.fill(std::numeric_limits<double>::quiet_NaN());
  lse.fill(std::numeric_limits<double>::quiet_NaN());
}

std::mt19937_64 test_rng(std::uint64_t salt) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::uint64_t h = 1469598103934665603ull ^ salt;
  if (info) {
    for (const char* s : {info->test_suite_name(), info->name()})
      for (; *s; ++s) h = (h ^ static_cast<unsigned char>(*s)) * 1099511628211ull;
  }
  return std::mt19937_64(h);
}

}  // namespace flashattn::testing
