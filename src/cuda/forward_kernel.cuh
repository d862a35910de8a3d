// The CUDA forward kernel (FlashAttention-2 on sm80+ tensor cores): one
// thread block of 4 warps owns kBlockM rows of one (batch, head slot), each
// warp kRowTiles tiles of 16 rows (128 rows, 2 tiles, up to head-dim tile
// 128; 64 rows, 1 tile, above); a row is a (query row, query head) pair
// (ForwardPlan's pack). Keys by warp (kKeysByWarp, decoding's short
// queries): the block's 16 rows are every warp's, each warp computes its own
// 16 keys of each 64-key tile, and merge_warps combines the four softmax
// states at the end. Per key tile of kBlockN keys:
//   S = Q K^T   mma.sync m16n8k16, Q and K from shared memory by ldmatrix;
//   the score hooks (scale, softcap, alibi, the mask predicate), the online
//   softmax and dropout on S's registers, rows reduced over the 4 lanes
//   that hold them;
//   O += P V    P re-packed from S's registers as the A operand (no shared
//   memory), V by ldmatrix.trans.
// Loads are cp.async when rows are 16-byte aligned (element loads
// otherwise), in two stages: K and V of the next tile are in flight while
// the whole tile is computed, behind one barrier per tile. Shared tiles are
// rows of kD elements in 16-byte chunks, chunk c of row r stored at chunk
// c ^ (r mod G) within its group of G = min(8, kD / 8) chunks, so the 8
// rows an ldmatrix reads fall in different banks. Rows and keys past a
// sequence's end, and columns past the head dim, are zero in shared memory
// and never stored.
// Split-KV (plan.splits > 1): block x covers key chunk x / m_blocks and
// writes fp32 partials (out / l, lse) that merge_kernel.cuh combines.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/dropout.hpp"
#include "core/mask.hpp"
#include "core/rotary.hpp"
#include "core/split.hpp"
#include "cuda/convert.cuh"
#include "cuda/forward_plan.hpp"
#include "cuda/mma.cuh"
#include "cuda/sequence_bounds.cuh"
#include "flashattn/params.hpp"

