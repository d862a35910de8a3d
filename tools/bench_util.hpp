// Pieces every bench mode shares: random inputs, poisoned outputs, sizes
// that fit, timing and memory use.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <new>
#include <random>
#include <vector>

#include "flashattn/dtype.hpp"
#include "flashattn/params.hpp"

namespace flashattn::tools {

// A transparent huge page on x86-64.
inline constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

// Storage aligned to 2 MiB, as a serving engine aligns its tensors
// (PyTorch's CPU allocator: 64 bytes; 2 MiB for large blocks when its
// huge-page allocation is enabled). glibc serves a plain vector of this
// size from mmap, 16 bytes into a page: every 64-byte load of a K or V row
// then straddles two cache lines, which cost the decode kernels 13% of
// their warm cycles (BENCHMARKS.md, session 17).
template <class T>
struct HugePageAligned {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{kHugePageBytes};
  HugePageAligned() = default;
  template <class U>
  HugePageAligned(const HugePageAligned<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlignment)); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, kAlignment); }
  template <class U>
  bool operator==(const HugePageAligned<U>&) const {
    return true;
  }
};

// A tensor's bytes as the benches hold them.
using Bytes = std::vector<std::byte, HugePageAligned<std::byte>>;

// Elements of a tensor of `shape`; throws cli::CliError instead of overflowing.
std::int64_t checked_numel(std::initializer_list<std::int64_t> shape);

// Throws cli::CliError when `bytes` exceed 80% of the physical memory.
void check_fits_in_memory(double bytes);

// Advises transparent huge pages for the whole 2 MiB pages of [data, data +
// bytes), data on a 2 MiB boundary (HugePageAligned), before they are first
// written: the memory kind of the bandwidth probe's buffer, and of a serving
// engine's large pools. Advice only: without THP everything still runs.
void advise_huge_pages(std::byte* data, std::size_t bytes);

// bytes.resize(size), its storage advised by advise_huge_pages first.
void resize_on_huge_pages(Bytes& bytes, std::size_t size);

// Fills `bytes` (elements of dtype) with N(0, 1) values.
void randomize(Bytes& bytes, DType dtype, std::mt19937_64& rng);

// Poisons `bytes` with all-ones: NaN in f32, f16 and bf16. Every run writes
// the same values, so anything still NaN at the end was never written.
inline void poison(Bytes& bytes) { std::fill(bytes.begin(), bytes.end(), std::byte{0xff}); }

// Peak resident set of the process so far, MiB.
// 2 (D + Dv) FLOPs per kept (i, j) pair of a fixed-length problem: q.k and p.v.
double forward_flops(const AttentionParams& params);

double peak_rss_mb();

// The median of x (the upper median for an even count); x not empty.
template <typename T>
T median(std::vector<T> x) {
  std::nth_element(x.begin(), x.begin() + x.size() / 2, x.end());
  return x[x.size() / 2];
}

// Median milliseconds of `repeat` calls of fn after one warm-up call.
// `before` runs ahead of every call (the warm-up's too), untimed (a cache
// flush). each_ms, when given, receives every timed call's milliseconds.
template <typename Fn, typename Before>
double median_ms(std::int64_t repeat, Fn&& fn, Before&& before, std::vector<double>* each_ms = nullptr) {
  before();
  fn();
  std::vector<double> ms;
  for (std::int64_t r = 0; r < repeat; ++r) {
    before();
    const auto start = std::chrono::steady_clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  if (each_ms) *each_ms = ms;
  return median(std::move(ms));
}

template <typename Fn>
double median_ms(std::int64_t repeat, Fn&& fn) {
  return median_ms(repeat, fn, [] {});
}

}  // namespace flashattn::tools
