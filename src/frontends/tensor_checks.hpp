// Argument checks shared by the front-ends. Each throws flashattn::Error with
// "<function>: <argument> <what is wrong>, expected <x>, got <y>".
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "flashattn/error.hpp"
#include "flashattn/tensor.hpp"

namespace flashattn::frontend {

class ArgChecker {
 public:
  explicit ArgChecker(std::string function) : function_(std::move(function)) {}

  [[noreturn]] void fail(const std::string& message) const;
  void require(bool ok, const std::string& message) const {
    if (!ok) fail(message);
  }

  // Present, non-null data, rank as given, sizes and strides >= 0, element
  // count, offsets and byte offsets fit in int64.
  void tensor(const TensorView& t, const std::string& name, int rank) const;
  // Like tensor(), and the last dimension is contiguous (stride 1 or size 1).
  void rows_tensor(const TensorView& t, const std::string& name, int rank) const;
  // Like rows_tensor(), and no two elements share an address (outputs: no
  // zero or interleaved strides that would make threads race on one element).
  void output_tensor(const TensorView& t, const std::string& name, int rank) const;
  void dtype(const TensorView& t, const std::string& name, DType expected) const;
  void device(const TensorView& t, const std::string& name, const Device& expected) const;
  void shape(const TensorView& t, const std::string& name, std::initializer_list<std::int64_t> expected) const;
  // Every size in [min, ...].
  void sizes_at_least(const TensorView& t, const std::string& name, std::int64_t min) const;

  const std::string& function() const { return function_; }

 private:
  std::string function_;
};

std::string device_string(const Device& d);
std::string shape_string(std::initializer_list<std::int64_t> shape);

}  // namespace flashattn::frontend