namespace flashattn::cuda {

struct ForwardArgs {
  AttentionParams p;
  ForwardPlan plan;
  float* partial_out = nullptr;  // plan.splits > 1: (splits, partial_rows, heads_q, head_dim_v)
  float* partial_lse = nullptr;  // (splits, partial_rows, heads_q); -inf: the chunk kept no key
};

// Points args' split partials into a workspace of plan.workspace_bytes.
inline void bind_partials(ForwardArgs& args, void* workspace) {
  args.partial_out = static_cast<float*>(workspace);
  args.partial_lse = args.partial_out + args.plan.splits * args.plan.partial_rows * args.p.heads_q * args.p.head_dim_v;
}

template <int kD, bool kKeysByWarp = false>
struct ForwardShape {
  static constexpr TileShape kShape = tile_shape(kD, kKeysByWarp);
  static constexpr int kRowTiles = kShape.row_tiles;            // 16-row tiles per warp
  static constexpr int kBlockM = kShape.block_m;                // rows per block
  static constexpr int kBlockN = kShape.block_n;                // keys per tile
  static constexpr int kWarpKeys = kKeysByWarp ? 16 : kBlockN;  // a warp's keys of a tile
  static constexpr int kChunks = kD / 8;                        // 16-byte chunks per row
  static constexpr int kGroup = kChunks < 8 ? kChunks : 8;
  static constexpr int kSmemElems = (kBlockM + 4 * kBlockN) * kD;  // Q, two stages of K and V
  static_assert(kD % 32 == 0 && (kChunks % kGroup) == 0, "head dim tiles: multiples of 32, groups of 8 chunks");
};

// A valid global source for cp.async's zero-fill of chunks outside the tensors (read 0 bytes).
static __device__ __align__(16) const std::uint32_t kZeroSource[4] = {0, 0, 0, 0};

// Element offset of chunk c of row r in a swizzled tile.
template <int kD>
__device__ __forceinline__ int swizzled(int r, int c) {
  constexpr int G = ForwardShape<kD>::kGroup;
  return r * kD + (((c & ~(G - 1)) | ((c ^ r) & (G - 1))) << 3);
}

// One lane's ldmatrix addresses in a swizzled tile: row lane_row + R,
// chunk lane_chunk + C, with lane_chunk 0 or 1, R a multiple of 8 and C
// even (constants of the unrolled loops). Then the swizzle's XOR involves
// the lane's constant y and C alone, so each address is a constant XOR and
// offset from two per-lane values, not a swizzle formed per ldmatrix.
template <int kD>
struct SwizzledLane {
  static constexpr int G = ForwardShape<kD>::kGroup;
  int base;  // lane_row kD
  int y;     // (lane_chunk ^ lane_row) mod G
  __device__ __forceinline__ SwizzledLane(int lane_row, int lane_chunk)
      : base(lane_row * kD), y((lane_chunk ^ lane_row) & (G - 1)) {}
  // == swizzled<kD>(lane_row + R, lane_chunk + C)
  __device__ __forceinline__ int at(int R, int C) const {
    return base + R * kD + (((C & ~(G - 1)) | ((C & (G - 1)) ^ y)) << 3);
  }
};

// A kRows x kD tile from global rows (row r at row_at(r), an Elem*), rows
// at or past `valid` (>= 1) and columns at or past `cols` zero. row_stride
// nonzero: the rows are evenly spaced, row r at row_at(0) + r row_stride,
// with no per-row lookup (contiguous k and v; q without GQA packing). vec16:
// cp.async of 16-byte chunks (committed by the caller), thread t taking
// chunks t + i kThreads; every row address is formed before the first copy,
// so a paged tile's page-table reads are in flight together. Else element
// loads stored at once (the tile is free: the caller has synchronised).
template <int kD, int kRows, class Elem, class RowAt>
__device__ __forceinline__ void load_tile(Elem* tile, RowAt row_at, std::int64_t row_stride, int valid, int cols,
                                          bool vec16) {
  constexpr int kChunks = kD / 8, kTotal = kRows * kChunks, kPerThread = (kTotal + kThreads - 1) / kThreads;
  if (vec16) {
    const Elem* rows[kPerThread];
    if (row_stride != 0) {
      const Elem* first = row_at(0);
#pragma unroll
      for (int i = 0; i < kPerThread; ++i)
        rows[i] = first + ((static_cast<int>(threadIdx.x) + i * kThreads) / kChunks) * row_stride;
    } else {
#pragma unroll
      for (int i = 0; i < kPerThread; ++i)  // rows past `valid` look up the last valid one (never copied)
        rows[i] = row_at(std::min((static_cast<int>(threadIdx.x) + i * kThreads) / kChunks, valid - 1));
    }
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int idx = static_cast<int>(threadIdx.x) + i * kThreads, r = idx / kChunks, c = idx % kChunks;
      if (kTotal % kThreads != 0 && idx >= kTotal) break;  // a last partial round (16-row Q tiles of 32 columns)
      const bool inside = r < valid && c * 8 < cols;
      cp_async_16(tile + swizzled<kD>(r, c), inside ? static_cast<const void*>(rows[i] + c * 8) : kZeroSource,
                  inside ? 16 : 0);
    }
    return;
  }
  auto* bits = reinterpret_cast<std::uint16_t*>(tile);
  for (int idx = threadIdx.x; idx < kRows * kD; idx += kThreads) {
    const int r = idx / kD, col = idx % kD;
    const bool inside = r < valid && col < cols;
    bits[swizzled<kD>(r, col / 8) + col % 8] =
        inside ? reinterpret_cast<const std::uint16_t*>(row_at(r))[col] : std::uint16_t{0};
  }
}

