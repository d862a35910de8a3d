// Owned host tensors for tests: random, poisoned, strided views, reading back as double.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "flashattn/tensor.hpp"

namespace flashattn::testing {

class HostTensor {
 public:
  HostTensor() = default;
  // Contiguous (shape) tensor of dtype, filled with `fill`.
  HostTensor(DType dtype, std::vector<std::int64_t> shape, double fill = 0.0);
  // Storage of `storage_shape` but viewed through `shape` at the start of
  // every dimension: a strided (non-contiguous) view when storage_shape is larger.
  static HostTensor padded(DType dtype, std::vector<std::int64_t> shape, std::vector<std::int64_t> storage_shape,
                           double fill = 0.0);

  // Fills the viewed elements with N(0, stddev) values from `rng`.
  void randomize(std::mt19937_64& rng, double stddev = 1.0);
  void fill(double value);                  // every storage element (poison with NaN)
  void set(std::int64_t flat, double value);  // flat index in the viewed shape, row-major
  double get(std::int64_t flat) const;
  std::int64_t numel() const { return view_.numel(); }
  // A contiguous tensor holding the viewed elements' exact bit patterns.
  HostTensor contiguous_copy() const;
  // True when the viewed elements of this and `other` (same dtype and shape)
  // have identical bit patterns.
  bool same_bits(const HostTensor& other) const;
  // True when every storage element outside the view still holds `value`
  // bit for bit (poison NaN included): nothing was written past the view.
  bool outside_view_holds(double value) const;
  // All storage bytes, for "nothing was written" checks.
  const std::vector<unsigned char>& bytes() const { return storage_; }

  const TensorView& view() const { return view_; }
  operator const TensorView&() const { return view_; }
  template <typename T>
  T* data() const { return static_cast<T*>(view_.data); }

 private:
  std::int64_t offset_of(std::int64_t flat) const;
  std::vector<unsigned char> storage_;
  TensorView view_;
};

// Stacks equally shaped tensors along a new dimension `dim` into a
// contiguous tensor (packed kv / qkv), values copied exactly.
HostTensor stack(const std::vector<const HostTensor*>& parts, int dim);

// int32 tensor (n,) from values.
HostTensor int_tensor(const std::vector<std::int32_t>& values);

inline std::vector<std::int64_t> shape_of(const TensorView& t) { return {t.shape.begin(), t.shape.begin() + t.rank}; }

// Offsets from 0 of sequences of these lengths: cu_seqlens (n + 1,).
inline std::vector<std::int32_t> cumulative(const std::vector<std::int32_t>& lens) {
  std::vector<std::int32_t> cu{0};
  for (std::int32_t n : lens) cu.push_back(cu.back() + n);
  return cu;
}

}  // namespace flashattn::testing
