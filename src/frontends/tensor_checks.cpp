#include "frontends/tensor_checks.hpp"

#include <sstream>

namespace flashattn::frontend {

std::string device_string(const Device& d) {
  return d.type == DeviceType::cpu ? std::string("cpu") : "cuda:" + std::to_string(d.index);
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
  require(t.present(), name + " is missing");
  require(t.data != nullptr, name + " has a null data pointer");
  require(t.rank == rank, name + " has rank " + std::to_string(t.rank) + ", expected " + std::to_string(rank) +
                              " " + "(shape " + t.shape_string() + ")");
  std::int64_t last_offset = 0;
  for (int d = 0; d < t.rank; ++d) {
    require(t.shape[d] >= 0, name + " has a negative size " + std::to_string(t.shape[d]) + " in dimension " +
                                 std::to_string(d));
    require(t.stride[d] >= 0, name + " has a negative stride " + std::to_string(t.stride[d]) +
                                  " in dimension " + std::to_string(d));
    std::int64_t span = 0;
    const bool overflow = t.shape[d] > 0 && (__builtin_mul_overflow(t.shape[d] - 1, t.stride[d], &span) ||
                                             __builtin_add_overflow(last_offset, span, &last_offset));
    require(!overflow, name + " with shape " + t.shape_string() + " spans more elements than int64 can index");
  }
  std::int64_t bytes = 0;
  require(!__builtin_mul_overflow(last_offset + 1, dtype_size(t.dtype), &bytes),
          name + " with shape " + t.shape_string() + " spans more bytes than int64 can index");
}

void ArgChecker::rows_tensor(const TensorView& t, const std::string& name, int rank) const {
  tensor(t, name, rank);
  require(t.stride[rank - 1] == 1 || t.shape[rank - 1] <= 1,
          name + " must be contiguous in its last dimension, expected stride 1, got " +
              std::to_string(t.stride[rank - 1]));
}

void ArgChecker::dtype(const TensorView& t, const std::string& name, DType expected) const {
  require(t.dtype == expected, name + " has dtype " + std::string(dtype_name(t.dtype)) + ", expected " +
                                   std::string(dtype_name(expected)));
}

void ArgChecker::device(const TensorView& t, const std::string& name, const Device& expected) const {
  require(t.device == expected, name + " is on " + device_string(t.device) + ", expected " +
                                    device_string(expected));
}

void ArgChecker::shape(const TensorView& t, const std::string& name,
                       std::initializer_list<std::int64_t> expected) const {
  bool same = static_cast<int>(expected.size()) == t.rank;
  int d = 0;
  for (std::int64_t s : expected) same = same && t.shape[d++] == s;
  require(same, name + " has shape " + t.shape_string() + ", expected " + shape_string(expected));
}

void ArgChecker::sizes_at_least(const TensorView& t, const std::string& name, std::int64_t min) const {
  for (int d = 0; d < t.rank; ++d) {
    require(t.shape[d] >= min, name + " has size " + std::to_string(t.shape[d]) + " in dimension " +
                                   std::to_string(d) + " (shape " + t.shape_string() + "), expected at least " +
                                   std::to_string(min));
  }
}

}  // namespace flashattn::frontend
