// merge_attention_states (include/flashattn/merge_attention_states.hpp):
// validation, then one pass over the rows. The weights come from
// core::merge_weights, the formula split-KV shares.
#include "flashattn/merge_attention_states.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "core/convert.hpp"
#include "core/merge.hpp"
#include "flashattn/runtime.hpp"
#include "frontends/tensor_checks.hpp"

namespace flashattn {
namespace {

using frontend::ArgChecker;
using frontend::NamedView;

constexpr const char* kFunction = "merge_attention_states";
// Below this many output elements (rows x head dim x parts) one thread is faster than waking the team.
constexpr double kParallelWork = 1 << 15;

std::string str(std::int64_t x) { return std::to_string(x); }

// The sizes every state shares. Varlen (out (total, h, d), lse (h, total))
// is a batch of one sequence of `total` rows.
struct Layout {
  bool varlen = false;
  std::int64_t batch = 0, seqlen = 0, heads = 0, head_dim = 0;

  int out_rank() const { return varlen ? 3 : 4; }
};

Layout layout_of(const ArgChecker& c, const TensorView& out, const std::string& name) {
  c.require(out.present(), [&] { return name + " is missing"; });
  c.require(out.rank == 4 || out.rank == 3, [&] {
    return name + " has rank " + str(out.rank) + ", expected 4 (b, sq, h, d) or 3 (total, h, d) for varlen";
  });
  Layout l;
  l.varlen = out.rank == 3;
  l.batch = l.varlen ? 1 : out.shape[0];
  l.seqlen = out.shape[l.varlen ? 0 : 1];
  l.heads = out.shape[out.rank - 2];
  l.head_dim = out.shape[out.rank - 1];
  return l;
}

// Rank, last dimension contiguous, dtype, device and the layout's exact shape
// for out and lse; `output`: also every element at its own address.
void check_state(const ArgChecker& c, const AttentionState& s, const std::string& name, const Layout& l, bool output) {
  const std::string out = name + ".out", lse = name + ".lse";
  const int rank = l.out_rank();
  if (output) {
    c.output_tensor(s.out, out, rank);
    c.output_tensor(s.lse, lse, rank - 1);
  } else {
    c.rows_tensor(s.out, out, rank);
    c.rows_tensor(s.lse, lse, rank - 1);
  }
  c.require(s.out.dtype == DType::f32 || s.out.dtype == DType::f16 || s.out.dtype == DType::bf16,
            [&] { return out + " has dtype " + std::string(dtype_name(s.out.dtype)) + ", expected f32, f16 or bf16"; });
  c.dtype(s.lse, lse, DType::f32);
  c.device(s.out, out, Device{});
  c.device(s.lse, lse, Device{});
  if (l.varlen) {
    c.shape(s.out, out, {l.seqlen, l.heads, l.head_dim});
    c.shape(s.lse, lse, {l.heads, l.seqlen});
  } else {
    c.shape(s.out, out, {l.batch, l.seqlen, l.heads, l.head_dim});
    c.shape(s.lse, lse, {l.batch, l.heads, l.seqlen});
  }
}

bool same_view(const TensorView& a, const TensorView& b) {
  return a.data == b.data && a.dtype == b.dtype && a.rank == b.rank && a.shape == b.shape && a.stride == b.stride;
}

// The result is written while every part is read: it may not overlap any
// part, except that it may be one part exactly (out and lse both), which a
// row-by-row pass reads before it writes.
void check_memory(const ArgChecker& c, std::span<const AttentionState> parts, const AttentionState& merged) {
  std::vector<NamedView> inputs;
  for (std::size_t s = 0; s < parts.size(); ++s) {
    const std::string name = "parts[" + str(static_cast<std::int64_t>(s)) + "]";
    const bool same_out = same_view(parts[s].out, merged.out), same_lse = same_view(parts[s].lse, merged.lse);
    if (same_out && same_lse) continue;  // in place
    if (same_out || same_lse) {
      const char* same = same_out ? "out" : "lse";
      const char* other = same_out ? "lse" : "out";
      c.fail(std::string("merged.") + same + " is " + name + "." + same + " but merged." + other + " is not " + name +
             "." + other + ", expected the result to be one whole part (in place) or separate memory");
    }
    inputs.push_back({parts[s].out, name + ".out"});
    inputs.push_back({parts[s].lse, name + ".lse"});
  }
  c.separate({{merged.out, "merged.out"}, {merged.lse, "merged.lse"}}, inputs);
}

// A checked state as element strides over (batch, row, head).
struct StateAddress {
  const void* out_read = nullptr;
  void* out_write = nullptr;
  DType dtype = DType::f32;
  std::int64_t out_batch = 0, out_row = 0, out_head = 0;
  float* lse = nullptr;
  std::int64_t lse_batch = 0, lse_head = 0, lse_row = 0;

