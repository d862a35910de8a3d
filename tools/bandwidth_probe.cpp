// In-process DRAM read bandwidth (see bandwidth_probe.hpp).
//
// The read loops. Measured on the development machine (Zen 5, 2 vCPUs, 1 GiB,
// best of 5): zmm loads 31 GB/s on one thread and 35-37 GB/s on two; ymm
// loads, plain C++ (SSE2), software prefetch 2 KiB ahead and non-temporal
// loads (vmovntdqa) all land within 3% of that, run to run noise on a shared
// machine. The stream is bound by DRAM, not by the loads, so the simplest
// loop of the ISA's width is kept: 8 loads per iteration into 4 XOR chains
// (XOR is 1-cycle latency; 4 chains never stall the loads).
#include "bandwidth_probe.hpp"

#include <immintrin.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <exception>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "bench_util.hpp"
#include "cpu/isa_region.hpp"

namespace flashattn::tools {
namespace {

constexpr std::size_t kProbeBytes = std::size_t{1} << 30;
constexpr std::size_t kMinFlushBytes = std::size_t{64} << 20;
constexpr std::size_t kPartAlignment = 4096;  // every thread's part: whole pages, whole loop iterations
constexpr int kTimedPasses = 5;

// Every loop's result lands here, so no read is dead code.
volatile std::uint64_t g_sink = 0;

}  // namespace
}  // namespace flashattn::tools

FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX512)
namespace flashattn::tools {
namespace {

// 512 bytes (8 cache lines) per iteration; `bytes` a multiple of 512, `p` 64-byte aligned.
std::uint64_t read_avx512(const std::byte* p, std::size_t bytes) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (std::size_t at = 0; at < bytes; at += 512) {
    const std::byte* x = p + at;
    a0 = _mm512_xor_si512(a0, _mm512_load_si512(x));
    a1 = _mm512_xor_si512(a1, _mm512_load_si512(x + 64));
    a2 = _mm512_xor_si512(a2, _mm512_load_si512(x + 128));
    a3 = _mm512_xor_si512(a3, _mm512_load_si512(x + 192));
    a0 = _mm512_xor_si512(a0, _mm512_load_si512(x + 256));
    a1 = _mm512_xor_si512(a1, _mm512_load_si512(x + 320));
    a2 = _mm512_xor_si512(a2, _mm512_load_si512(x + 384));
    a3 = _mm512_xor_si512(a3, _mm512_load_si512(x + 448));
  }
  const __m512i all = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
  alignas(64) std::uint64_t lanes[8];  // not _mm512_reduce_add_epi64: GCC 12's header warns (-Wuninitialized)
  _mm512_store_si512(lanes, all);
  std::uint64_t sum = 0;
  for (std::uint64_t lane : lanes) sum += lane;
  return sum;
}

}  // namespace
}  // namespace flashattn::tools
FLASHATTN_ISA_END

FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX2)
namespace flashattn::tools {
namespace {

// 256 bytes per iteration; `bytes` a multiple of 256, `p` 32-byte aligned.
std::uint64_t read_avx2(const std::byte* p, std::size_t bytes) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (std::size_t at = 0; at < bytes; at += 256) {
    const auto* x = reinterpret_cast<const __m256i*>(p + at);
    a0 = _mm256_xor_si256(a0, _mm256_load_si256(x));
    a1 = _mm256_xor_si256(a1, _mm256_load_si256(x + 1));
    a2 = _mm256_xor_si256(a2, _mm256_load_si256(x + 2));
    a3 = _mm256_xor_si256(a3, _mm256_load_si256(x + 3));
    a0 = _mm256_xor_si256(a0, _mm256_load_si256(x + 4));
    a1 = _mm256_xor_si256(a1, _mm256_load_si256(x + 5));
    a2 = _mm256_xor_si256(a2, _mm256_load_si256(x + 6));
    a3 = _mm256_xor_si256(a3, _mm256_load_si256(x + 7));
  }
  const __m256i all = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  alignas(32) std::uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), all);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

}  // namespace
}  // namespace flashattn::tools
FLASHATTN_ISA_END