// Rotary of q (params.rotary.rotate_q), as flash-attn's kv-cache kernel
// does it: the block's resident Q tile turned in place before any ldmatrix
// reads it, row r (query row (m0 + r) / pack) by the angle of
// core::rotary_position_of_q, in fp32 rounded to Elem: the CPU front-end's
// rotated copy of q, bitwise. Positions past the tables (bad device
// lengths) read their last row.
template <int kD, class Elem>
__device__ __forceinline__ void rotate_q_tile(Elem* tile, const AttentionParams& p, std::int64_t b, std::int64_t m0,
                                              std::int64_t pack, int rows_valid) {
  const AttentionParams::Rotary& rotary = p.rotary;
  const int rotary_dim = static_cast<int>(rotary.dim), half = rotary_dim / 2;
  const std::int64_t cached = bounded_cached_keys(p, b);
  for (int idx = threadIdx.x; idx < rows_valid * half; idx += kThreads) {
    const int r = idx / half, c = idx % half;
    const std::int64_t position =
        clamp_index(core::rotary_position_of_q(rotary, cached, (m0 + r) / pack), 0, rotary.positions - 1);
    const core::RotaryPair pair = core::rotary_pair(c, rotary_dim, rotary.interleaved);
    Elem& e0 = tile[swizzled<kD>(r, pair.first / 8) + pair.first % 8];
    Elem& e1 = tile[swizzled<kD>(r, pair.second / 8) + pair.second % 8];
    float x0 = elem_to_float(e0), x1 = elem_to_float(e1);
    core::rotate_pair(x0, x1, elem_to_float(static_cast<const Elem*>(rotary.cos)[position * rotary.cos_stride + c]),
                      elem_to_float(static_cast<const Elem*>(rotary.sin)[position * rotary.sin_stride + c]));
    e0 = float_to_elem<Elem>(x0);
    e1 = float_to_elem<Elem>(x1);
  }
}

// fn(mt, t, e, x) for every score x = s[mt][t][e] of a warp's S: row
// tile mt, 8-key tile t, element e (row g + 8 (e / 2), key 2 c4 + e % 2).
template <int kRowTiles, int kTilesN, class Fn>
__device__ __forceinline__ void for_each_score(float (&s)[kRowTiles][kTilesN][4], Fn&& fn) {
#pragma unroll
  for (int mt = 0; mt < kRowTiles; ++mt) {
#pragma unroll
    for (int t = 0; t < kTilesN; ++t) {
#pragma unroll
      for (int e = 0; e < 4; ++e) fn(mt, t, e, s[mt][t][e]);
    }
  }
}

// acc[mt][n] += a[mt] b(0, 1) and acc[mt][n + 1] += a[mt] b(2, 3) for
// every row tile mt: one ldmatrix_x4 of B (two 8-column fragments) feeds
// all the warp's row tiles.
template <class Elem, int kRowTiles, int kTiles>
__device__ __forceinline__ void mma_row_tiles(float (&acc)[kRowTiles][kTiles][4], int n,
                                              const std::uint32_t (&a)[kRowTiles][4], const std::uint32_t (&b)[4]) {
#pragma unroll
  for (int mt = 0; mt < kRowTiles; ++mt) {
    mma_16816<Elem>(acc[mt][n], a[mt], b[0], b[1]);
    mma_16816<Elem>(acc[mt][n + 1], a[mt], b[2], b[3]);
  }
}

// The exponent offset of a row whose running maximum is m, in log2 units u:
// exp(x - m) = 2^(x u - exponent_ref(m, u)). A row with nothing kept yet
// (m = -inf) takes 0, so its weights are exp(-inf) = 0, never NaN.
__device__ __forceinline__ float exponent_ref(float m, float u) { return m == -INFINITY ? 0.0f : m * u; }

