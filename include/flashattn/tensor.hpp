// TensorView — a non-owning view of a strided tensor (rank <= 5).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "flashattn/dtype.hpp"

namespace flashattn {

enum class DeviceType : std::uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  friend bool operator==(const Device&, const Device&) = default;
};

inline constexpr int kMaxRank = 5;

// A view of memory the caller owns. Strides are in elements (not bytes), as
// in PyTorch. A default-constructed view is "absent" (optional arguments).
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::f32;
  Device device{};
  int rank = 0;
  std::array<std::int64_t, kMaxRank> shape{};   // sizes, outermost first
  std::array<std::int64_t, kMaxRank> stride{};  // element strides

  // Row-major contiguous view.
  static TensorView contiguous(const void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                               Device device = {});
  // Explicit strides (same length as shape).
  static TensorView strided(const void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                            std::initializer_list<std::int64_t> stride, Device device = {});

  bool present() const { return data != nullptr || rank > 0; }
  std::int64_t size(int dim) const { return shape[dim]; }
  std::int64_t numel() const;
  // "(2, 128, 8, 64)"
  std::string shape_string() const;
};

}  // namespace flashattn
