// The CUDA forward kernel (FlashAttention-2 on sm80+ tensor cores): one
// thread block of 4 warps owns kBlockM = 64 query rows of one (batch, head);
// each warp owns 16 rows. Per key tile of kBlockN keys:
//   S = Q K^T   mma.sync m16n8k16, Q and K from shared memory by ldmatrix;
//   the score hooks (scale, softcap, alibi, the mask predicate) and the
//   online softmax on S's registers, rows reduced over the 4 lanes that
//   hold them;
//   O += P V    P re-packed from S's registers as the A operand (no shared
//   memory), V by ldmatrix.trans.
// Loads are cp.async: V of the tile is in flight while S is computed, K of
// the next tile while P V is. Shared tiles are rows of kD elements in
// 16-byte chunks, chunk c of row r stored at chunk c ^ (r mod G) within its
// group of G = min(8, kD / 8) chunks, so the 8 rows an ldmatrix reads fall
// in different banks.
// Fixed-length batches; rows and keys past a sequence's end are zero-filled
// by cp.async and never stored. Head dims up to kD with head_dim % 8 == 0.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/mask.hpp"
#include "cuda/mma.cuh"
#include "flashattn/params.hpp"

namespace flashattn::cuda {

inline constexpr int kWarps = 4;
inline constexpr int kThreads = 32 * kWarps;
inline constexpr int kBlockM = 16 * kWarps;

template <int kD>
struct ForwardShape {
  static constexpr int kBlockN = kD <= 128 ? 64 : 32;  // keys per tile: S and O fit the registers
  static constexpr int kChunks = kD / 8;               // 16-byte chunks per row
  static constexpr int kGroup = kChunks < 8 ? kChunks : 8;
  static constexpr int kSmemElems = (kBlockM + 2 * kBlockN) * kD;  // Q, K, V
  static_assert(kD % 32 == 0 && (kChunks % kGroup) == 0, "head dim tiles: multiples of 32, groups of 8 chunks");
};

// Element offset of chunk c of row r in a swizzled tile.
template <int kD>
__device__ __forceinline__ int swizzled(int r, int c) {
  constexpr int G = ForwardShape<kD>::kGroup;
  return r * kD + (((c & ~(G - 1)) | ((c ^ r) & (G - 1))) << 3);
}

// rows x kD tile from global rows (row i at src + i * row_stride), rows at
// or past `valid` and columns at or past `cols` zero.
template <int kD, int kRows, class Elem>
__device__ __forceinline__ void load_tile(Elem* tile, const Elem* src, std::int64_t row_stride, int valid, int cols) {
  constexpr int kChunks = kD / 8;
  for (int idx = threadIdx.x; idx < kRows * kChunks; idx += kThreads) {
    const int r = idx / kChunks, c = idx % kChunks;
    const bool inside = r < valid && c * 8 < cols;
    const Elem* from = inside ? src + r * row_stride + c * 8 : src;  // a valid address even when unread
    cp_async_16(tile + swizzled<kD>(r, c), from, inside ? 16 : 0);
  }
}

// One tile's scores of a warp's two rows per lane (row g and g + 8 of its
// 16): the score hooks and the mask, in the CPU backend's order.
struct RowHooks {
  std::int64_t row[2];     // query row index in the sequence
  core::KeyRange keep[2];  // the mask predicate's kept keys
  float slope;             // alibi slope of the head (0: none)
  float offset;            // seqlen_k - seqlen_q: alibi's diagonal
};

template <int kD, class Elem>
__global__ void __launch_bounds__(kThreads) forward_kernel(const AttentionParams p) {
  using Shape = ForwardShape<kD>;
  constexpr int kBlockN = Shape::kBlockN, kTilesN = kBlockN / 8, kTilesD = kD / 8;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  Elem* sq = reinterpret_cast<Elem*>(smem_raw);
  Elem* sk = sq + kBlockM * kD;
  Elem* sv = sk + kBlockN * kD;

  const int m_block = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c4 = lane % 4;
  const std::int64_t hk = h / (p.heads_q / p.heads_kv);
  const std::int64_t sq_len = p.seqlen_q, sk_len = p.seqlen_k;
  const std::int64_t m0 = static_cast<std::int64_t>(m_block) * kBlockM;
  const int rows_valid = static_cast<int>(std::min<std::int64_t>(kBlockM, sq_len - m0));

  const auto* q = static_cast<const Elem*>(p.q) + b * p.q_stride.batch + m0 * p.q_stride.row + h * p.q_stride.head;
  const auto* k = static_cast<const Elem*>(p.k) + b * p.k_stride.batch + hk * p.k_stride.head;
  const auto* v = static_cast<const Elem*>(p.v) + b * p.v_stride.batch + hk * p.v_stride.head;

  // The block's key range: the union of its rows' kept keys, whole tiles.
  const core::KeyRange keys = core::kept_keys_of_rows(p.mask, m0, m0 + rows_valid, sq_len, sk_len);
  const std::int64_t n_first = keys.begin / kBlockN, n_end = (keys.end + kBlockN - 1) / kBlockN;

  RowHooks hooks;
  for (int i = 0; i < 2; ++i) {
    hooks.row[i] = m0 + warp * 16 + g + 8 * i;
    hooks.keep[i] = core::kept_keys(p.mask, hooks.row[i], sq_len, sk_len);
  }
  hooks.slope = p.alibi_slopes ? p.alibi_slopes[b * p.alibi_batch_stride + h] : 0.0f;
  hooks.offset = static_cast<float>(sk_len - sq_len);

  float o[kTilesD][4];
  for (int t = 0; t < kTilesD; ++t) o[t][0] = o[t][1] = o[t][2] = o[t][3] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};

