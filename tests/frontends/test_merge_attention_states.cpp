// merge_attention_states: against the merge formula computed in fp64 (every
// layout, mixed dtypes, empty parts and rows, in place, any thread count),
// against the fp64 reference of a whole attention problem whose keys were
// split into chunks run by flash_attn, and bad input (a flashattn::Error
// naming the argument, nothing written).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "flashattn/flashattn.hpp"
#include "support/attention_problem.hpp"
#include "support/error_case.hpp"
#include "support/host_tensor.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Sizes of a merge; varlen: out (total, h, d), lse (h, total), total = seqlen.
struct MergeShape {
  bool varlen = false;
  std::int64_t batch = 2, seqlen = 5, heads = 3, head_dim = 7;
  bool strided = false;  // every tensor a view into padded storage

  std::vector<std::int64_t> out_shape() const {
    return varlen ? std::vector<std::int64_t>{seqlen, heads, head_dim}
                  : std::vector<std::int64_t>{batch, seqlen, heads, head_dim};
  }
  std::vector<std::int64_t> lse_shape() const {
    return varlen ? std::vector<std::int64_t>{heads, seqlen} : std::vector<std::int64_t>{batch, heads, seqlen};
  }
  std::int64_t batches() const { return varlen ? 1 : batch; }
  // Flat indices in the viewed (row-major) shapes; varlen is one batch of `seqlen` rows.
  std::int64_t out_flat(std::int64_t b, std::int64_t i, std::int64_t h, std::int64_t c) const {
    return ((b * seqlen + i) * heads + h) * head_dim + c;
  }
  std::int64_t lse_flat(std::int64_t b, std::int64_t i, std::int64_t h) const { return (b * heads + h) * seqlen + i; }
};

HostTensor make_tensor(const MergeShape& s, DType dtype, std::vector<std::int64_t> shape, double fill) {
  if (!s.strided) return HostTensor(dtype, shape, fill);
  std::vector<std::int64_t> storage = shape;
  for (std::size_t d = 0; d < storage.size(); ++d) storage[d] += d + 1 == storage.size() ? 3 : 1;
  return HostTensor::padded(dtype, shape, storage, fill);
}

// Parts and a result; a deque, so views stay valid as tensors are added.
struct MergeCase {
  MergeShape shape;
  std::deque<HostTensor> outs, lses;  // parts first, the result last
  std::vector<AttentionState> parts;
  AttentionState merged;

  void add_part(DType dtype, std::mt19937_64& rng, double empty_fraction = 0.15) {
    outs.push_back(make_tensor(shape, dtype, shape.out_shape(), kNaN));
    lses.push_back(make_tensor(shape, DType::f32, shape.lse_shape(), kNaN));
    outs.back().randomize(rng);
    std::normal_distribution<double> normal(0.0, 3.0);
    std::uniform_real_distribution<double> uniform;
    HostTensor& lse = lses.back();
    for (std::int64_t e = 0; e < lse.numel(); ++e) {
      const double u = uniform(rng);
      // Empty rows both ways (-inf, and flash-attn's +inf), large logits.
      lse.set(e, u < empty_fraction / 2 ? -kInf : u < empty_fraction ? kInf : u < 0.25 ? 1e4 + normal(rng) : normal(rng));
    }
    parts.push_back({outs.back(), lses.back()});
  }
  void add_result(DType dtype) {
    outs.push_back(make_tensor(shape, dtype, shape.out_shape(), kNaN));
    lses.push_back(make_tensor(shape, DType::f32, shape.lse_shape(), kNaN));
    merged = {outs.back(), lses.back()};
  }
  const HostTensor& result_out() const { return outs.back(); }
  const HostTensor& result_lse() const { return lses.back(); }
  void run() const { merge_attention_states(parts, merged); }
};

