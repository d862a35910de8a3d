// The memory ceiling the decode bench reports fractions of (DESIGN.md,
// "Performance method"): DRAM read bandwidth, measured in-process on this
// machine with the bench's thread count, and a cache flush so that a timed
// call reads its K and V from DRAM like a model whose caches exceed L3.
#pragma once

#include <cstddef>
#include <cstdint>

#include "flashattn/runtime.hpp"

namespace flashattn::tools {

// Uninitialised memory on a 2 MiB boundary (the benches' HugePageAligned
// allocator), asking for transparent huge pages (fewer TLB misses and page
// faults on a 1 GiB stream) before the threads first touch it.
class HugePageBuffer {
 public:
  explicit HugePageBuffer(std::size_t bytes);
  ~HugePageBuffer();
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;

  std::byte* data() const { return data_; }
  std::size_t size() const { return bytes_; }

 private:
  std::byte* data_ = nullptr;
  std::size_t bytes_ = 0;
};

struct BandwidthMeasurement {
  double gbps = 0;                // best pass, 1e9 bytes per second
  std::int64_t buffer_bytes = 0;  // bytes read per pass
  int passes = 0;                 // timed passes (after one untimed)
};

// DRAM read bandwidth with `threads` OpenMP threads reading at once, each its
// own contiguous part of a buffer far larger than the last-level cache (1 GiB;
// an eighth of the physical memory on machines with less than 8 GiB), first
// touched by the thread that reads it. The read loop is the fastest found
// for `isa` (bandwidth_probe.cpp): 8 aligned vector loads per iteration XORed
// into 4 independent accumulators (zmm for avx512 / avx512_bf16, ymm for
// avx2), plain C++ over uint64 (auto-vectorised to SSE2) for scalar. One
// untimed pass, then the best of 5 timed passes, each timed by the wall clock
// from a barrier before the first read to a barrier after the last.
BandwidthMeasurement read_bandwidth(Isa isa, int threads);

// Evicts the caches: reads a buffer of twice the machine's L3 (every L3
// instance sysfs lists; at least 64 MiB) with `threads` threads, so the next
// call's inputs come from DRAM.
class CacheFlusher {
 public:
  CacheFlusher(Isa isa, int threads);
  void flush() const;
  std::size_t bytes() const { return buffer_.size(); }  // read by every flush

 private:
  Isa isa_;
  int threads_;
  HugePageBuffer buffer_;
};

}  // namespace flashattn::tools