// Keys by warp: every warp holds the same 16 rows' softmax state (row_max,
// its lane's part of row_sum, O) over its own keys. Warps 1.. leave theirs
// in shared memory (the K and V stages, free once every warp is past the
// key loop) and return false; warp 0 returns true holding the merged state:
// m = max of the warps' maxima, each warp's l and O scaled by 2^((m_w - m) u)
// and summed (a warp that kept no key of a row has m_w = -inf: weight 0).
template <int kD, int kTilesD>
__device__ __forceinline__ bool merge_warps(float* smem, float (&o)[kTilesD][4], float (&row_max)[2],
                                            float (&row_sum)[2], float log2_units) {
  constexpr int kSlots = 4 + 4 * kTilesD;  // row_max, row_sum, O: lane l's slot k at smem[(w kSlots + k) 32 + l]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  cp_async_wait<0>();
  __syncthreads();  // every warp done with K and V
  if (warp > 0) {
    float* mine = smem + (warp * kSlots) * 32 + lane;
    mine[0] = row_max[0], mine[32] = row_max[1], mine[64] = row_sum[0], mine[96] = row_sum[1];
#pragma unroll
    for (int t = 0; t < kTilesD; ++t) {
#pragma unroll
      for (int e = 0; e < 4; ++e) mine[(4 + 4 * t + e) * 32] = o[t][e];
    }
  }
  __syncthreads();
  if (warp > 0) return false;
  float m[2] = {row_max[0], row_max[1]};
  for (int w = 1; w < kWarps; ++w) {
    const float* theirs = smem + (w * kSlots) * 32 + lane;
    m[0] = fmaxf(m[0], theirs[0]), m[1] = fmaxf(m[1], theirs[32]);
  }
  const float ref[2] = {exponent_ref(m[0], log2_units), exponent_ref(m[1], log2_units)};
  float mine_weight[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mine_weight[r] = exp2_approx(row_max[r] * log2_units - ref[r]);
    row_sum[r] *= mine_weight[r];
  }
#pragma unroll
  for (int t = 0; t < kTilesD; ++t) {
#pragma unroll
    for (int e = 0; e < 4; ++e) o[t][e] *= mine_weight[e / 2];
  }
  for (int w = 1; w < kWarps; ++w) {
    const float* theirs = smem + (w * kSlots) * 32 + lane;
    float weight[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      weight[r] = exp2_approx(theirs[32 * r] * log2_units - ref[r]);
      row_sum[r] += weight[r] * theirs[64 + 32 * r];
    }
#pragma unroll
    for (int t = 0; t < kTilesD; ++t) {
#pragma unroll
      for (int e = 0; e < 4; ++e) o[t][e] += weight[e / 2] * theirs[(4 + 4 * t + e) * 32];
    }
  }
  row_max[0] = m[0], row_max[1] = m[1];
  return true;
}