// The merge of SEMANTICS.md §1 in fp64, written out independently of
// core::merge_weights, on the values the parts hold.
struct ExpectedMerge {
  std::vector<double> out, lse;  // flat like the result's views
};
ExpectedMerge expected_merge(const MergeCase& m, const std::vector<const HostTensor*>& outs,
                             const std::vector<const HostTensor*>& lses) {
  const MergeShape& s = m.shape;
  ExpectedMerge e{std::vector<double>(outs[0]->numel(), 0.0), std::vector<double>(lses[0]->numel(), -kInf)};
  for (std::int64_t b = 0; b < s.batches(); ++b) {
    for (std::int64_t i = 0; i < s.seqlen; ++i) {
      for (std::int64_t h = 0; h < s.heads; ++h) {
        std::vector<double> l;
        for (const HostTensor* t : lses) l.push_back(std::isinf(t->get(s.lse_flat(b, i, h))) ? -kInf : t->get(s.lse_flat(b, i, h)));
        const double m_max = *std::max_element(l.begin(), l.end());
        if (m_max == -kInf) continue;
        double sum = 0;
        for (double x : l) sum += std::exp(x - m_max);
        const double lse = m_max + std::log(sum);
        e.lse[s.lse_flat(b, i, h)] = lse;
        for (std::size_t p = 0; p < l.size(); ++p) {
          if (l[p] == -kInf) continue;
          for (std::int64_t c = 0; c < s.head_dim; ++c)
            e.out[s.out_flat(b, i, h, c)] += std::exp(l[p] - lse) * outs[p]->get(s.out_flat(b, i, h, c));
        }
      }
    }
  }
  return e;
}

// |got - want| within the final rounding to `dtype` (through fp32) and the
// smallest subnormal of dtype.
bool within_rounding(double got, double want, DType dtype) {
  if (std::isinf(want)) return got == want;
  const double tiny = dtype == DType::f16 ? std::ldexp(1.0, -24) : dtype == DType::bf16 ? std::ldexp(1.0, -133) : 1e-45;
  const double bound = (reference::unit_roundoff(dtype) + reference::unit_roundoff(DType::f32)) * std::abs(want) * 1.001 +
                       tiny + 1e-12 * std::abs(want);
  return std::abs(got - want) <= bound;
}

::testing::AssertionResult matches_fp64(const MergeCase& m) {
  std::vector<const HostTensor*> outs, lses;
  for (std::size_t p = 0; p < m.parts.size(); ++p) outs.push_back(&m.outs[p]), lses.push_back(&m.lses[p]);
  const ExpectedMerge e = expected_merge(m, outs, lses);
  for (std::int64_t at = 0; at < m.result_out().numel(); ++at) {
    if (!within_rounding(m.result_out().get(at), e.out[at], m.result_out().view().dtype)) {
      return ::testing::AssertionFailure() << "out[" << at << "] = " << m.result_out().get(at) << ", expected "
                                           << e.out[at];
    }
  }
  for (std::int64_t at = 0; at < m.result_lse().numel(); ++at) {
    if (!within_rounding(m.result_lse().get(at), e.lse[at], DType::f32)) {
      return ::testing::AssertionFailure() << "lse[" << at << "] = " << m.result_lse().get(at) << ", expected "
                                           << e.lse[at];
    }
  }
  if (!m.result_out().outside_view_holds(kNaN) || !m.result_lse().outside_view_holds(kNaN))
    return ::testing::AssertionFailure() << "wrote outside the result's views";
  return ::testing::AssertionSuccess();
}

// Every layout, 1 to 5 parts of mixed dtypes, every result dtype.
TEST(MergeAttentionStates, MatchesTheMergeInFp64) {
  auto rng = test_rng();
  const DType dtypes[] = {DType::f32, DType::bf16, DType::f16};
  for (bool varlen : {false, true}) {
    for (bool strided : {false, true}) {
      for (int n_parts = 1; n_parts <= 5; ++n_parts) {
        for (DType result : dtypes) {
          SCOPED_TRACE(std::string(varlen ? "varlen" : "fixed") + (strided ? " strided" : "") + ", " +
                       std::to_string(n_parts) + " parts, result " + std::string(dtype_name(result)));
          MergeCase m{.shape = {.varlen = varlen, .seqlen = varlen ? 11 : 5, .strided = strided}};
          for (int p = 0; p < n_parts; ++p) m.add_part(dtypes[(p + n_parts) % 3], rng);
          m.add_result(result);
          m.run();
          EXPECT_TRUE(matches_fp64(m));
        }
      }
    }
  }
}

// Empty parts (lse -inf or +inf) are never read: garbage there changes nothing,
// and the result is the one non-empty part bit for bit.
TEST(MergeAttentionStates, EmptyPartsContributeNothing) {
  auto rng = test_rng();
  MergeCase m;
  m.add_part(DType::f32, rng, 0.0);
  m.add_part(DType::f32, rng);
  m.add_part(DType::bf16, rng);
  for (std::int64_t e = 0; e < m.lses[1].numel(); ++e) m.lses[1].set(e, -kInf), m.lses[2].set(e, kInf);
  m.outs[1].fill(kNaN);
  m.outs[2].fill(1e30);
  m.add_result(DType::f32);
  m.run();
  EXPECT_TRUE(m.result_out().same_bits(m.outs[0]));
  EXPECT_TRUE(m.result_lse().same_bits(m.lses[0]));
}

