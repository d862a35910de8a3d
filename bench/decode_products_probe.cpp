// Decode products probe: how fast two cores read an f32 KV cache from DRAM
// while they do the decode kernels' fp32 products, in the kernels' order and
// in address order (BENCHMARKS.md, session 27). No library code: the loops
// below are the products of DecodePartials<F32Math> and DecodeValues<F32Math>
// at GQA 4 (4 query lanes per kv head), without the softmax, the score
// transposes or any bookkeeping, so they bound what the f32 decode row can
// read.
//
// The cache is (keys, 8 kv heads, 128) f32, K and V apart: a key row is
// 4 KiB, a head's row 512 B. Each thread streams its own 64 MiB of K and of
// V in tiles of 128 keys, the tile's K then its V, requesting rows 16 KiB
// ahead in address order with prefetcht0 (the kernels' scheme). Orders:
//   kernel:  scores and values take 4 keys of one head per step (the
//            kernels' order today);
//   address: scores take one key x 4 heads per step, values one key row of
//            one head per step (every row read once, in address order);
//   mixed:   kernel-order scores, address-order values.
// Each pass runs right after a 2-thread read of another 512 MiB buffer,
// which is timed too; the probe prints the pass's rate as a fraction of that
// read (median and range over the repeats), and the same loop's rate warm in
// L2 (its compute ceiling).
//
//   decode_products_probe [repeats=5] [MiB per thread and tensor=64]
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

constexpr std::size_t kHeadRow = 512, kKeyRow = 8 * kHeadRow, kTileKeys = 128, kLeadRows = 16384 / kHeadRow;
constexpr int kLanes = 4, kDim = 128;

enum class Order { kernel, address, mixed };

// The per-thread L1 state of the products: Q, the tile's sums and P.
struct alignas(64) Lanes {
  float q[8 * kLanes * kDim];
  float sums[8 * kLanes * kDim];
  float p[kTileKeys * 8 * kLanes];
  float sink;
};

#pragma GCC push_options
#pragma GCC target("avx512f")

inline void request_row(const char* row) {
  for (int l = 0; l < 8; ++l) asm volatile("prefetcht0 %0" : : "m"(row[64 * l]));
}

// Scores of keys j..j+3 of head s (4 x 4 partial sums, summed into sink).
inline void scores_keys(const char* k, std::size_t j, int s, Lanes& w) {
  __m512 acc[16];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const float* q = w.q + s * kLanes * kDim;
  for (int c = 0; c < kDim / 16; ++c) {
    __m512 kc[4];
    for (int r = 0; r < 4; ++r) kc[r] = _mm512_load_ps(k + (j + r) * kKeyRow + s * kHeadRow + 64 * c);
    for (int l = 0; l < kLanes; ++l) {
      const __m512 ql = _mm512_load_ps(q + l * kDim + 16 * c);
      for (int r = 0; r < 4; ++r) acc[r * 4 + l] = _mm512_fmadd_ps(kc[r], ql, acc[r * 4 + l]);
    }
  }
  for (int n = 8; n >= 1; n /= 2)
    for (int i = 0; i < n; ++i) acc[i] = _mm512_add_ps(acc[i], acc[i + n]);
  w.sink += _mm512_reduce_add_ps(acc[0]);
}

// Scores of key j, heads s..s+3.
inline void scores_heads(const char* k, std::size_t j, int s, Lanes& w) {
  __m512 acc[16];
  for (auto& a : acc) a = _mm512_setzero_ps();
  for (int c = 0; c < kDim / 16; ++c) {
    for (int h = 0; h < 4; ++h) {
      const __m512 kc = _mm512_load_ps(k + j * kKeyRow + (s + h) * kHeadRow + 64 * c);
      const float* q = w.q + (s + h) * kLanes * kDim + 16 * c;
      for (int l = 0; l < kLanes; ++l)
        acc[h * 4 + l] = _mm512_fmadd_ps(kc, _mm512_load_ps(q + l * kDim), acc[h * 4 + l]);
    }
  }
  for (int n = 8; n >= 1; n /= 2)
    for (int i = 0; i < n; ++i) acc[i] = _mm512_add_ps(acc[i], acc[i + n]);
  w.sink += _mm512_reduce_add_ps(acc[0]);
}

