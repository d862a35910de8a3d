// dtype names, fp16 conversions and TensorView helpers.
#include <bit>
#include <cmath>
#include <sstream>

#include "flashattn/dtype.hpp"
#include "flashattn/error.hpp"
#include "flashattn/tensor.hpp"

namespace flashattn {

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::f64: return "f64";
    case DType::i32: return "i32";
  }
  return "?";
}

// IEEE binary16, round to nearest even, overflow to inf, subnormals kept.
float16 to_float16(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return {static_cast<std::uint16_t>(sign | 0x7e00u)};  // NaN
  if (abs >= 0x477ff000u) return {static_cast<std::uint16_t>(sign | 0x7c00u)};  // >= 65520: inf
  if (abs < 0x38800000u) {  // below 2^-14: subnormal or zero, units of 2^-24
    const float scaled = std::bit_cast<float>(abs) * 16777216.0f;  // exact: power-of-two scaling
    return {static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(std::nearbyint(scaled)))};
  }
  std::uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
  return {static_cast<std::uint16_t>(sign | ((rounded - 0x38000000u) >> 13))};
}

float to_float(float16 x) {
  const std::uint32_t sign = static_cast<std::uint32_t>(x.bits & 0x8000u) << 16;
  const std::uint32_t exp = (x.bits >> 10) & 0x1fu;
  const std::uint32_t mant = x.bits & 0x3ffu;
  if (exp == 0) {  // zero or subnormal
    const float mag = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return sign ? -mag : mag;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

namespace {
TensorView make_view(const void* data, DType dtype, std::initializer_list<std::int64_t> shape, Device device) {
  if (shape.size() > static_cast<std::size_t>(kMaxRank)) {
    throw Error("TensorView: rank " + std::to_string(shape.size()) + " exceeds the maximum of 5");
  }
  TensorView t;
  t.data = const_cast<void*>(data);
  t.dtype = dtype;
  t.device = device;
  t.rank = static_cast<int>(shape.size());
  int d = 0;
  for (std::int64_t s : shape) t.shape[d++] = s;
  return t;
}
}  // namespace

TensorView TensorView::contiguous(const void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                                  Device device) {
  TensorView t = make_view(data, dtype, shape, device);
  std::int64_t step = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.stride[d] = step;
    step *= t.shape[d];
  }
  return t;
}

TensorView TensorView::strided(const void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                               std::initializer_list<std::int64_t> stride, Device device) {
  if (stride.size() != shape.size()) {
    throw Error("TensorView: " + std::to_string(stride.size()) + " strides given for " +
                std::to_string(shape.size()) + " dimensions");
  }
  TensorView t = make_view(data, dtype, shape, device);
  int d = 0;
  for (std::int64_t s : stride) t.stride[d++] = s;
  return t;
}

std::int64_t TensorView::numel() const {
  std::int64_t n = 1;
  for (int d = 0; d < rank; ++d) n *= shape[d];
  return n;
}

std::string TensorView::shape_string() const {
  std::ostringstream os;
  os << '(';
  for (int d = 0; d < rank; ++d) os << (d ? ", " : "") << shape[d];
  if (rank == 1) os << ',';
  os << ')';
  return os.str();
}

}  // namespace flashattn