// Rows where every part is empty: out 0 (not NaN, whatever the parts hold), lse -inf.
TEST(MergeAttentionStates, AllEmptyRowsGiveZeroAndNegativeInfinity) {
  auto rng = test_rng();
  MergeCase m{.shape = {.varlen = true, .seqlen = 6}};
  for (int p = 0; p < 3; ++p) m.add_part(DType::bf16, rng, 0.0);
  const MergeShape& s = m.shape;
  for (std::int64_t h = 0; h < s.heads; ++h) {
    for (std::int64_t i : {0, 3}) {  // rows 0 and 3 empty in every part
      for (int p = 0; p < 3; ++p) {
        m.lses[p].set(s.lse_flat(0, i, h), p == 1 ? kInf : -kInf);
        for (std::int64_t c = 0; c < s.head_dim; ++c) m.outs[p].set(s.out_flat(0, i, h, c), kNaN);
      }
    }
  }
  m.add_result(DType::f16);
  m.run();
  EXPECT_TRUE(matches_fp64(m));
  for (std::int64_t h = 0; h < s.heads; ++h) {
    for (std::int64_t i : {0, 3}) {
      EXPECT_EQ(m.result_lse().get(s.lse_flat(0, i, h)), -kInf);
      for (std::int64_t c = 0; c < s.head_dim; ++c) {
        const double x = m.result_out().get(s.out_flat(0, i, h, c));
        EXPECT_TRUE(x == 0.0 && !std::signbit(x)) << x;
      }
    }
  }
}

// The result may be one of the parts: the same bits as merging elsewhere.
TEST(MergeAttentionStates, InPlaceEqualsOutOfPlace) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (bool varlen : {false, true}) {
      auto rng = test_rng(static_cast<std::uint64_t>(dtype));
      MergeCase m{.shape = {.varlen = varlen, .seqlen = 9, .strided = true}};
      for (int p = 0; p < 3; ++p) m.add_part(dtype, rng);
      m.add_result(dtype);
      m.run();
      const HostTensor out = m.result_out().contiguous_copy(), lse = m.result_lse().contiguous_copy();
      const AttentionState in_place = m.parts[1];
      merge_attention_states(m.parts, in_place);
      EXPECT_TRUE(m.outs[1].same_bits(out)) << dtype_name(dtype) << (varlen ? " varlen" : "");
      EXPECT_TRUE(m.lses[1].same_bits(lse)) << dtype_name(dtype) << (varlen ? " varlen" : "");
    }
  }
}

// Large enough to run on every thread: bitwise the same with one thread.
TEST(MergeAttentionStates, ThreadCountDoesNotChangeTheBits) {
  auto rng = test_rng();
  MergeCase m{.shape = {.batch = 2, .seqlen = 64, .heads = 8, .head_dim = 64}};
  for (int p = 0; p < 3; ++p) m.add_part(DType::bf16, rng);
  m.add_result(DType::f32);
  m.run();
  EXPECT_TRUE(matches_fp64(m));
  const HostTensor out = m.result_out().contiguous_copy(), lse = m.result_lse().contiguous_copy();
  set_num_threads(1);
  m.run();
  set_num_threads(0);
  EXPECT_TRUE(m.result_out().same_bits(out));
  EXPECT_TRUE(m.result_lse().same_bits(lse));
}

// The keys of a random attention problem cut into 1..5 contiguous chunks,
// flash_attn on each (the chunk's part of the bottom-right mask is the band
// with right = seqlen_k - chunk end), merged: the whole problem's result by
// the oracle rule, empty rows included (flash_attn marks them +inf; the
// merge reads that as -inf and returns -inf).
struct SplitConfig {
  std::int64_t seqlen_q, seqlen_k;
  bool causal;
};

