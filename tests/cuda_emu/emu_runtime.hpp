// Host emulation of the CUDA runtime pieces our kernels use, so that device
// code compiled by g++ runs on the CPU and its index math can be tested
// without a GPU. Include before any kernel header.
//   emu::launch runs the blocks of a grid one after another (x fastest),
//   each as blockDim.x std::threads; warp w is threads 32w..32w+31.
//   Warp collectives (shuffles here, ldmatrix and mma in cuda/mma.cuh)
//   exchange every lane's inputs through per-warp scratch.
//   Misuse is an error out of emu::launch rather than a hang or garbage:
//   an exception in any thread (the first one is rethrown), threads of a
//   block that reach __syncthreads, or lanes of a warp that run collectives,
//   different numbers of times, lanes in different collectives at once, and
//   barriers that wait past emu::barrier_timeout (a deadlock).
#pragma once

// cuda_fp16.h also brings dim3, uint3 and crt/host_defines.h's qualifiers.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

// The qualifiers mean nothing on the host; ours replace host_defines.h's,
// whatever was included before.
// A block-scope `__shared__` variable other than `extern` therefore becomes
// a per-thread local: only the dynamic shared memory below is shared.
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __grid_constant__
#undef __forceinline__
#undef __launch_bounds__
#undef __align__
#define __global__
#define __device__
#define __host__
#define __shared__
#define __grid_constant__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))  // GNU: valid among the decl-specifiers, unlike alignas

namespace emu {

inline constexpr std::size_t kSharedBytes = 256 * 1024;
inline constexpr int kWarpSize = 32;
// Byte of never-written shared memory: 0xFFFF is a NaN as __half and as bf16.
inline constexpr unsigned char kSharedPoison = 0xFF;
// A barrier wait longer than this is reported as a deadlock. Set it before
// emu::launch.
inline std::chrono::milliseconds barrier_timeout{60'000};

}  // namespace emu

namespace flashattn::cuda {
// The dynamic shared memory (`extern __shared__ unsigned char smem_raw[]` in
// the kernels): one buffer, since blocks run one at a time.
alignas(128) inline unsigned char smem_raw[emu::kSharedBytes];
}  // namespace flashattn::cuda

inline thread_local uint3 threadIdx{};
inline thread_local uint3 blockIdx{};
inline thread_local dim3 blockDim{};
inline thread_local dim3 gridDim{};

namespace emu::detail {

// "block (x,y,z) thread t", for error messages.
inline std::string where(uint3 block, unsigned thread) {
  return "block (" + std::to_string(block.x) + "," + std::to_string(block.y) + "," + std::to_string(block.z) +
         ") thread " + std::to_string(thread);
}

[[noreturn]] inline void fault(std::string_view what) {
  throw std::logic_error("cuda_emu: " + std::string(what) + " (" + where(blockIdx, threadIdx.x) + ")");
}

// Unwinds the other threads of a block once one has failed; not an error of
// its own (and no std::exception, so kernel code cannot catch it).
struct Cancelled {};

// A reusable barrier whose members can leave (a thread that exits must not
// hold the others) and whose waits time out.
class Barrier {
 public:
  explicit Barrier(int count) : expected_(count) {}

  void arrive_and_wait(std::string_view what) {
    std::unique_lock lock(mutex_);
    const std::uint64_t phase = phase_;
    if (++arrived_ == expected_) return release();
    if (!released_.wait_for(lock, barrier_timeout, [&] { return phase_ != phase; })) {
      --arrived_;
      lock.unlock();
      fault(std::string(what) + ": the other threads did not arrive (deadlock or divergence)");
    }
  }
  void arrive_and_drop() {
    std::lock_guard lock(mutex_);
    if (--expected_ == arrived_ && arrived_ > 0) release();
  }

 private:
  void release() {  // with mutex_ held
    arrived_ = 0;
    ++phase_;
    released_.notify_all();
  }