  load_tile<kD, kBlockM>(sq, q, p.q_stride.row, rows_valid, static_cast<int>(p.head_dim));
  if (n_first < n_end) {
    const std::int64_t j0 = n_first * kBlockN;
    load_tile<kD, kBlockN>(sk, k + j0 * p.k_stride.row, p.k_stride.row,
                           static_cast<int>(std::min<std::int64_t>(kBlockN, sk_len - j0)),
                           static_cast<int>(p.head_dim));
  }
  cp_async_commit();

  for (std::int64_t n = n_first; n < n_end; ++n) {
    const std::int64_t j0 = n * kBlockN;
    const int keys_valid = static_cast<int>(std::min<std::int64_t>(kBlockN, sk_len - j0));
    cp_async_wait<0>();
    __syncthreads();  // K (and Q) resident; every warp done with the last V
    load_tile<kD, kBlockN>(sv, v + j0 * p.v_stride.row, p.v_stride.row, keys_valid, static_cast<int>(p.head_dim_v));
    cp_async_commit();

    // S = Q K^T for the warp's 16 rows x kBlockN keys.
    float s[kTilesN][4];
    for (int t = 0; t < kTilesN; ++t) s[t][0] = s[t][1] = s[t][2] = s[t][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      std::uint32_t a[4];
      ldmatrix_x4(a, sq + swizzled<kD>(warp * 16 + lane % 16, 2 * kk + lane / 16));
#pragma unroll
      for (int j = 0; j < kTilesN / 2; ++j) {
        std::uint32_t bk[4];
        ldmatrix_x4(bk, sk + swizzled<kD>(16 * j + lane % 8 + (lane / 16) * 8, 2 * kk + (lane / 8) % 2));
        mma_16816<Elem>(s[2 * j], a, bk[0], bk[1]);
        mma_16816<Elem>(s[2 * j + 1], a, bk[2], bk[3]);
      }
    }

    // Score hooks, mask and the online softmax, rows g (i = 0) and g + 8 (i = 1).
    const bool whole =
        core::tile_fully_kept(p.mask, m0, m0 + rows_valid, j0, j0 + kBlockN, sq_len, sk_len) && j0 + kBlockN <= sk_len;
#pragma unroll
    for (int t = 0; t < kTilesN; ++t) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e / 2;
        const std::int64_t j = j0 + 8 * t + 2 * c4 + e % 2;
        float x = s[t][e] * p.softmax_scale;
        if (p.softcap > 0.0f) x = p.softcap * tanhf(x / p.softcap);
        if (p.alibi_slopes)
          x -= hooks.slope * fabsf(static_cast<float>(hooks.row[i]) + hooks.offset - static_cast<float>(j));
        if (!whole && (j < hooks.keep[i].begin || j >= hooks.keep[i].end)) x = -INFINITY;
        s[t][e] = x;
      }
    }
    float scale_o[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float mx = row_max[i];
      for (int t = 0; t < kTilesN; ++t) mx = fmaxf(mx, fmaxf(s[t][2 * i], s[t][2 * i + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float ref = mx == -INFINITY ? 0.0f : mx;  // a row with nothing kept yet: exp(-inf) = 0
      scale_o[i] = __expf(row_max[i] - ref);
      row_max[i] = mx;
      float sum = 0.0f;
      for (int t = 0; t < kTilesN; ++t) {
        s[t][2 * i] = __expf(s[t][2 * i] - ref);
        s[t][2 * i + 1] = __expf(s[t][2 * i + 1] - ref);
        sum += s[t][2 * i] + s[t][2 * i + 1];
      }
      row_sum[i] = row_sum[i] * scale_o[i] + sum;  // this lane's part; the quad's sum is taken at the end
    }
#pragma unroll
    for (int t = 0; t < kTilesD; ++t) {
      o[t][0] *= scale_o[0], o[t][1] *= scale_o[0];
      o[t][2] *= scale_o[1], o[t][3] *= scale_o[1];
    }

    cp_async_wait<0>();
    __syncthreads();  // V resident; every warp done with K
    if (n + 1 < n_end) {
      const std::int64_t next = j0 + kBlockN;
      load_tile<kD, kBlockN>(sk, k + next * p.k_stride.row, p.k_stride.row,
                             static_cast<int>(std::min<std::int64_t>(kBlockN, sk_len - next)),
                             static_cast<int>(p.head_dim));
    }
    cp_async_commit();

    // O += P V: P (16 x kBlockN) as A fragments straight from S's registers.
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      const std::uint32_t a[4] = {pack2<Elem>(s[2 * kk][0], s[2 * kk][1]), pack2<Elem>(s[2 * kk][2], s[2 * kk][3]),
                                  pack2<Elem>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                  pack2<Elem>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int j = 0; j < kTilesD / 2; ++j) {
        std::uint32_t bv[4];
        ldmatrix_x4_trans(bv, sv + swizzled<kD>(16 * kk + lane % 8 + ((lane / 8) % 2) * 8, 2 * j + lane / 16));
        mma_16816<Elem>(o[2 * j], a, bv[0], bv[1]);
        mma_16816<Elem>(o[2 * j + 1], a, bv[2], bv[3]);
      }
    }
  }

  // O / l and lse; rows with nothing kept: O = 0, lse = lse_of_empty_row.
  auto* out = static_cast<Elem*>(p.out) + b * p.out_stride.batch + h * p.out_stride.head;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float sum = row_sum[i];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const std::int64_t row = hooks.row[i];
    if (row >= sq_len) continue;
    const bool empty = sum == 0.0f;
    const float inv = empty ? 0.0f : 1.0f / sum;
    Elem* dst = out + row * p.out_stride.row;
    for (int t = 0; t < kTilesD; ++t) {
      const int col = 8 * t + 2 * c4;
      if (col < p.head_dim_v)
        *reinterpret_cast<std::uint32_t*>(dst + col) = pack2<Elem>(o[t][2 * i] * inv, o[t][2 * i + 1] * inv);
    }
    if (p.lse && c4 == 0)
      p.lse[b * p.lse_batch_stride + h * p.lse_head_stride + row] = empty ? p.lse_of_empty_row : row_max[i] + logf(sum);
  }
}

}  // namespace flashattn::cuda