  std::int64_t out_offset(std::int64_t b, std::int64_t i, std::int64_t h) const {
    return b * out_batch + i * out_row + h * out_head;
  }
  float& lse_at(std::int64_t b, std::int64_t i, std::int64_t h) const {
    return lse[b * lse_batch + h * lse_head + i * lse_row];
  }
};

StateAddress address_of(const AttentionState& s, const Layout& l) {
  StateAddress a;
  a.out_read = a.out_write = s.out.data;
  a.dtype = s.out.dtype;
  a.lse = static_cast<float*>(s.lse.data);
  if (l.varlen) {  // out (total, h, d), lse (h, total)
    a.out_row = s.out.stride[0], a.out_head = s.out.stride[1];
    a.lse_head = s.lse.stride[0], a.lse_row = s.lse.stride[1];
  } else {  // out (b, sq, h, d), lse (b, h, sq)
    a.out_batch = s.out.stride[0], a.out_row = s.out.stride[1], a.out_head = s.out.stride[2];
    a.lse_batch = s.lse.stride[0], a.lse_head = s.lse.stride[1], a.lse_row = s.lse.stride[2];
  }
  return a;
}

const void* element(const void* base, DType dtype, std::int64_t offset) {
  return static_cast<const char*>(base) + offset * dtype_size(dtype);
}

// Every row (b, i, h): weights from the parts' lse, then out = sum of the
// weighted parts with a non-zero weight (an empty part's out is never read,
// so garbage there cannot turn into NaN). Each row reads all its inputs
// before writing, which makes the in-place case safe.
void merge_rows(const std::vector<StateAddress>& parts, const StateAddress& merged, const Layout& l) {
  const auto n_parts = static_cast<std::int64_t>(parts.size());
  const std::int64_t rows = l.batch * l.seqlen * l.heads;  // <= merged.lse's element count
  const std::int64_t d = l.head_dim;
  const double work = static_cast<double>(rows) * static_cast<double>(std::max<std::int64_t>(d, 1)) * n_parts;
  const bool parallel = work >= kParallelWork;
#pragma omp parallel num_threads(num_threads()) if (parallel)
  {
    std::vector<double> weights(n_parts), lse(n_parts), acc(d);  // (parts,), (parts,), (head_dim,)
    std::vector<float> row(d);                                   // (head_dim,) one part's out, or the result
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t h = r % l.heads, i = (r / l.heads) % l.seqlen, b = r / (l.heads * l.seqlen);
      for (std::int64_t s = 0; s < n_parts; ++s) {
        const double x = parts[s].lse_at(b, i, h);
        lse[s] = x == std::numeric_limits<double>::infinity() ? -x : x;  // flash-attn's empty-row marker
      }
      const double merged_lse = core::merge_weights(
          n_parts, [&](std::int64_t s) { return lse[s]; }, weights.data());
      std::fill(acc.begin(), acc.end(), 0.0);
      for (std::int64_t s = 0; s < n_parts; ++s) {
        if (weights[s] == 0.0) continue;
        core::load_floats(element(parts[s].out_read, parts[s].dtype, parts[s].out_offset(b, i, h)), parts[s].dtype, d,
                          row.data());
        for (std::int64_t c = 0; c < d; ++c) acc[c] += weights[s] * row[c];
      }
      for (std::int64_t c = 0; c < d; ++c)
        row[c] = static_cast<float>(acc[c]);  // rounds through fp32, like the reference
      core::store_floats(row.data(), merged.dtype, d,
                         static_cast<char*>(merged.out_write) + merged.out_offset(b, i, h) * dtype_size(merged.dtype));
      merged.lse_at(b, i, h) = static_cast<float>(merged_lse);
    }
  }
}

}  // namespace

void merge_attention_states(std::span<const AttentionState> parts, const AttentionState& merged) {
  const ArgChecker c(kFunction);
  c.require(!parts.empty(), [&] { return "parts is empty, expected at least one part"; });
  const Layout layout = layout_of(c, parts[0].out, "parts[0].out");
  for (std::size_t s = 0; s < parts.size(); ++s) {
    check_state(c, parts[s], "parts[" + str(static_cast<std::int64_t>(s)) + "]", layout, false);
  }
  check_state(c, merged, "merged", layout, true);
  check_memory(c, parts, merged);

  std::vector<StateAddress> inputs;
  for (const AttentionState& part : parts) inputs.push_back(address_of(part, layout));
  merge_rows(inputs, address_of(merged, layout), layout);
}

}  // namespace flashattn