  std::mutex mutex_;
  std::condition_variable released_;
  int expected_, arrived_ = 0;
  std::uint64_t phase_ = 0;
};

struct SyncCounts {
  std::int64_t syncthreads = 0, collectives = 0;
};

inline constexpr std::size_t kSlotBytes = 64;

struct Warp {
  struct Slot {
    std::string_view op;
    alignas(16) unsigned char input[kSlotBytes];
  };
  Barrier barrier{kWarpSize};
  // Collective k uses scratch[k % 2]: a lane can write it again only after
  // every lane has reached collective k + 1, so has finished reading it.
  std::array<std::array<Slot, kWarpSize>, 2> scratch;
};

struct Block {
  explicit Block(int threads)
      : barrier(threads), warps(std::make_unique<Warp[]>(threads / kWarpSize)), counts(threads) {}

  void fail(std::exception_ptr e) {
    std::lock_guard lock(error_mutex);
    if (!error) error = e;
    failed = true;
  }

  Barrier barrier;
  std::unique_ptr<Warp[]> warps;
  std::vector<SyncCounts> counts;  // per thread, stored when it exits
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::exception_ptr error;
};

struct ThreadState {
  Block* block = nullptr;
  Warp* warp = nullptr;
  int lane = 0;
  SyncCounts counts;
};
inline thread_local ThreadState this_thread;

inline ThreadState& current() {
  if (!this_thread.block) throw std::logic_error("cuda_emu: device code called outside emu::launch");
  return this_thread;
}

// All 32 lanes call this for the same collective `op`; each gets every
// lane's input, indexed by lane.
template <class In>
std::array<In, kWarpSize> warp_exchange(std::string_view op, const In& mine) {
  static_assert(std::is_trivially_copyable_v<In> && sizeof(In) <= kSlotBytes);
  ThreadState& self = current();
  auto& slots = self.warp->scratch[self.counts.collectives++ % 2];
  slots[self.lane].op = op;
  std::memcpy(slots[self.lane].input, &mine, sizeof(In));
  self.warp->barrier.arrive_and_wait(op);
  if (self.block->failed) throw Cancelled{};
  std::array<In, kWarpSize> all;
  for (int lane = 0; lane < kWarpSize; ++lane) {
    if (slots[lane].op != op)
      fault(std::string(op) + ": lane " + std::to_string(lane) + " is at " + std::string(slots[lane].op) + " instead");
    std::memcpy(&all[lane], slots[lane].input, sizeof(In));
  }
  return all;
}

// [p, p + bytes) in the shared buffer and p aligned to `align`.
inline void check_shared(const void* p, std::size_t bytes, std::size_t align, std::string_view op) {
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  const auto base = reinterpret_cast<std::uintptr_t>(flashattn::cuda::smem_raw);
  if (at < base || at + bytes > base + kSharedBytes) fault(std::string(op) + ": address outside shared memory");
  if (at % align != 0) fault(std::string(op) + ": address not " + std::to_string(align) + "-byte aligned");
}

// Threads of a block must all reach __syncthreads, and lanes of a warp all
// run collectives, equally often: an exited thread only lets the others pass.
inline void check_uniform(const Block& block, uint3 block_idx, int threads) {
  for (int t = 0; t < threads; ++t) {
    const SyncCounts& mine = block.counts[t];
    const SyncCounts& lane0 = block.counts[t - t % kWarpSize];
    if (mine.syncthreads != block.counts[0].syncthreads || mine.collectives != lane0.collectives)
      throw std::logic_error("cuda_emu: " + where(block_idx, t) + " ran " + std::to_string(mine.syncthreads) +
                             " __syncthreads and " + std::to_string(mine.collectives) +
                             " warp collectives; thread 0 ran " + std::to_string(block.counts[0].syncthreads) +
                             " __syncthreads, lane 0 of its warp " + std::to_string(lane0.collectives) +
                             " collectives");
  }
}

template <class Fn>
void run_thread(Block& block, int t, const Fn& body) {
  ThreadState& self = this_thread;
  self = {&block, &block.warps[t / kWarpSize], t % kWarpSize, {}};
  try {
    body();
    // The lane's next scratch slot, which no lane reads before the next
    // collective, names the exit for lanes that run one without it.
    self.warp->scratch[self.counts.collectives % 2][self.lane].op = "exit";
  } catch (const Cancelled&) {
  } catch (...) {
    block.fail(std::current_exception());
  }
  block.counts[t] = self.counts;
  self.warp->barrier.arrive_and_drop();
  block.barrier.arrive_and_drop();
}

inline std::mutex launch_mutex;  // one launch at a time: the shared buffer is global

}  // namespace emu::detail

namespace emu {

// Runs body() as every thread of every block of `grid`, blocks in order
// (x fastest), threads of a block concurrently. Rethrows the first
// exception of a thread; stops at the first failing block.
template <class Fn>
void launch(dim3 grid, int threads_per_block, Fn&& body) {
  if (threads_per_block <= 0 || threads_per_block > 1024 || threads_per_block % kWarpSize != 0)
    throw std::invalid_argument("cuda_emu: threads per block must be whole warps, at most 1024");
  std::lock_guard lock(detail::launch_mutex);
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        const uint3 block_idx{x, y, z};
        std::memset(flashattn::cuda::smem_raw, kSharedPoison, kSharedBytes);
        detail::Block block(threads_per_block);
        {
          std::vector<std::jthread> threads;
          threads.reserve(threads_per_block);
          for (int t = 0; t < threads_per_block; ++t) {
            threads.emplace_back([&, t] {
              threadIdx = uint3{static_cast<unsigned>(t), 0, 0};
              blockIdx = block_idx;
              blockDim = dim3(static_cast<unsigned>(threads_per_block));
              gridDim = grid;
              detail::run_thread(block, t, body);
            });
          }
        }  // joined
        if (block.error) std::rethrow_exception(block.error);
        detail::check_uniform(block, block_idx, threads_per_block);
      }
    }
  }
}

}  // namespace emu