// sums[s][lane] += p V for keys j..j+Keys-1 of head s, 4 columns of 16 at a time.
template <int Keys>
inline void values_keys(const char* v, std::size_t j, int s, Lanes& w) {
  for (int c0 = 0; c0 < kDim; c0 += 64) {
    __m512 x[Keys][4];
    for (int r = 0; r < Keys; ++r)
      for (int c = 0; c < 4; ++c) x[r][c] = _mm512_load_ps(v + (j + r) * kKeyRow + s * kHeadRow + 4 * (c0 + 16 * c));
    for (int l = 0; l < kLanes; ++l) {
      float* row = w.sums + (s * kLanes + l) * kDim + c0;
      __m512 sum[4];
      for (int c = 0; c < 4; ++c) sum[c] = _mm512_load_ps(row + 16 * c);
      for (int r = 0; r < Keys; ++r) {
        const __m512 pl = _mm512_set1_ps(w.p[((j + r) % kTileKeys * 8 + s) * kLanes + l]);
        for (int c = 0; c < 4; ++c) sum[c] = _mm512_fmadd_ps(pl, x[r][c], sum[c]);
      }
      for (int c = 0; c < 4; ++c) _mm512_store_ps(row + 16 * c, sum[c]);
    }
  }
}

// One tile pass over `keys` keys at base: products of kind Scores (else
// values) in the given order, requests kLeadRows rows ahead in address order.
template <bool Scores>
void tile_pass(const char* base, std::size_t keys, bool address, Lanes& w) {
  std::size_t next = kLeadRows;
  auto request = [&](std::size_t rows) {
    for (std::size_t i = 0; i < rows; ++i, ++next) request_row(base + next * kHeadRow);
  };
  if (!address) {  // 4 keys of one head per step
    for (std::size_t j = 0; j < keys; j += 4)
      for (int s = 0; s < 8; ++s) {
        request(4);
        if constexpr (Scores)
          scores_keys(base, j, s, w);
        else
          values_keys<4>(base, j, s, w);
      }
    return;
  }
  for (std::size_t j = 0; j < keys; ++j) {
    if constexpr (Scores) {
      for (int s = 0; s < 8; s += 4) request(4), scores_heads(base, j, s, w);
    } else {
      for (int s = 0; s < 8; ++s) request(1), values_keys<1>(base, j, s, w);
    }
  }
}

