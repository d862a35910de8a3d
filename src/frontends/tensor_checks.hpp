// Argument checks shared by the front-ends. Each throws flashattn::Error with
// "<function>: <argument> <what is wrong>, expected <x>, got <y>".
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "flashattn/error.hpp"
#include "flashattn/tensor.hpp"

namespace flashattn::frontend {

// A tensor with the name the caller knows it by (overlap checks).
struct NamedView {
  TensorView view;
  std::string name;
};

class ArgChecker {
 public:
  explicit ArgChecker(std::string function) : function_(std::move(function)) {}

  [[noreturn]] void fail(const std::string& message) const;
  // The message is built only on failure (a callable returning it): the
  // checks run on every call, and building their strings cost ~30 us a call.
  template <class Message>
  void require(bool ok, Message&& message) const {
    if (!ok) fail(message());
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

  // No output overlaps an earlier output or any input (absent tensors are
  // skipped): writing one would change what the call still reads. Tensors
  // must have passed tensor() already.
  void separate(const std::vector<NamedView>& outputs, const std::vector<NamedView>& inputs) const;

  const std::string& function() const { return function_; }

 private:
  std::string function_;
};

// True when two checked tensors may share a byte: their byte ranges meet,
// unless they are two views of one stride pattern that interleave without
// sharing an element (k and v of a packed kv). Conservative otherwise.
bool may_overlap(const TensorView& a, const TensorView& b);

std::string device_string(const Device& d);
std::string shape_string(std::initializer_list<std::int64_t> shape);

}  // namespace flashattn::frontend
