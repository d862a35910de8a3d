// Stream-order probe: how fast one core reads memory from DRAM while it
// computes, when its loads come in address order and when they come in the
// decode kernels' order (BENCHMARKS.md, session 16).
//
// The buffer is read in 256-byte rows (one kv head's bf16 K row at
// head_dim 128), in groups of 4 keys x 8 kv heads (8 KiB, row (key, head) at
// key * 2 KiB + head * 256 B, as in a (keys, kv heads, dim) cache):
//   address:    rows in address order (key-major);
//   head-major: head by head, the 4 keys of a head together (the decode
//               score pass's order: kKeys keys of one head per transpose).
// Per row, `rounds` x 4 dependent FMA chains stand in for the kernel's math;
// optionally prefetcht0 a fixed distance ahead, in address order (the
// kernels' requests). Single thread; prints GB/s per configuration.
//
//   stream_order_probe [MiB=1024] [repeats=3]
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

constexpr std::size_t kRow = 256, kGroup = 32 * kRow;  // 4 keys x 8 heads

// Row i of a group (0..31) in the visiting order.
std::size_t row_at(bool head_major, int i) { return head_major ? (i % 4) * 8 + i / 4 : i; }

__attribute__((target("avx512f"))) float stream(const char* buf, std::size_t bytes, bool head_major, int rounds,
                                                std::size_t ahead) {
  __m512 sum[4], chain[4];
  const __m512 half = _mm512_set1_ps(0.5f);
  for (int l = 0; l < 4; ++l) sum[l] = _mm512_setzero_ps(), chain[l] = _mm512_set1_ps(static_cast<float>(l));
  for (std::size_t g = 0; g + kGroup <= bytes; g += kGroup) {
    for (int i = 0; i < 32; ++i) {
      const char* row = buf + g + row_at(head_major, i) * kRow;
      if (ahead && g + ahead + kGroup <= bytes) {
        const char* request = buf + g + ahead + i * kRow;
        for (int l = 0; l < 4; ++l) asm volatile("prefetcht0 %0" : : "m"(request[64 * l]));
      }
#pragma GCC unroll 4
      for (int l = 0; l < 4; ++l) sum[l] = _mm512_add_ps(sum[l], _mm512_load_ps(row + 64 * l));
      for (int r = 0; r < rounds; ++r) {
#pragma GCC unroll 4
        for (int l = 0; l < 4; ++l) chain[l] = _mm512_fmadd_ps(chain[l], half, sum[l]);
      }
    }
  }
  float total = 0;
  for (int l = 0; l < 4; ++l) total += _mm512_reduce_add_ps(sum[l]) + _mm512_reduce_add_ps(chain[l]);
  return total;
}

// Reads all of another buffer (at least 256 MiB, past the L3) so that the next
// stream starts from DRAM.
float flush(const std::vector<float>& other) {
  float total = 0;
  for (std::size_t i = 0; i < other.size(); i += 16) total += other[i];
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  if (!__builtin_cpu_supports("avx512f")) {
    std::puts("stream_order_probe: needs AVX-512F; nothing measured");
    return 0;
  }
  const long mib = argc > 1 ? std::atol(argv[1]) : 1024;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 3;
  if (mib < 1 || repeats < 1) {
    std::fprintf(stderr, "usage: stream_order_probe [MiB >= 1, default 1024] [repeats >= 1, default 3]\n");
    return 2;
  }
  const std::size_t bytes = static_cast<std::size_t>(mib) << 20;
  auto* buf = static_cast<float*>(std::aligned_alloc(4096, bytes));
  if (buf == nullptr) {
    std::fprintf(stderr, "stream_order_probe: cannot allocate %ld MiB\n", mib);
    return 2;
  }
  for (std::size_t i = 0; i < bytes / sizeof(float); ++i) buf[i] = 1e-3f;  // no subnormals
  const std::vector<float> other(std::max<std::size_t>(bytes, 256u << 20) / sizeof(float), 1.0f);
  std::printf("%-10s %7s %9s %8s\n", "order", "rounds", "ahead", "GB/s");
  volatile float sink = 0;  // keeps the sums live
  for (const bool head_major : {false, true}) {
    for (const std::size_t ahead : {std::size_t{0}, std::size_t{16384}}) {
      for (const int rounds : {0, 4, 8}) {
        double best = 0;
        for (int r = 0; r < repeats; ++r) {
          sink = sink + flush(other);
          const auto t0 = std::chrono::steady_clock::now();
          sink = sink + stream(reinterpret_cast<const char*>(buf), bytes, head_major, rounds, ahead);
          const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          best = std::max(best, bytes / s / 1e9);
        }
        std::printf("%-10s %7d %9zu %8.1f\n", head_major ? "head-major" : "address", rounds, ahead, best);
      }
    }
  }
  std::free(buf);
  return 0;
}