TEST(MergeAttentionStates, SplitKeysMergeToTheWholeProblem) {
  const SplitConfig configs[] = {{13, 50, false}, {9, 40, true}, {20, 6, true}, {1, 33, true}};
  for_each_isa([&](Isa isa) {
    for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
      for (const SplitConfig& config : configs) {
        auto rng = test_rng(static_cast<std::uint64_t>(dtype) * 16 + static_cast<std::uint64_t>(config.seqlen_q));
        AttentionProblem whole;
        whole.dtype = dtype;
        whole.batch = 2, whole.seqlen_q = config.seqlen_q, whole.seqlen_k = config.seqlen_k;
        whole.heads = 4, whole.heads_kv = 2, whole.head_dim = 20;
        whole.strided = true;
        whole.options.causal = config.causal;
        whole.allocate(rng);
        const std::int64_t max_chunks = std::min<std::int64_t>(5, config.seqlen_k);
        for (std::int64_t n = 1; n <= max_chunks; ++n) {
          SCOPED_TRACE(std::string(isa_name(isa)) + " " + std::string(dtype_name(dtype)) + " sq=" +
                       std::to_string(config.seqlen_q) + " sk=" + std::to_string(config.seqlen_k) +
                       (config.causal ? " causal, " : ", ") + std::to_string(n) + " chunks");
          // n - 1 distinct cut points in (0, seqlen_k): every chunk has a key.
          std::vector<std::int64_t> cuts;
          for (std::int64_t j = 1; j < config.seqlen_k; ++j) cuts.push_back(j);
          std::shuffle(cuts.begin(), cuts.end(), rng);
          cuts.resize(n - 1);
          cuts.push_back(0);
          cuts.push_back(config.seqlen_k);
          std::sort(cuts.begin(), cuts.end());

          std::deque<HostTensor> outs, lses;
          std::vector<AttentionState> parts;
          for (std::int64_t chunk = 0; chunk < n; ++chunk) {
            const std::int64_t begin = cuts[chunk], end = cuts[chunk + 1];
            TensorView k = whole.k.view(), v = whole.v.view();
            for (TensorView* t : {&k, &v}) {
              t->data = static_cast<char*>(t->data) + begin * t->stride[1] * dtype_size(dtype);
              t->shape[1] = end - begin;
            }
            outs.emplace_back(dtype, shape_of(whole.out.view()), kNaN);
            lses.emplace_back(DType::f32, shape_of(whole.lse.view()), kNaN);
            FlashAttnOptions options;
            if (config.causal) options.window_size = {-1, config.seqlen_k - end};
            flash_attn(whole.q, k, v, {.out = outs.back(), .softmax_lse = lses.back()}, options);
            parts.push_back({outs.back(), lses.back()});
          }
          merge_attention_states(parts, {whole.out, whole.lse});
          const ForwardOracle oracle(whole.params());
          EXPECT_TRUE(oracle.check_out());
          EXPECT_TRUE(oracle.check_lse(-std::numeric_limits<float>::infinity()));
          EXPECT_TRUE(whole.outputs_stay_in_view());
          whole.poison_outputs();
        }
      }
    }
  });
}

// ---- bad input: a flashattn::Error naming the argument, nothing written ----

// A valid merge of three f32 parts (b, sq, h, d) = (2, 8, 4, 16), or varlen
// (8, 4, 16); outputs poisoned with the sentinel.
class ErrorCase : public BufferPool {
 public:
  explicit ErrorCase(bool varlen = false) : shape_{.varlen = varlen, .batch = 2, .seqlen = 8, .heads = 4, .head_dim = 16} {
    auto rng = test_rng();
    for (int p = 0; p < 3; ++p) parts.push_back(part(rng));
    merged = {add(HostTensor(DType::f32, shape_.out_shape(), kSentinel)),
              add(HostTensor(DType::f32, shape_.lse_shape(), kSentinel))};
  }
  AttentionState part(std::mt19937_64& rng) {
    return {add_random(DType::f32, shape_.out_shape(), rng), add_random(DType::f32, shape_.lse_shape(), rng)};
  }
  void call() const { merge_attention_states(parts, merged); }

  std::vector<AttentionState> parts;
  AttentionState merged;

 private:
  MergeShape shape_;
};

void expect_error(const ErrorCase& c, const std::string& argument, const std::vector<std::string>& details) {
  SCOPED_TRACE(argument);
  expect_rejected([&c] { c.call(); }, "merge_attention_states: " + argument, details, c);
}

TEST(MergeAttentionStatesErrors, NoParts) {
  ErrorCase c;
  c.parts.clear();
  expect_error(c, "parts", {"parts is empty, expected at least one part"});
}

TEST(MergeAttentionStatesErrors, Ranks) {
  ErrorCase c;
  c.parts[0].out.rank = 5;
  c.parts[0].out.shape[4] = 1;
  expect_error(c, "parts[0].out", {"rank 5, expected 4 (b, sq, h, d) or 3 (total, h, d)"});
  ErrorCase mixed;
  ErrorCase varlen(true);
  mixed.parts[1] = varlen.parts[1];
  expect_error(mixed, "parts[1].out", {"rank 3, expected 4"});
  ErrorCase lse;
  lse.merged.lse = varlen.parts[0].lse;
  expect_error(lse, "merged.lse", {"rank 2, expected 3"});
}