template <int kD, bool kKeysByWarp, class Elem>
__global__ void __launch_bounds__(kThreads) forward_kernel(const __grid_constant__ ForwardArgs args) {
  using Shape = ForwardShape<kD, kKeysByWarp>;
  constexpr int kBlockM = Shape::kBlockM, kRowTiles = Shape::kRowTiles, kRows = 2 * kRowTiles;
  constexpr int kBlockN = Shape::kBlockN, kWarpKeys = Shape::kWarpKeys, kTilesN = kWarpKeys / 8, kTilesD = kD / 8;
  static_assert(!kKeysByWarp || kWarps * (4 + 4 * kTilesD) * 32 * 4 <= Shape::kSmemElems * sizeof(Elem),
                "merge_warps' states fit the tiles' shared memory");
  const AttentionParams& p = args.p;
  const ForwardPlan& plan = args.plan;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  Elem* sq = reinterpret_cast<Elem*>(smem_raw);
  // Two stages of K and V: tile n in stage n mod 2.
  Elem* const sk_stages = sq + kBlockM * kD;
  Elem* const sv_stages = sk_stages + 2 * kBlockN * kD;

  const std::int64_t m_block = blockIdx.x % plan.m_blocks, split = blockIdx.x / plan.m_blocks;
  const std::int64_t slot = blockIdx.y, b = blockIdx.z, pack = plan.pack;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c4 = lane % 4;
  // The warp's first row in the block, and first key in a tile.
  const int warp_row = kKeysByWarp ? 0 : warp * 16 * kRowTiles;
  const int warp_key = kKeysByWarp ? warp * kWarpKeys : 0;
  const core::SequenceExtent seq = bounded_extent(p, b);
  const std::int64_t sq_len = seq.seqlen_q, sk_len = seq.seqlen_k;
  const std::int64_t m0 = m_block * kBlockM;
  if (m0 >= sq_len * pack) return;  // varlen: past this sequence's rows (uniform over the block)
  const int rows_valid = static_cast<int>(std::min<std::int64_t>(kBlockM, sq_len * pack - m0));
  // A warp with no row of the sequence (short queries: decoding) only loads.
  const bool computes = warp_row < rows_valid;
  const std::int64_t kv_head = slot * pack / (p.heads_q / p.heads_kv);
  const std::int64_t i_first = m0 / pack, i_end = (m0 + rows_valid - 1) / pack + 1;

  const Elem* q_seq = static_cast<const Elem*>(p.q) + b * p.q_stride.batch + seq.q_start * p.q_stride.row;
  auto q_row = [&](int r) {
    const std::int64_t row = m0 + r;
    return q_seq + (row / pack) * p.q_stride.row + (slot * pack + row % pack) * p.q_stride.head;
  };
  const KeyRows<Elem> k_rows = key_rows<Elem>(p, p.k, p.k_stride, seq, kv_head);
  const KeyRows<Elem> v_rows = key_rows<Elem>(p, p.v, p.v_stride, seq, kv_head);

  // The block's key tiles: the union of its rows' kept keys, this split's chunk of it.
  core::KeyRange keys = core::kept_keys_of_rows(p.mask, i_first, i_end, sq_len, sk_len);
  if (plan.splits > 1) keys = core::split_chunk(keys, kBlockN, split, plan.splits);
  const std::int64_t n_first = keys.begin / kBlockN,
                     n_end = keys.empty() ? n_first : (keys.end + kBlockN - 1) / kBlockN;

  // The lane's rows: r = 2 mt + h is row g + 8 h of the warp's row tile mt.
  // Their query row and head are formed where used, not kept in registers
  // across the key loop (O and S fill those).
  auto block_row = [&](int r) { return m0 + warp_row + 16 * (r / 2) + g + 8 * (r % 2); };
  auto row_i = [&](int r) { return pack == 1 ? block_row(r) : block_row(r) / pack; };
  auto row_head = [&](int r) { return slot * pack + (pack == 1 ? 0 : block_row(r) % pack); };
  const float alibi_offset = static_cast<float>(sk_len - sq_len);
  // Without softcap or alibi (and with a positive scale, which keeps the
  // maximum) the scores stay unscaled, row_max too, and the scale folds into
  // the exponent's multiply; else they are scaled first.
  const bool raw_scores = p.softmax_scale > 0.0f && p.softcap <= 0.0f && p.alibi_slopes == nullptr;
  const float log2_units = (raw_scores ? p.softmax_scale : 1.0f) * 1.4426950408889634f;

  // The lane's rows of the four 8x8 matrices of each ldmatrix_x4 (see mma.cuh).
  const SwizzledLane<kD> q_lane(warp_row + lane % 16, lane / 16);
  const SwizzledLane<kD> k_lane(warp_key + lane % 8 + (lane / 16) * 8, (lane / 8) % 2);
  const SwizzledLane<kD> v_lane(warp_key + lane % 8 + ((lane / 8) % 2) * 8, lane / 16);

  float o[kRowTiles][kTilesD][4];
  float row_max[kRows], row_sum[kRows];
#pragma unroll
  for (int mt = 0; mt < kRowTiles; ++mt) {
#pragma unroll
    for (int t = 0; t < kTilesD; ++t) o[mt][t][0] = o[mt][t][1] = o[mt][t][2] = o[mt][t][3] = 0.0f;
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) row_max[r] = -INFINITY, row_sum[r] = 0.0f;

  const int cols_k = static_cast<int>(p.head_dim), cols_v = static_cast<int>(p.head_dim_v);
  auto keys_in = [&](std::int64_t j0) { return static_cast<int>(std::min<std::int64_t>(kBlockN, sk_len - j0)); };
  // Tile n's K and V, one cp.async group, into stage n mod 2.
  auto load_keys = [&](std::int64_t n) {
    const std::int64_t j0 = n * kBlockN;
    const int stage = static_cast<int>(n & 1);
    load_tile<kD, kBlockN>(
        sk_stages + stage * kBlockN * kD, [&](int r) { return k_rows(j0 + r); }, k_rows.even_stride(), keys_in(j0),
        cols_k, plan.vec_k);
    load_tile<kD, kBlockN>(
        sv_stages + stage * kBlockN * kD, [&](int r) { return v_rows(j0 + r); }, v_rows.even_stride(), keys_in(j0),
        cols_v, plan.vec_v);
  };
  load_tile<kD, kBlockM>(sq, q_row, pack == 1 ? p.q_stride.row : 0, rows_valid, cols_k, plan.vec_q);
  cp_async_commit();  // Q alone: the rotary waits for it while the first keys are in flight
  if (n_first < n_end) load_keys(n_first);
  cp_async_commit();
  if (p.rotary.rotate_q) {
    cp_async_wait<1>();
    __syncthreads();  // Q resident; the loop's first barrier orders the rotated rows before ldmatrix
    rotate_q_tile<kD>(sq, p, b, m0, pack, rows_valid);
  }

  for (std::int64_t n = n_first; n < n_end; ++n) {
    const std::int64_t j0 = n * kBlockN;
    const Elem* sk = sk_stages + (n & 1) * kBlockN * kD;
    const Elem* sv = sv_stages + (n & 1) * kBlockN * kD;
    cp_async_wait<0>();
    __syncthreads();  // tile n (and Q) resident; every warp done with tile n - 1, whose stage the next load takes
    if (n + 1 < n_end) load_keys(n + 1);
    cp_async_commit();

    // S = Q K^T for the warp's row tiles x kBlockN keys; each K fragment feeds every row tile.
    float s[kRowTiles][kTilesN][4];
    if (computes) {
#pragma unroll
      for (int mt = 0; mt < kRowTiles; ++mt) {
#pragma unroll
        for (int t = 0; t < kTilesN; ++t) s[mt][t][0] = s[mt][t][1] = s[mt][t][2] = s[mt][t][3] = 0.0f;
      }
#pragma unroll
      for (int kk = 0; kk < kD / 16; ++kk) {
        std::uint32_t a[kRowTiles][4];
#pragma unroll
        for (int mt = 0; mt < kRowTiles; ++mt) ldmatrix_x4(a[mt], sq + q_lane.at(16 * mt, 2 * kk));
#pragma unroll
        for (int j = 0; j < kTilesN / 2; ++j) {
          std::uint32_t bk[4];
          ldmatrix_x4(bk, sk + k_lane.at(16 * j, 2 * kk));
          mma_row_tiles<Elem>(s, 2 * j, a, bk);
        }
      }

      // Score hooks and mask in the CPU backend's order, each a loop behind
      // one uniform branch; element e of a tile is row h = e / 2 of its row tile.
      if (!raw_scores) for_each_score(s, [&](int, int, int, float& x) { x *= p.softmax_scale; });
      if (p.softcap > 0.0f) for_each_score(s, [&](int, int, int, float& x) { x = p.softcap * tanhf(x / p.softcap); });
      if (p.alibi_slopes) {
        for_each_score(s, [&](int mt, int t, int e, float& x) {
          const int r = 2 * mt + e / 2;
          const std::int64_t j = j0 + warp_key + 8 * t + 2 * c4 + e % 2;
          const float slope = p.alibi_slopes[b * p.alibi_batch_stride + row_head(r)];
          x -= slope * fabsf(static_cast<float>(row_i(r)) + alibi_offset - static_cast<float>(j));
        });
      }
      if (!core::tile_fully_kept(p.mask, i_first, i_end, j0, j0 + kBlockN, sq_len, sk_len) || j0 + kBlockN > sk_len) {
#pragma unroll
        for (int r = 0; r < kRows; ++r) {  // the row's kept keys, relative to the tile
          const core::KeyRange keep = core::kept_keys(p.mask, row_i(r), sq_len, sk_len);
          const int lo = static_cast<int>(clamp_index(keep.begin - j0 - warp_key, 0, kWarpKeys));
          const int hi = static_cast<int>(clamp_index(keep.end - j0 - warp_key, 0, kWarpKeys));
#pragma unroll
          for (int t = 0; t < kTilesN; ++t) {
#pragma unroll
            for (int k = 0; k < 2; ++k) {
              const int jr = 8 * t + 2 * c4 + k;
              if (jr < lo || jr >= hi) s[r / 2][t][2 * (r % 2) + k] = -INFINITY;
            }
          }
        }
      }
      // Online softmax: l sums the weights before dropout (kept ones are
      // scaled by 1 / (1 - p) at the end); exp(x - m) as 2^(x u - m u).
      float scale_o[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        float(&sr)[kTilesN][4] = s[r / 2];
        const int h = 2 * (r % 2);
        float mx = row_max[r];
#pragma unroll
        for (int t = 0; t < kTilesN; ++t) mx = fmaxf(mx, fmaxf(sr[t][h], sr[t][h + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float ref = exponent_ref(mx, log2_units);
        scale_o[r] = exp2_approx(row_max[r] * log2_units - ref);
        row_max[r] = mx;
        float sum = 0.0f;
#pragma unroll
        for (int t = 0; t < kTilesN; ++t) {
          sr[t][h] = exp2_approx(fmaf(sr[t][h], log2_units, -ref));
          sr[t][h + 1] = exp2_approx(fmaf(sr[t][h + 1], log2_units, -ref));
          sum += sr[t][h] + sr[t][h + 1];
        }
        row_sum[r] = row_sum[r] * scale_o[r] + sum;  // this lane's part; the quad's sum is taken at the end
      }
      if (p.dropout_p > 0.0f) {
        // The lane's two keys of a tile, 2 * c4 and 2 * c4 + 1, share one Philox
        // group of 4. Decisions first, as bits (a rolled loop: Philox unrolled
        // kTilesN times would crowd the registers), then applied to S.
        std::uint32_t dropped[kRows] = {};  // bit 2 t + k: key 8 t + 2 c4 + k dropped
        for (int r = 0; r < kRows; ++r) {
          const core::DropoutStream drop =
              core::make_dropout_stream(p.seed, p.offset, p.dropout_p, b, row_head(r), p.heads_q);
          const std::int64_t i = row_i(r);
          for (int t = 0; t < kTilesN; ++t) {
            const std::int64_t j = j0 + warp_key + 8 * t + 2 * c4;
            dropped[r] |= ((drop.dropped_bits(i, j >> 2) >> (j & 3)) & 3u) << (2 * t);
          }
        }
        for_each_score(s, [&](int mt, int t, int e, float& x) {
          if ((dropped[2 * mt + e / 2] >> (2 * t + e % 2)) & 1u) x = 0.0f;
        });
      }
      // O rescaled only when a row's maximum moved (x 1 is exact): after the
      // first tiles, most tiles skip these kRowTiles x kD / 2 multiplies.
      bool moved = false;
#pragma unroll
      for (int r = 0; r < kRows; ++r) moved |= scale_o[r] != 1.0f;
      if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
        for (int mt = 0; mt < kRowTiles; ++mt) {
#pragma unroll
          for (int t = 0; t < kTilesD; ++t) {
            o[mt][t][0] *= scale_o[2 * mt], o[mt][t][1] *= scale_o[2 * mt];
            o[mt][t][2] *= scale_o[2 * mt + 1], o[mt][t][3] *= scale_o[2 * mt + 1];
          }
        }
      }
    }

    // O += P V: P (16 x kBlockN per row tile) as A fragments straight from
    // S's registers; each V fragment feeds every row tile.
    if (computes) {
#pragma unroll
      for (int kk = 0; kk < kWarpKeys / 16; ++kk) {
        std::uint32_t a[kRowTiles][4];
#pragma unroll
        for (int mt = 0; mt < kRowTiles; ++mt) {
          a[mt][0] = pack2<Elem>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
          a[mt][1] = pack2<Elem>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
          a[mt][2] = pack2<Elem>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
          a[mt][3] = pack2<Elem>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int j = 0; j < kTilesD / 2; ++j) {
          std::uint32_t bv[4];
          ldmatrix_x4_trans(bv, sv + v_lane.at(16 * kk, 2 * j));
          mma_row_tiles<Elem>(o, 2 * j, a, bv);
        }
      }
    }
  }

  if constexpr (kKeysByWarp) {
    if (!merge_warps<kD, kTilesD>(reinterpret_cast<float*>(smem_raw), o[0], row_max, row_sum, log2_units)) return;
  }

  // out = O * keep_scale / l and lse, or this chunk's fp32 partials. Rows
  // with nothing kept: out 0, lse = lse_of_empty_row (partials: -inf).
  const float keep_scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(p.dropout_p)));
  auto* out = static_cast<Elem*>(p.out) + b * p.out_stride.batch + seq.q_start * p.out_stride.row;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float(&orow)[kTilesD][4] = o[r / 2];
    const int h = 2 * (r % 2);
    float sum = row_sum[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    if (block_row(r) >= m0 + rows_valid) continue;  // block padding
    const std::int64_t i = row_i(r), head = row_head(r);
    const bool empty = sum == 0.0f;
    const float inv = empty ? 0.0f : keep_scale / sum;
    const float lse = empty ? -INFINITY : row_max[r] * (raw_scores ? p.softmax_scale : 1.0f) + logf(sum);
    if (plan.splits > 1) {
      const std::int64_t row = p.is_varlen() ? seq.q_start + i : b * p.seqlen_q + i;
      const std::int64_t at = (split * plan.partial_rows + row) * p.heads_q + head;
      float* dst = args.partial_out + at * p.head_dim_v;
      for (int t = 0; t < kTilesD; ++t) {
        const int col = 8 * t + 2 * c4;
        if (col < p.head_dim_v) dst[col] = orow[t][h] * inv;
        if (col + 1 < p.head_dim_v) dst[col + 1] = orow[t][h + 1] * inv;
      }
      if (c4 == 0) args.partial_lse[at] = lse;
      continue;
    }
    Elem* dst = out + i * p.out_stride.row + head * p.out_stride.head;
    for (int t = 0; t < kTilesD; ++t) {
      const int col = 8 * t + 2 * c4;
      const std::uint32_t two = pack2<Elem>(orow[t][h] * inv, orow[t][h + 1] * inv);
      if (plan.vec_out) {
        if (col < p.head_dim_v) *reinterpret_cast<std::uint32_t*>(dst + col) = two;
      } else {
        auto* bits = reinterpret_cast<std::uint16_t*>(dst);
        if (col < p.head_dim_v) bits[col] = static_cast<std::uint16_t>(two & 0xffffu);
        if (col + 1 < p.head_dim_v) bits[col + 1] = static_cast<std::uint16_t>(two >> 16);
      }
    }
    if (p.lse && c4 == 0) {
      p.lse[b * p.lse_batch_stride + head * p.lse_head_stride + seq.q_start + i] = empty ? p.lse_of_empty_row : lse;
    }
  }
}

}  // namespace flashattn::cuda
