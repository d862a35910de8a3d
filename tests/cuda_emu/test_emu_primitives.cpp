// The CUDA emulator against plain loops: mma fed by ldmatrix as a kernel
// feeds it (B both n-major and k-major), the accumulator re-packed as the
// next A operand, cp.async's zero-fill and deferred visibility, shuffles,
// pack2's rounding, and misuse that must reach the caller as an error.
// Matrix values are small multiples of 1/2, so every sum is exact in fp32
// and results compare equal. cuda/mma.cuh is the emulator's: the build
// puts tests/cuda_emu first on the include path.
#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cuda/mma.cuh"
#include "emu_runtime.hpp"

namespace flashattn::cuda {
namespace {

constexpr int kWarp = 32;

// The what() of what a one-block launch throws, or "" if it throws nothing.
template <class Fn>
std::string launch_error(int threads, Fn&& body) {
  try {
    emu::launch(dim3(1), threads, body);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

template <class Elem>
std::uint16_t bits_of(float v) {
  if constexpr (std::is_same_v<Elem, __half>)
    return std::bit_cast<std::uint16_t>(__float2half_rn(v));
  else
    return std::bit_cast<std::uint16_t>(__float2bfloat16_rn(v));
}

// rows x cols of random multiples of 1/2 in [-limit, limit], row-major.
std::vector<float> random_matrix(int rows, int cols, float limit, std::mt19937& rng) {
  std::uniform_int_distribution<int> halves(static_cast<int>(-2 * limit), static_cast<int>(2 * limit));
  std::vector<float> m(static_cast<std::size_t>(rows) * cols);
  for (float& x : m) x = 0.5f * static_cast<float>(halves(rng));
  return m;
}

// Stores m (rows x cols, row-major) as Elem at byte offset `at` of shared
// memory, rows `stride` elements apart.
template <class Elem>
void store_shared(const std::vector<float>& m, int rows, int cols, int at, int stride) {
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const std::uint16_t b = bits_of<Elem>(m[r * cols + c]);
      std::memcpy(smem_raw + at + 2 * (r * stride + c), &b, 2);
    }
}

// Element (row, col) of the 16x8 C/D tile that register i of `lane` holds
// ("Matrix Fragments for mma.m16n8k16 with floating point type").
int c_row(int lane, int i) { return lane / 4 + (i >= 2 ? 8 : 0); }
int c_col(int lane, int i) { return 2 * (lane % 4) + (i & 1); }

// a (m x k) b (k x n) + c (m x n), row-major, in double.
std::vector<float> product(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c, int m,
                           int k, int n) {
  std::vector<float> d(static_cast<std::size_t>(m) * n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double sum = c[i * n + j];
      for (int l = 0; l < k; ++l) sum += static_cast<double>(a[i * k + l]) * b[l * n + j];
      d[i * n + j] = static_cast<float>(sum);
    }
  return d;
}

std::vector<float> transpose(const std::vector<float>& m, int rows, int cols) {
  std::vector<float> t(m.size());
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) t[c * rows + r] = m[r * cols + c];
  return t;
}

template <class Elem>
class MmaTest : public ::testing::Test {};
using ElemTypes = ::testing::Types<__half, __nv_bfloat16>;
TYPED_TEST_SUITE(MmaTest, ElemTypes);

// A (16 x 16) times B (16 x 16, two n-tiles of 8) plus C, with A from a
// row-major tile by ldmatrix and B from an n-rows-of-k tile by ldmatrix or
// from a k-rows-of-n tile by ldmatrix.trans.
TYPED_TEST(MmaTest, LdmatrixFedProductMatchesLoops) {
  using Elem = TypeParam;
  std::mt19937 rng(1);
  const std::vector<float> a = random_matrix(16, 16, 2, rng), b = random_matrix(16, 16, 2, rng),
                           c = random_matrix(16, 16, 8, rng);
  constexpr int kA = 0, kBnk = 512, kBkn = 1024;  // byte offsets of the shared tiles
  std::vector<float> d_nk(256), d_kn(256);
  emu::launch(dim3(1), kWarp, [&] {
    const int lane = threadIdx.x;
    if (lane == 0) {
      store_shared<Elem>(a, 16, 16, kA, 16);
      store_shared<Elem>(transpose(b, 16, 16), 16, 16, kBnk, 16);
      store_shared<Elem>(b, 16, 16, kBkn, 16);
    }
    __syncthreads();
    // a0..a7 by the spec: registers 0-3 are the 8x8 blocks (rows 0-7, k 0-7),
    // (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) in ldmatrix's layout.
    std::uint32_t fa[4];
    ldmatrix_x4(fa, smem_raw + kA + 2 * ((lane % 16) * 16 + (lane / 16) * 8));
    // b0 b1 of n-tile j hold (k 2c.., n g) and (k 8+2c.., n g): rows g of the
    // n-major tile, k 0-7 then 8-15; matrices 2 and 3 are n-tile 1.
    std::uint32_t fb_nk[4];
    ldmatrix_x4(fb_nk, smem_raw + kBnk + 2 * ((lane % 8 + (lane / 16) * 8) * 16 + ((lane / 8) % 2) * 8));
    // The same from k-major rows: each 8x8 block (k, n) transposed.
    std::uint32_t fb_kn[4];
    ldmatrix_x4_trans(fb_kn, smem_raw + kBkn + 2 * ((lane % 8 + ((lane / 8) % 2) * 8) * 16 + (lane / 16) * 8));
    for (int j = 0; j < 2; ++j) {
      float acc_nk[4], acc_kn[4];
      for (int i = 0; i < 4; ++i) acc_nk[i] = acc_kn[i] = c[c_row(lane, i) * 16 + 8 * j + c_col(lane, i)];
      mma_16816<Elem>(acc_nk, fa, fb_nk[2 * j], fb_nk[2 * j + 1]);
      mma_16816<Elem>(acc_kn, fa, fb_kn[2 * j], fb_kn[2 * j + 1]);
      for (int i = 0; i < 4; ++i) {
        d_nk[c_row(lane, i) * 16 + 8 * j + c_col(lane, i)] = acc_nk[i];
        d_kn[c_row(lane, i) * 16 + 8 * j + c_col(lane, i)] = acc_kn[i];
      }
    }
  });
  const std::vector<float> want = product(a, b, c, 16, 16, 16);
  for (int e = 0; e < 256; ++e) {
    EXPECT_EQ(d_nk[e], want[e]) << "row " << e / 16 << " col " << e % 16;
    EXPECT_EQ(d_kn[e], want[e]) << "row " << e / 16 << " col " << e % 16;
  }
}

// S = Q K^T as two 16x8 accumulator tiles, re-packed register by register
// into A operands (the C layout of n-tiles 2kk, 2kk+1 is A's for k-block kk),
// times V: (Q K^T) V.
TYPED_TEST(MmaTest, AccumulatorRepackedAsAOperand) {
  using Elem = TypeParam;
  std::mt19937 rng(2);
  const std::vector<float> q = random_matrix(16, 16, 1, rng), k = random_matrix(16, 16, 1, rng),
                           v = random_matrix(16, 8, 1, rng);
  constexpr int kQ = 0, kK = 512, kV = 1024;
  std::vector<float> o(128);
  emu::launch(dim3(1), kWarp, [&] {
    const int lane = threadIdx.x;
    if (lane == 0) {
      store_shared<Elem>(q, 16, 16, kQ, 16);
      store_shared<Elem>(k, 16, 16, kK, 16);  // K's rows are n rows of k
      store_shared<Elem>(v, 16, 8, kV, 8);
    }
    __syncthreads();
    std::uint32_t fq[4], fk[4], fv[4];
    ldmatrix_x4(fq, smem_raw + kQ + 2 * ((lane % 16) * 16 + (lane / 16) * 8));
    ldmatrix_x4(fk, smem_raw + kK + 2 * ((lane % 8 + (lane / 16) * 8) * 16 + ((lane / 8) % 2) * 8));
    ldmatrix_x4_trans(fv, smem_raw + kV + 2 * ((lane % 16) * 8));  // only matrices 0 and 1 are used
    float s[2][4] = {};
    mma_16816<Elem>(s[0], fq, fk[0], fk[1]);
    mma_16816<Elem>(s[1], fq, fk[2], fk[3]);
    const std::uint32_t p[4] = {pack2<Elem>(s[0][0], s[0][1]), pack2<Elem>(s[0][2], s[0][3]),
                                pack2<Elem>(s[1][0], s[1][1]), pack2<Elem>(s[1][2], s[1][3])};
    float acc[4] = {};
    mma_16816<Elem>(acc, p, fv[0], fv[1]);
    for (int i = 0; i < 4; ++i) o[c_row(lane, i) * 8 + c_col(lane, i)] = acc[i];
  });
  const std::vector<float> s = product(q, transpose(k, 16, 16), std::vector<float>(256), 16, 16, 16);
  const std::vector<float> want = product(s, v, std::vector<float>(128), 16, 16, 8);
  for (int e = 0; e < 128; ++e) EXPECT_EQ(o[e], want[e]) << "row " << e / 8 << " col " << e % 8;
}

TEST(Ldmatrix, RejectsMisalignedAndNonSharedRows) {
  EXPECT_TRUE(contains(launch_error(kWarp,
                                    [] {
                                      std::uint32_t r[4];
                                      ldmatrix_x4(r, smem_raw + 8 + 16 * threadIdx.x);
                                    }),
                       "not 16-byte aligned"));
  alignas(16) static unsigned char global[kWarp * 16];
  EXPECT_TRUE(contains(launch_error(kWarp,
                                    [] {
                                      std::uint32_t r[4];
                                      ldmatrix_x4_trans(r, global + 16 * threadIdx.x);
                                    }),
                       "outside shared memory"));
}

using Row = std::array<unsigned char, 16>;

Row poison_row() {
  Row r;
  r.fill(emu::kSharedPoison);
  return r;
}

TEST(CpAsync, ZeroFillsPastSrcBytesAndLandsOnlyAtWait) {
  alignas(16) static unsigned char src[kWarp][16];
  for (int l = 0; l < kWarp; ++l)
    for (int i = 0; i < 16; ++i) src[l][i] = static_cast<unsigned char>(1 + l + 32 * (i % 4));
  std::vector<Row> after_commit(kWarp), after_wait(kWarp);
  emu::launch(dim3(1), kWarp, [&] {
    const int lane = threadIdx.x;
    unsigned char* dst = smem_raw + 16 * lane;
    cp_async_16(dst, src[lane], lane % 17);  // src-size 0 to 16
    cp_async_commit();
    std::memcpy(after_commit[lane].data(), dst, 16);
    cp_async_wait<0>();
    std::memcpy(after_wait[lane].data(), dst, 16);
  });
  for (int l = 0; l < kWarp; ++l) {
    EXPECT_EQ(after_commit[l], poison_row()) << "lane " << l;
    Row want{};
    std::memcpy(want.data(), src[l], static_cast<std::size_t>(l % 17));
    EXPECT_EQ(after_wait[l], want) << "lane " << l;
  }
}

TEST(CpAsync, WaitLeavesTheNewestGroupsAndUncommittedCopiesPending) {
  alignas(16) static unsigned char src[3][16];
  for (int g = 0; g < 3; ++g) std::memset(src[g], 10 + g, 16);
  std::array<std::array<Row, 3>, 3> seen;  // after wait<1>, wait<0>, commit + wait<0>
  emu::launch(dim3(1), kWarp, [&] {
    if (threadIdx.x != 0) return;
    cp_async_16(smem_raw, src[0], 16);
    cp_async_commit();
    cp_async_16(smem_raw + 16, src[1], 16);
    cp_async_commit();
    cp_async_16(smem_raw + 32, src[2], 16);  // not committed
    const auto snapshot = [&](int when) {
      for (int g = 0; g < 3; ++g) std::memcpy(seen[when][g].data(), smem_raw + 16 * g, 16);
    };
    cp_async_wait<1>();
    snapshot(0);
    std::memset(src[1], 99, 16);  // still pending: read when performed
    cp_async_wait<0>();
    snapshot(1);
    cp_async_commit();
    cp_async_wait<0>();
    snapshot(2);
  });
  const auto filled = [](unsigned char byte) {
    Row r;
    r.fill(byte);
    return r;
  };
  EXPECT_EQ(seen[0][0], filled(10));
  EXPECT_EQ(seen[0][1], poison_row());
  EXPECT_EQ(seen[0][2], poison_row());
  EXPECT_EQ(seen[1][1], filled(99));
  EXPECT_EQ(seen[1][2], poison_row());
  EXPECT_EQ(seen[2][2], filled(12));
}

TEST(CpAsync, RejectsMisalignedAndNonSharedDestinations) {
  alignas(16) static unsigned char src[32];
  EXPECT_TRUE(contains(launch_error(kWarp, [] { cp_async_16(smem_raw + 8, src, 16); }), "not 16-byte aligned"));
  EXPECT_TRUE(contains(launch_error(kWarp, [] { cp_async_16(smem_raw, src + 8, 16); }), "global address"));
  alignas(16) static unsigned char global[16];
  EXPECT_TRUE(contains(launch_error(kWarp, [] { cp_async_16(global, src, 16); }), "outside shared memory"));
  EXPECT_TRUE(contains(launch_error(kWarp, [] { cp_async_16(smem_raw, src, 17); }), "src-size"));
}

TEST(Shuffle, XorExchangesWithinEachWarp) {
  constexpr int kThreads = 2 * kWarp;
  std::vector<std::array<float, 5>> floats(kThreads);
  std::vector<std::array<int, 5>> ints(kThreads);
  std::vector<std::array<unsigned, 5>> unsigneds(kThreads);
  emu::launch(dim3(1), kThreads, [&] {
    const int t = threadIdx.x;
    for (int b = 0; b < 5; ++b) {
      floats[t][b] = __shfl_xor_sync(0xffffffffu, 0.5f + t, 1 << b);
      ints[t][b] = __shfl_xor_sync(0xffffffffu, -t, 1 << b);
      unsigneds[t][b] = __shfl_xor_sync(0xffffffffu, 1000u + t, 1 << b);
    }
  });
  for (int t = 0; t < kThreads; ++t)
    for (int b = 0; b < 5; ++b) {
      const int from = t ^ (1 << b);
      EXPECT_EQ(floats[t][b], 0.5f + from);
      EXPECT_EQ(ints[t][b], -from);
      EXPECT_EQ(unsigneds[t][b], 1000u + from);
    }
}

TEST(Shuffle, SyncwarpOrdersSharedMemoryWithinTheWarp) {
  std::vector<int> bad(2 * kWarp);
  emu::launch(dim3(1), 2 * kWarp, [&] {
    const int t = threadIdx.x;
    if (t % 5 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // late writers
    smem_raw[t] = static_cast<unsigned char>(t);
    __syncwarp();
    if (smem_raw[t ^ 1] != (t ^ 1)) ++bad[t];
  });
  for (int t = 0; t < 2 * kWarp; ++t) EXPECT_EQ(bad[t], 0) << "thread " << t;
}

// The kernels align device constants (cp.async sources) with __align__.
struct AlignProbe {
  char before;
  __align__(16) char aligned;
};
static_assert(offsetof(AlignProbe, aligned) == 16);

TEST(Pack2, RoundsEachToNearestEvenWithXInTheLowHalf) {
  EXPECT_EQ(pack2<__half>(1.0f, -2.0f), 0xC0003C00u);
  // Ties round to even: 1 + 2^-11 down, 1 + 3 2^-11 up; just above a tie up.
  EXPECT_EQ(pack2<__half>(1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f), 0x3C023C00u);
  EXPECT_EQ(pack2<__half>(1.0f + 0x1p-11f + 0x1p-20f, 65519.0f), 0x7BFF3C01u);
  // The tie above the largest finite overflows; subnormal ties go even too.
  EXPECT_EQ(pack2<__half>(65520.0f, 3 * 0x1p-25f), 0x00027C00u);
  EXPECT_EQ(pack2<__half>(0x1p-25f, -0.0f), 0x80000000u);
  EXPECT_EQ(pack2<__nv_bfloat16>(1.0f, -2.0f), 0xC0003F80u);
  EXPECT_EQ(pack2<__nv_bfloat16>(1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f), 0x3F823F80u);
  const std::uint32_t nan = pack2<__half>(std::numeric_limits<float>::quiet_NaN(), 0.0f);
  EXPECT_EQ(nan & 0x7C00u, 0x7C00u);
  EXPECT_NE(nan & 0x03FFu, 0u);
}

TEST(Launch, RunsBlocksInOrderXFastestWithTheirIndices) {
  const dim3 grid(3, 2, 2);
  constexpr int kThreads = 64;
  std::vector<std::array<unsigned, 3>> order;
  std::vector<int> ran(12 * kThreads);
  emu::launch(grid, kThreads, [&] {
    const unsigned block = blockIdx.x + 3 * (blockIdx.y + 2 * blockIdx.z);
    const bool dims = blockDim.x == kThreads && blockDim.y == 1 && gridDim.x == 3 && gridDim.y == 2 && gridDim.z == 2;
    ran[block * kThreads + threadIdx.x] += dims && threadIdx.y == 0 && threadIdx.z == 0 ? 1 : 100;
    if (threadIdx.x == 0) order.push_back({blockIdx.x, blockIdx.y, blockIdx.z});  // blocks run one at a time
  });
  for (int i = 0; i < 12 * kThreads; ++i)
    EXPECT_EQ(ran[i], 1) << "block " << i / kThreads << " thread " << i % kThreads;
  ASSERT_EQ(order.size(), 12u);
  for (unsigned i = 0; i < 12; ++i) EXPECT_EQ(order[i], (std::array<unsigned, 3>{i % 3, i / 3 % 2, i / 6}));
}

TEST(Launch, SyncthreadsOrdersSharedMemoryAndEachBlockStartsPoisoned) {
  constexpr int kThreads = 128;
  std::vector<int> bad(2 * kThreads);
  emu::launch(dim3(2), kThreads, [&] {
    const int t = threadIdx.x, at = blockIdx.x * kThreads + t;
    if (smem_raw[t] != emu::kSharedPoison) ++bad[at];
    if (t % 7 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // late writers
    smem_raw[t] = static_cast<unsigned char>(t);
    __syncthreads();
    if (smem_raw[(t + 1) % kThreads] != (t + 1) % kThreads) ++bad[at];
  });
  for (int i = 0; i < 2 * kThreads; ++i) EXPECT_EQ(bad[i], 0) << "block " << i / kThreads << " thread " << i % kThreads;
}

TEST(Launch, ExceptionInAThreadReachesTheCaller) {
  // Thread 37 throws while the others wait for it at __syncthreads and its
  // warp-mates at a shuffle.
  EXPECT_EQ(launch_error(128,
                         [] {
                           if (threadIdx.x == 37) throw std::runtime_error("thread 37 failed");
                           if (threadIdx.x / 32 == 1) __shfl_xor_sync(0xffffffffu, 1.0f, 1);
                           __syncthreads();
                         }),
            "thread 37 failed");
}

TEST(Launch, DivergenceIsAnErrorNotAHang) {
  EXPECT_TRUE(contains(launch_error(64,
                                    [] {
                                      if (threadIdx.x == 3) return;
                                      __syncthreads();
                                    }),
                       "block (0,0,0) thread 3 ran 0 __syncthreads"));
  EXPECT_TRUE(contains(launch_error(kWarp,
                                    [] {
                                      if (threadIdx.x < 16) {
                                        __shfl_xor_sync(0xffffffffu, 1, 1);
                                      } else {
                                        std::uint32_t r[4];
                                        ldmatrix_x4(r, smem_raw);
                                      }
                                    }),
                       " instead"));
  // Half a warp at a shuffle, the other half at __syncthreads: a deadlock.
  const auto saved = emu::barrier_timeout;
  emu::barrier_timeout = std::chrono::milliseconds(200);
  const std::string deadlock = launch_error(kWarp, [] {
    if (threadIdx.x < 16)
      __shfl_xor_sync(0xffffffffu, 1, 1);
    else
      __syncthreads();
  });
  emu::barrier_timeout = saved;
  EXPECT_TRUE(contains(deadlock, "did not arrive")) << deadlock;
}

TEST(Launch, RejectsPartialWarpsAndDeviceCodeOutsideALaunch) {
  EXPECT_THROW(emu::launch(dim3(1), 48, [] {}), std::invalid_argument);
  EXPECT_THROW(__syncthreads(), std::logic_error);
  EXPECT_THROW(cp_async_commit(), std::logic_error);
}

}  // namespace
}  // namespace flashattn::cuda
