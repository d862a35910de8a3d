// Shared pieces of the front-ends' bad-input tests: a pool of buffers (views
// stay valid, outputs poisoned with a sentinel) and the check that a call
// throws flashattn::Error with the expected message while leaving every
// buffer as it was. Header-only (the support library's source list is fixed).
#pragma once

#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "flashattn/error.hpp"
#include "flashattn/tensor.hpp"
#include "support/host_tensor.hpp"

namespace flashattn::testing {

inline constexpr double kSentinel = -7777.0;  // poison of the outputs; exact in every float dtype

// The same elements one dimension fewer: dims 0 and 1 merged.
inline void merge_leading_dims(TensorView& t) {
  t.shape[0] *= t.shape[1];
  t.stride[0] = t.stride[1];
  for (int d = 1; d + 1 < t.rank; ++d) t.shape[d] = t.shape[d + 1], t.stride[d] = t.stride[d + 1];
  --t.rank;
}

// Owns a test case's buffers. A deque: views of earlier buffers stay valid.
class BufferPool {
 public:
  // Keeps `t` alive as long as the pool and returns its view.
  TensorView add(HostTensor t) {
    buffers_.push_back(std::move(t));
    return buffers_.back().view();
  }
  TensorView add_random(DType dtype, std::vector<std::int64_t> shape, std::mt19937_64& rng) {
    HostTensor t(dtype, std::move(shape));
    t.randomize(rng);
    return add(std::move(t));
  }
  // A new sentinel-filled buffer viewed in `like`'s shape but stored with
  // dims d0 and d1 swapped (a permuted view: no element shares an address).
  TensorView transposed(const TensorView& like, int d0, int d1) {
    std::vector<std::int64_t> storage = shape_of(like);
    std::swap(storage[d0], storage[d1]);
    TensorView t = add(HostTensor(like.dtype, storage, kSentinel));
    std::swap(t.shape[d0], t.shape[d1]);
    std::swap(t.stride[d0], t.stride[d1]);
    return t;
  }
  // The buffer whose storage starts at t.data (nullptr if none).
  const HostTensor* owner(const TensorView& t) const {
    for (const HostTensor& h : buffers_)
      if (h.view().data == t.data) return &h;
    return nullptr;
  }
  // No element of the buffer at t.data still holds the sentinel; all finite.
  bool written(const TensorView& t) const {
    const HostTensor* h = owner(t);
    if (h == nullptr) return false;
    for (std::int64_t i = 0; i < h->numel(); ++i)
      if (h->get(i) == kSentinel || !std::isfinite(h->get(i))) return false;
    return true;
  }
  // Every byte of every buffer.
  std::vector<std::vector<unsigned char>> snapshot() const {
    std::vector<std::vector<unsigned char>> all;
    for (const HostTensor& t : buffers_) all.push_back(t.bytes());
    return all;
  }

 private:
  std::deque<HostTensor> buffers_;
};

// `call` must throw flashattn::Error whose message starts with `prefix`
// ("<function>: <argument>", the name ending there) and contains every
// detail, and must leave every buffer of `pool` as it was.
// FLASHATTN_SHOW_ERRORS=1 prints the messages.
inline void expect_rejected(const std::function<void()>& call, const std::string& prefix,
                            const std::vector<std::string>& details, const BufferPool& pool) {
  const auto before = pool.snapshot();
  std::string message;
  try {
    call();
    ADD_FAILURE() << "accepted";
    return;
  } catch (const Error& error) {
    message = error.what();
  } catch (const std::exception& other) {
    ADD_FAILURE() << "threw something other than flashattn::Error: " << other.what();
    return;
  }
  if (std::getenv("FLASHATTN_SHOW_ERRORS")) std::cout << message << "\n";
  const char next = message.size() > prefix.size() ? message[prefix.size()] : ' ';
  EXPECT_TRUE(message.starts_with(prefix) && next != '_' && !std::isalnum(static_cast<unsigned char>(next)))
      << "\"" << message << "\" does not start with \"" << prefix << "\"";
  for (const std::string& d : details) EXPECT_NE(message.find(d), std::string::npos) << message << "\nlacks: " << d;
  EXPECT_TRUE(pool.snapshot() == before) << "a buffer changed although the call threw: " << message;
}

// The table of bad-input cases: for each entry, a valid Case(entry, spec),
// `mutate`d, must be rejected (expect_rejected) with the message prefix the
// case gives for `argument`. Case is a BufferPool with the types EntryType
// and SpecType, a constructor Case(EntryType, const SpecType&), call() and
// prefix(argument) ("<function>: <argument as that entry names it>").
template <typename Case>
void reject(const std::vector<typename Case::EntryType>& entries, const typename Case::SpecType& spec,
            const std::function<void(Case&)>& mutate, const std::string& argument,
            const std::vector<std::string>& details) {
  for (const auto entry : entries) {
    Case c(entry, spec);
    SCOPED_TRACE(c.prefix(argument));
    if (mutate) mutate(c);
    expect_rejected([&c] { c.call(); }, c.prefix(argument), details, c);
  }
}

template <typename Case>
void reject(const std::vector<typename Case::EntryType>& entries, const std::function<void(Case&)>& mutate,
            const std::string& argument, const std::vector<std::string>& details) {
  reject<Case>(entries, typename Case::SpecType{}, mutate, argument, details);
}

template <typename Case>
void reject(const std::vector<typename Case::EntryType>& entries, const typename Case::SpecType& spec,
            const std::string& argument, const std::vector<std::string>& details) {
  reject<Case>(entries, spec, nullptr, argument, details);
}

}  // namespace flashattn::testing