// Block-wide barrier.
inline void __syncthreads() {
  emu::detail::ThreadState& self = emu::detail::current();
  ++self.counts.syncthreads;
  self.block->barrier.arrive_and_wait("__syncthreads");
  if (self.block->failed) throw emu::detail::Cancelled{};
}

// shfl.sync.bfly over the whole warp: lane l gets lane (l ^ lane_mask)'s value.
template <class T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask) {
  if (mask != 0xffffffffu) emu::detail::fault("__shfl_xor_sync: only full-warp masks are emulated");
  if (lane_mask < 0 || lane_mask >= emu::kWarpSize) emu::detail::fault("__shfl_xor_sync: lane mask outside 0..31");
  const auto all = emu::detail::warp_exchange("shfl.sync.bfly", value);
  return all[emu::detail::current().lane ^ lane_mask];
}

// vote.sync.any over the whole warp: whether any lane's predicate is true.
inline bool __any_sync(unsigned mask, bool predicate) {
  if (mask != 0xffffffffu) emu::detail::fault("__any_sync: only full-warp masks are emulated");
  const auto all = emu::detail::warp_exchange("vote.sync.any", predicate);
  for (bool p : all) {
    if (p) return true;
  }
  return false;
}

// bar.warp.sync over the whole warp.
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  if (mask != 0xffffffffu) emu::detail::fault("__syncwarp: only full-warp masks are emulated");
  emu::detail::warp_exchange("bar.warp.sync", mask);
}

// glibc declares __expf but does not export it.
inline float __expf(float x) noexcept { return std::exp(x); }

// ld.global.nc: a plain read on the host.
template <class T>
T __ldg(const T* p) {
  return *p;
}