namespace flashattn::tools {
namespace {

// Baseline x86-64: plain C++, which GCC vectorises with SSE2 (16-byte loads).
std::uint64_t read_scalar(const std::byte* p, std::size_t bytes) {
  const auto* x = reinterpret_cast<const std::uint64_t*>(p);
  std::uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (std::size_t i = 0; i < bytes / 8; i += 4) a0 ^= x[i], a1 ^= x[i + 1], a2 ^= x[i + 2], a3 ^= x[i + 3];
  return a0 ^ a1 ^ a2 ^ a3;
}

using ReadLoop = std::uint64_t (*)(const std::byte* p, std::size_t bytes);

ReadLoop read_loop_for(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return read_scalar;
    case Isa::avx2:
      return read_avx2;
    case Isa::avx512:
    case Isa::avx512_bf16:
      return read_avx512;
  }
  return read_scalar;
}

// Bytes of each thread's part of a `bytes` buffer.
std::size_t part_bytes(std::size_t bytes, int threads) {
  return bytes / static_cast<std::size_t>(threads) / kPartAlignment * kPartAlignment;
}

// Every thread writes its own part (first touch: the pages land near the
// thread that reads them), every 8 bytes a different value: pages of equal
// content could be merged by the host (KSM, zero pages) and read from cache.
void first_touch(const HugePageBuffer& buffer, int threads) {
#pragma omp parallel num_threads(threads)
  {
    const std::size_t part = part_bytes(buffer.size(), omp_get_num_threads());
    const std::size_t first = part * static_cast<std::size_t>(omp_get_thread_num());
    auto* words = reinterpret_cast<std::uint64_t*>(buffer.data() + first);
    for (std::size_t i = 0; i < part / sizeof(std::uint64_t); ++i)
      words[i] = (first / sizeof(std::uint64_t) + i) * 0x9e3779b97f4a7c15ull;
  }
}

struct ReadPass {
  double seconds = 0;
  std::size_t bytes = 0;
};

// `threads` threads read their parts at once: wall time from a barrier
// before the first load to one after the last.
ReadPass read_pass(ReadLoop loop, const HugePageBuffer& buffer, int threads) {
  ReadPass pass;
  double start = 0;
  std::uint64_t sum = 0;
#pragma omp parallel num_threads(threads) reduction(^ : sum)
  {
    const int team = omp_get_num_threads();  // OpenMP may grant fewer threads than asked
    const std::size_t part = part_bytes(buffer.size(), team);
#pragma omp barrier
#pragma omp single
    start = omp_get_wtime();
    sum ^= loop(buffer.data() + part * static_cast<std::size_t>(omp_get_thread_num()), part);
#pragma omp barrier
#pragma omp single
    pass = {omp_get_wtime() - start, part * static_cast<std::size_t>(team)};
  }
  g_sink = sum;
  return pass;
}

std::size_t probe_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  const double physical = pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0;
  if (physical > 0 && physical < 8.0 * kProbeBytes) {
    return std::max<std::size_t>(static_cast<std::size_t>(physical / 8) / kHugePageBytes * kHugePageBytes,
                                 kMinFlushBytes);
  }
  return kProbeBytes;
}

// "32768K" / "1M" / "512" (sysfs cache sizes) in bytes; 0 when unreadable.
std::size_t parse_cache_size(const std::string& text) {
  std::size_t pos = 0;
  unsigned long long n = 0;
  try {
    n = std::stoull(text, &pos);
  } catch (const std::exception&) {
    return 0;
  }
  const char unit = pos < text.size() ? text[pos] : ' ';
  return static_cast<std::size_t>(n) * (unit == 'K' ? 1024 : unit == 'M' ? 1024 * 1024 : 1);
}

std::string read_line(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// All the machine's L3, from sysfs: the size of each distinct L3 instance
// (CPUs sharing one list one), summed. sysconf(_SC_LEVEL3_CACHE_SIZE) is no
// substitute: in VMs it can report the host's total (384 MiB where the guest
// sees one 32 MiB instance).
std::size_t total_l3_bytes() {
  std::set<std::string> seen;
  std::size_t total = 0;
  std::error_code error;
  for (const auto& cpu : std::filesystem::directory_iterator("/sys/devices/system/cpu", error)) {
    const std::string name = cpu.path().filename().string();
    if (name.size() < 4 || name.compare(0, 3, "cpu") != 0 || !std::isdigit(static_cast<unsigned char>(name[3])))
      continue;
    for (const auto& index : std::filesystem::directory_iterator(cpu.path() / "cache", error)) {
      if (read_line(index.path() / "level") != "3") continue;
      if (seen.insert(read_line(index.path() / "shared_cpu_list")).second) {
        total += parse_cache_size(read_line(index.path() / "size"));
      }
    }
  }
  if (total > 0) return total;
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  return l3 > 0 ? static_cast<std::size_t>(l3) : kMinFlushBytes / 2;
}

std::size_t flush_bytes() {
  return (std::max(2 * total_l3_bytes(), kMinFlushBytes) + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
}

}  // namespace

HugePageBuffer::HugePageBuffer(std::size_t bytes) : data_(HugePageAligned<std::byte>{}.allocate(bytes)), bytes_(bytes) {
  advise_huge_pages(data_, bytes_);
}

HugePageBuffer::~HugePageBuffer() { HugePageAligned<std::byte>{}.deallocate(data_, bytes_); }

BandwidthMeasurement read_bandwidth(Isa isa, int threads) {
  threads = std::max(threads, 1);
  const ReadLoop loop = read_loop_for(isa);
  const HugePageBuffer buffer(probe_bytes());
  first_touch(buffer, threads);
  read_pass(loop, buffer, threads);  // untimed: clocks up, TLB and prefetchers warm
  BandwidthMeasurement m;
  m.passes = kTimedPasses;
  for (int at = 0; at < kTimedPasses; ++at) {
    const ReadPass pass = read_pass(loop, buffer, threads);
    m.buffer_bytes = static_cast<std::int64_t>(pass.bytes);
    m.gbps = std::max(m.gbps, static_cast<double>(pass.bytes) / pass.seconds / 1e9);
  }
  return m;
}

CacheFlusher::CacheFlusher(Isa isa, int threads) : isa_(isa), threads_(std::max(threads, 1)), buffer_(flush_bytes()) {
  first_touch(buffer_, threads_);
}

void CacheFlusher::flush() const { read_pass(read_loop_for(isa_), buffer_, threads_); }

}  // namespace flashattn::tools