TEST(MergeAttentionStatesErrors, Shapes) {
  ErrorCase lse;
  lse.parts[2].lse.shape[2] = 7;
  expect_error(lse, "parts[2].lse", {"merge_attention_states: parts[2].lse has shape (2, 4, 7), expected (2, 4, 8)"});
  ErrorCase out;
  out.parts[1].out.shape[3] = 15;
  expect_error(out, "parts[1].out", {"has shape (2, 8, 4, 15), expected (2, 8, 4, 16)"});
  ErrorCase merged(true);
  merged.merged.out.shape[1] = 2;
  expect_error(merged, "merged.out", {"has shape (8, 2, 16), expected (8, 4, 16)"});
  ErrorCase varlen_lse(true);
  varlen_lse.parts[1].lse.shape[1] = 9;
  expect_error(varlen_lse, "parts[1].lse", {"has shape (4, 9), expected (4, 8)"});
}

TEST(MergeAttentionStatesErrors, DtypesAndDevices) {
  ErrorCase lse;
  lse.parts[1].lse.dtype = DType::f16;
  expect_error(lse, "parts[1].lse", {"dtype f16, expected f32"});
  ErrorCase out;
  out.parts[0].out.dtype = DType::f64;
  out.parts[0].out.shape[3] = 8;  // the same bytes
  expect_error(out, "parts[0].out", {"dtype f64, expected f32, f16 or bf16"});
  ErrorCase merged;
  merged.merged.out.dtype = DType::i32;
  expect_error(merged, "merged.out", {"dtype i32, expected f32, f16 or bf16"});
  ErrorCase device;
  device.merged.out.device = {DeviceType::cuda, 0};
  expect_error(device, "merged.out", {"is on cuda:0, expected cpu"});
  ErrorCase lse_device;
  lse_device.parts[2].lse.device = {DeviceType::cuda, 1};
  expect_error(lse_device, "parts[2].lse", {"is on cuda:1, expected cpu"});
}

TEST(MergeAttentionStatesErrors, MissingOrMalformedTensors) {
  ErrorCase missing;
  missing.merged.lse = {};
  expect_error(missing, "merged.lse", {"merged.lse is missing"});
  ErrorCase null;
  null.parts[1].out.data = nullptr;
  expect_error(null, "parts[1].out", {"null data pointer"});
  ErrorCase columns;
  columns.parts[0].out.stride[3] = 2;
  columns.parts[0].out.shape[0] = 1;  // stays inside the buffer
  expect_error(columns, "parts[0].out", {"contiguous in its last dimension, expected stride 1, got 2"});
  ErrorCase broadcast;
  broadcast.merged.out.stride[1] = 0;
  expect_error(broadcast, "merged.out", {"overlapping elements"});
  ErrorCase negative;
  negative.parts[2].lse.stride[0] = -1;
  expect_error(negative, "parts[2].lse", {"stride -1"});
}

TEST(MergeAttentionStatesErrors, ResultOverlapsAPartOrItself) {
  ErrorCase shifted;  // batch-1 views; the result's out starts one (h, d) row into parts[0].out's buffer
  for (AttentionState* s : {&shifted.parts[0], &shifted.parts[1], &shifted.parts[2], &shifted.merged})
    s->out.shape[0] = 1, s->lse.shape[0] = 1;
  shifted.merged.out.data = static_cast<float*>(shifted.parts[0].out.data) + 16;
  expect_error(shifted, "merged.out",
               {"merged.out overlaps parts[0].out in memory, expected separate memory (merged.out is written while "
                "parts[0].out is read)"});

  ErrorCase half;
  half.merged.out = half.parts[1].out;
  expect_error(half, "merged.out", {"merged.out is parts[1].out but merged.lse is not parts[1].lse",
                                    "expected the result to be one whole part (in place) or separate memory"});
  ErrorCase lse_only;
  lse_only.merged.lse = lse_only.parts[2].lse;
  expect_error(lse_only, "merged.lse", {"merged.lse is parts[2].lse but merged.out is not parts[2].out"});

  ErrorCase other_dtype;  // parts[0].out's memory seen as bf16 is not parts[0].out
  other_dtype.merged = other_dtype.parts[0];
  other_dtype.merged.out.dtype = DType::bf16;
  expect_error(other_dtype, "merged.lse", {"merged.lse is parts[0].lse but merged.out is not parts[0].out"});

  ErrorCase self;
  self.merged.lse.data = self.merged.out.data;
  expect_error(self, "merged.lse", {"merged.lse overlaps merged.out in memory, expected separate memory (both are written)"});
}

}  // namespace
}  // namespace flashattn::testing
