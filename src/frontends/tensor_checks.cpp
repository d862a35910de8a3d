#include "frontends/tensor_checks.hpp"

#include <array>
#include <cstdint>
#include <sstream>
#include <utility>

namespace flashattn::frontend {
namespace {

std::string str(std::int64_t x) { return std::to_string(x); }

// "(shape (2, 5, 4, 8))", or nothing when the rank is out of range: shape_string()
// would read past the shape array.
std::string shape_suffix(const TensorView& t) {
  return t.rank >= 0 && t.rank <= kMaxRank ? " (shape " + t.shape_string() + ")" : std::string();
}

std::string strides_string(const TensorView& t) {
  std::ostringstream os;
  os << '(';
  for (int d = 0; d < t.rank; ++d) os << (d ? ", " : "") << t.stride[d];
  if (t.rank == 1) os << ',';
  os << ')';
  return os.str();
}

// Sizes and strides of up to kMaxRank + 1 dimensions: a tensor, or two
// views of one stride pattern stacked along an extra dimension.
struct Dims {
  int rank = 0;
  std::array<std::int64_t, kMaxRank + 1> shape{}, stride{};

  explicit Dims(const TensorView& t) : rank(t.rank) {
    for (int d = 0; d < t.rank; ++d) shape[d] = t.shape[d], stride[d] = t.stride[d];
  }
};

// False when every element has its own address, by a sufficient test:
// ordered by stride, each dimension steps past everything the smaller ones
// span. (Exotic interleavings that pass no such ordering count as overlapping.)
bool self_overlapping(const Dims& t) {
  std::array<int, kMaxRank + 1> dims{};
  int n = 0;
  for (int d = 0; d < t.rank; ++d) {
    if (t.shape[d] == 0) return false;  // no elements at all
    if (t.shape[d] > 1) dims[n++] = d;
  }
  for (int i = 1; i < n; ++i)  // insertion sort by stride (std::sort trips GCC 12's -Warray-bounds here)
    for (int j = i; j > 0 && t.stride[dims[j]] < t.stride[dims[j - 1]]; --j) std::swap(dims[j], dims[j - 1]);
  std::int64_t span = 0;  // largest offset reachable by the dimensions seen so far
  for (int i = 0; i < n; ++i) {
    const int d = dims[i];
    if (t.stride[d] <= span) return true;
    // The product fits (tensor() bounded each tensor's span); the sum of two stacked views may not.
    if (__builtin_add_overflow(span, (t.shape[d] - 1) * t.stride[d], &span)) return true;
  }
  return false;
}

bool has_no_elements(const TensorView& t) {
  for (int d = 0; d < t.rank; ++d)
    if (t.shape[d] == 0) return true;
  return false;
}

// [first byte, one past the last byte) of a checked tensor (strides >= 0).
std::pair<std::uintptr_t, std::uintptr_t> byte_range(const TensorView& t) {
  std::int64_t last = 0;
  for (int d = 0; d < t.rank; ++d) last += (t.shape[d] - 1) * t.stride[d];
  const auto begin = reinterpret_cast<std::uintptr_t>(t.data);
  return {begin, begin + static_cast<std::uintptr_t>((last + 1) * dtype_size(t.dtype))};
}

}  // namespace

bool may_overlap(const TensorView& a, const TensorView& b) {
  if (has_no_elements(a) || has_no_elements(b)) return false;
  const auto [a_begin, a_end] = byte_range(a);
  const auto [b_begin, b_end] = byte_range(b);
  if (a_end <= b_begin || b_end <= a_begin) return false;
  // Two views of one stride pattern, e.g. dk and dv of a packed dkv: they are
  // one tensor with an extra dimension of size 2 and stride b - a, disjoint
  // when that tensor has no overlapping elements.
  const std::int64_t size = dtype_size(a.dtype);
  if (dtype_size(b.dtype) != size || a.rank != b.rank) return true;
  for (int d = 0; d < a.rank; ++d)
    if (a.shape[d] != b.shape[d] || a.stride[d] != b.stride[d]) return true;
  const std::uintptr_t delta = a_begin < b_begin ? b_begin - a_begin : a_begin - b_begin;
  if (delta % size != 0) return true;  // misaligned views share bytes
  Dims stacked(a);
  stacked.shape[stacked.rank] = 2;
  stacked.stride[stacked.rank] = static_cast<std::int64_t>(delta / size);  // < a's span: fits
  ++stacked.rank;
  return self_overlapping(stacked);
}

std::string device_string(const Device& d) {
  if (d.type == DeviceType::cpu) return d.index == 0 ? std::string("cpu") : "cpu:" + std::to_string(d.index);
  return "cuda:" + std::to_string(d.index);
}

std::string shape_string(std::initializer_list<std::int64_t> shape) {
  std::ostringstream os;
  os << '(';
  int n = 0;
  for (std::int64_t s : shape) os << (n++ ? ", " : "") << s;
  if (n == 1) os << ',';
  os << ')';
  return os.str();
}

void ArgChecker::fail(const std::string& message) const { throw Error(function_ + ": " + message); }

void ArgChecker::tensor(const TensorView& t, const std::string& name, int rank) const {
  require(t.present(), [&] { return name + " is missing"; });
  require(t.data != nullptr, [&] { return name + " has a null data pointer"; });
  require(t.rank == rank,
          [&] { return name + " has rank " + str(t.rank) + ", expected " + str(rank) + shape_suffix(t); });
  std::int64_t last_offset = 0, numel = 1;
  for (int d = 0; d < t.rank; ++d) {
    require(t.shape[d] >= 0, [&] {
      return name + " has size " + str(t.shape[d]) + " in dimension " + str(d) + ", expected a size >= 0";
    });
    require(t.stride[d] >= 0, [&] {
      return name + " has stride " + str(t.stride[d]) + " in dimension " + str(d) + ", expected a stride >= 0";
    });
    std::int64_t span = 0;
    const bool overflow = t.shape[d] > 0 && (__builtin_mul_overflow(t.shape[d] - 1, t.stride[d], &span) ||
                                             __builtin_add_overflow(last_offset, span, &last_offset));
    require(!overflow, [&] {
      return name + " with shape " + t.shape_string() + " and strides " + strides_string(t) +
             " spans more elements than int64 can index";
    });
    require(!__builtin_mul_overflow(numel, t.shape[d], &numel),
            [&] { return name + " with shape " + t.shape_string() + " has more elements than int64 can count"; });
  }
  std::int64_t end = 0, bytes = 0;
  require(!__builtin_add_overflow(last_offset, 1, &end) && !__builtin_mul_overflow(end, dtype_size(t.dtype), &bytes),
          [&] {
            return name + " with shape " + t.shape_string() + " and strides " + strides_string(t) +
                   " spans more bytes than int64 can index";
          });
}

void ArgChecker::rows_tensor(const TensorView& t, const std::string& name, int rank) const {
  tensor(t, name, rank);
  require(t.stride[rank - 1] == 1 || t.shape[rank - 1] <= 1, [&] {
    return name + " must be contiguous in its last dimension, expected stride 1, got " + str(t.stride[rank - 1]);
  });
}

void ArgChecker::output_tensor(const TensorView& t, const std::string& name, int rank) const {
  rows_tensor(t, name, rank);
  require(!self_overlapping(Dims(t)), [&] {
    return name + " has overlapping elements (shape " + t.shape_string() + ", strides " + strides_string(t) +
           "), expected every element at its own address";
  });
}

void ArgChecker::dtype(const TensorView& t, const std::string& name, DType expected) const {
  require(t.dtype == expected, [&] {
    return name + " has dtype " + std::string(dtype_name(t.dtype)) + ", expected " + std::string(dtype_name(expected));
  });
}

void ArgChecker::device(const TensorView& t, const std::string& name, const Device& expected) const {
  require(t.device == expected,
          [&] { return name + " is on " + device_string(t.device) + ", expected " + device_string(expected); });
}

void ArgChecker::shape(const TensorView& t, const std::string& name,
                       std::initializer_list<std::int64_t> expected) const {
  bool same = static_cast<int>(expected.size()) == t.rank;
  int d = 0;
  for (std::int64_t s : expected) same = same && t.shape[d++] == s;
  require(same, [&] {
    return name + " has shape " + (t.rank >= 0 && t.rank <= kMaxRank ? t.shape_string() : "?") + ", expected " +
           shape_string(expected);
  });
}

void ArgChecker::sizes_at_least(const TensorView& t, const std::string& name, std::int64_t min) const {
  for (int d = 0; d < t.rank; ++d) {
    require(t.shape[d] >= min, [&] {
      return name + " has size " + std::to_string(t.shape[d]) + " in dimension " + std::to_string(d) + " (shape " +
             t.shape_string() + "), expected at least " + std::to_string(min);
    });
  }
}

void ArgChecker::separate(const std::vector<NamedView>& outputs, const std::vector<NamedView>& inputs) const {
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const NamedView& out = outputs[i];
    if (!out.view.present()) continue;
    for (std::size_t j = 0; j < i; ++j) {  // messages built only on failure: this runs every call
      const NamedView& other = outputs[j];
      if (other.view.present() && may_overlap(out.view, other.view))
        fail(out.name + " overlaps " + other.name + " in memory, expected separate memory (both are written)");
    }
    for (const NamedView& in : inputs) {
      if (in.view.present() && may_overlap(out.view, in.view)) {
        fail(out.name + " overlaps " + in.name + " in memory, expected separate memory (" + out.name +
             " is written while " + in.name + " is read)");
      }
    }
  }
}

}  // namespace flashattn::frontend