// Both threads stream `keys` keys of K and V each (thread t at key t *
// stride), `reps` times; returns GB/s of K and V read.
double stream(const char* k, const char* v, std::size_t keys, std::size_t stride, Order order, int reps) {
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(2)
  {
    auto* w = static_cast<Lanes*>(std::aligned_alloc(64, sizeof(Lanes)));
    std::memset(w, 0, sizeof(Lanes));
    for (float& x : w->q) x = 1e-2f;
    for (float& x : w->p) x = 1e-3f;
    const std::size_t first = static_cast<std::size_t>(omp_get_thread_num()) * stride * kKeyRow;
    const std::size_t tile = std::min(keys, kTileKeys);
    for (int rep = 0; rep < reps; ++rep) {
      for (std::size_t j = 0; j < keys; j += tile) {
        tile_pass<true>(k + first + j * kKeyRow, tile, order == Order::address, *w);
        tile_pass<false>(v + first + j * kKeyRow, tile, order != Order::kernel, *w);
      }
    }
    if (w->sink == 12345.f && w->sums[7] == 0.f) std::puts("");  // keeps the products live
    std::free(w);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 2.0 * 2.0 * static_cast<double>(keys * kKeyRow) * reps / s / 1e9;
}

// A 2-thread read of all of `buf` (zmm loads in address order); GB/s.
double read_all(const char* buf, std::size_t bytes) {
  const auto t0 = std::chrono::steady_clock::now();
  int total = 0;
#pragma omp parallel num_threads(2) reduction(^ : total)
  {
    const std::size_t part = bytes / 2, first = part * static_cast<std::size_t>(omp_get_thread_num());
    __m512i a = _mm512_setzero_si512(), b = a;
    for (std::size_t i = first; i < first + part; i += 128) {
      a = _mm512_xor_si512(a, _mm512_load_si512(buf + i));
      b = _mm512_xor_si512(b, _mm512_load_si512(buf + i + 64));
    }
    total ^= _mm512_reduce_or_epi32(_mm512_xor_si512(a, b));
  }
  if (total == 17) std::puts("");  // keeps the loads live
  return static_cast<double>(bytes) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
         1e9;
}

#pragma GCC pop_options

// bytes on a 2 MiB boundary (aligned_alloc wants a multiple of it), filled.
char* filled(std::size_t bytes, char value) {
  constexpr std::size_t kAlign = std::size_t{2} << 20;
  bytes = (bytes + kAlign - 1) / kAlign * kAlign;
  auto* p = static_cast<char*>(std::aligned_alloc(kAlign, bytes));
  if (p != nullptr) std::memset(p, value, bytes);
  return p;
}

double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  return x[x.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (!__builtin_cpu_supports("avx512f")) {
    std::puts("decode_products_probe: needs AVX-512F; nothing measured");
    return 0;
  }
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 5;
  const long mib = argc > 2 ? std::atol(argv[2]) : 64;
  if (repeats < 1 || mib < 1) {
    std::fprintf(stderr, "usage: decode_products_probe [repeats >= 1, default 5] [MiB >= 1, default 64]\n");
    return 2;
  }
  const std::size_t keys = std::max<std::size_t>(kTileKeys, (static_cast<std::size_t>(mib) << 20) / kKeyRow);
  const std::size_t tensor = 2 * keys * kKeyRow + 64 * 1024, flush_bytes = std::size_t{512} << 20;
  // 0x3c bytes: f32 values near 0.0115, no subnormals.
  char *k = filled(tensor, 0x3c), *v = filled(tensor, 0x3c), *other = filled(flush_bytes, 1);
  if (k == nullptr || v == nullptr || other == nullptr) {
    std::fprintf(stderr, "decode_products_probe: cannot allocate the buffers\n");
    return 2;
  }
  const struct {
    Order order;
    const char* name;
  } rows[] = {{Order::kernel, "kernel order"}, {Order::address, "address order"}, {Order::mixed, "mixed"}};
  std::vector<double> reads;
  std::vector<double> fraction[3];
  for (int r = 0; r < repeats; ++r) {
    for (int i = 0; i < 3; ++i) {
      const double read = read_all(other, flush_bytes);
      reads.push_back(read);
      fraction[i].push_back(stream(k, v, keys, keys, rows[i].order, 1) / read);
    }
  }
  std::printf("2-thread read before each pass: median %.1f GB/s (%.1f-%.1f)\n", median(reads),
              *std::min_element(reads.begin(), reads.end()), *std::max_element(reads.begin(), reads.end()));
  std::printf("%-14s %26s %18s\n", "order", "from DRAM, of the read", "warm in L2 GB/s");
  for (int i = 0; i < 3; ++i) {
    const auto [lo, hi] = std::minmax_element(fraction[i].begin(), fraction[i].end());
    const double warm = stream(k, v, 32, 64, rows[i].order, 400);  // 256 KiB of K and V a thread
    std::printf("%-14s %12.3f (%.3f-%.3f) %18.1f\n", rows[i].name, median(fraction[i]), *lo, *hi, warm);
  }
  std::free(k), std::free(v), std::free(other);
  return 0;
}
