#include "support/host_tensor.hpp"

#include <cmath>
#include <cstring>

namespace flashattn::testing {
namespace {
void store(DType t, void* p, double x) {
  switch (t) {
    case DType::f32: *static_cast<float*>(p) = static_cast<float>(x); break;
    case DType::f64: *static_cast<double*>(p) = x; break;
    case DType::bf16: *static_cast<bfloat16*>(p) = to_bfloat16(static_cast<float>(x)); break;
    case DType::f16: *static_cast<float16*>(p) = to_float16(static_cast<float>(x)); break;
    case DType::i32: *static_cast<std::int32_t*>(p) = static_cast<std::int32_t>(x); break;
  }
}
double load(DType t, const void* p) {
  switch (t) {
    case DType::f32: return *static_cast<const float*>(p);
    case DType::f64: return *static_cast<const double*>(p);
    case DType::bf16: return to_float(*static_cast<const bfloat16*>(p));
    case DType::f16: return to_float(*static_cast<const float16*>(p));
    case DType::i32: return *static_cast<const std::int32_t*>(p);
  }
  return 0;
}
}  // namespace

HostTensor::HostTensor(DType dtype, std::vector<std::int64_t> shape, double fill_value)
    : HostTensor(padded(dtype, shape, shape, fill_value)) {}

HostTensor HostTensor::padded(DType dtype, std::vector<std::int64_t> shape, std::vector<std::int64_t> storage_shape,
                              double fill_value) {
  HostTensor t;
  std::int64_t total = 1;
  for (std::int64_t s : storage_shape) total *= s;
  t.storage_.assign(static_cast<std::size_t>(std::max<std::int64_t>(total, 1)) * dtype_size(dtype), 0);
  t.view_.data = t.storage_.data();
  t.view_.dtype = dtype;
  t.view_.rank = static_cast<int>(shape.size());
  std::int64_t step = 1;
  for (int d = t.view_.rank - 1; d >= 0; --d) {
    t.view_.shape[d] = shape[d];
    t.view_.stride[d] = step;
    step *= storage_shape[d];
  }
  t.fill(fill_value);
  return t;
}

std::int64_t HostTensor::offset_of(std::int64_t flat) const {
  std::int64_t offset = 0;
  for (int d = view_.rank - 1; d >= 0; --d) {
    offset += (flat % view_.shape[d]) * view_.stride[d];
    flat /= view_.shape[d];
  }
  return offset;
}

void HostTensor::fill(double value) {
  const int size = dtype_size(view_.dtype);
  for (std::size_t at = 0; at + size <= storage_.size(); at += size) store(view_.dtype, storage_.data() + at, value);
}

void HostTensor::randomize(std::mt19937_64& rng, double stddev) {
  std::normal_distribution<double> normal(0.0, stddev);
  for (std::int64_t i = 0; i < numel(); ++i) set(i, normal(rng));
}

void HostTensor::set(std::int64_t flat, double value) {
  store(view_.dtype, storage_.data() + offset_of(flat) * dtype_size(view_.dtype), value);
}

double HostTensor::get(std::int64_t flat) const {
  return load(view_.dtype, storage_.data() + offset_of(flat) * dtype_size(view_.dtype));
}

HostTensor HostTensor::contiguous_copy() const {
  std::vector<std::int64_t> shape(view_.shape.begin(), view_.shape.begin() + view_.rank);
  HostTensor t(view_.dtype, shape);
  const int size = dtype_size(view_.dtype);
  for (std::int64_t i = 0; i < numel(); ++i)
    std::memcpy(t.storage_.data() + i * size, storage_.data() + offset_of(i) * size, size);
  return t;
}

bool HostTensor::same_bits(const HostTensor& other) const {
  if (view_.dtype != other.view_.dtype || view_.rank != other.view_.rank) return false;
  for (int d = 0; d < view_.rank; ++d)
    if (view_.shape[d] != other.view_.shape[d]) return false;
  const int size = dtype_size(view_.dtype);
  for (std::int64_t i = 0; i < numel(); ++i) {
    if (std::memcmp(storage_.data() + offset_of(i) * size, other.storage_.data() + other.offset_of(i) * size,
                    size) != 0) {
      return false;
    }
  }
  return true;
}

bool HostTensor::outside_view_holds(double value) const {
  const int size = dtype_size(view_.dtype);
  std::vector<bool> viewed(storage_.size() / size, false);
  for (std::int64_t i = 0; i < numel(); ++i) viewed[offset_of(i)] = true;
  unsigned char want[8];
  store(view_.dtype, want, value);
  for (std::size_t e = 0; e < viewed.size(); ++e)
    if (!viewed[e] && std::memcmp(storage_.data() + e * size, want, size) != 0) return false;
  return true;
}

HostTensor stack(const std::vector<const HostTensor*>& parts, int dim) {
  const TensorView& first = parts.front()->view();
  std::vector<std::int64_t> shape(first.shape.begin(), first.shape.begin() + first.rank);
  // Elements of one part, split at `dim`: outer (before) x inner (from dim on).
  std::int64_t inner = 1;
  for (int d = dim; d < first.rank; ++d) inner *= first.shape[d];
  shape.insert(shape.begin() + dim, static_cast<std::int64_t>(parts.size()));
  HostTensor t(first.dtype, shape);
  const std::int64_t n = static_cast<std::int64_t>(parts.size());
  for (std::int64_t part = 0; part < n; ++part) {
    const HostTensor& src = *parts[part];
    for (std::int64_t i = 0; i < src.numel(); ++i) t.set((i / inner * n + part) * inner + i % inner, src.get(i));
  }
  return t;
}

HostTensor int_tensor(const std::vector<std::int32_t>& values) {
  HostTensor t(DType::i32, {static_cast<std::int64_t>(values.size())});
  for (std::size_t i = 0; i < values.size(); ++i) t.set(static_cast<std::int64_t>(i), values[i]);
  return t;
}

}  // namespace flashattn::testing
