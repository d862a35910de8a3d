// How the CUDA forward runs a call: head-dim tile, GQA row packing, split
// count, load paths and workspace. A pure function of the params and the
// device's multiprocessor count (no CUDA headers): unit-tested on any host,
// shared by the launcher and the kernels.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/split.hpp"
#include "flashattn/params.hpp"

namespace flashattn::cuda {

inline constexpr int kWarps = 4;
inline constexpr int kThreads = 32 * kWarps;

// Row tiles of 16 rows per warp: two for head-dim tiles up to 128, so each
// K and V fragment read from shared memory feeds two mma (FlashAttention-2's
// 128-row blocks); one above, where O of 32 rows would not fit the registers.
inline constexpr int row_tiles(int tile) { return tile <= 128 ? 2 : 1; }
// Query rows per thread block.
inline constexpr int block_rows(int tile) { return 16 * kWarps * row_tiles(tile); }

// The head-dim tile a head dim runs in (32, 64, 128, 192 or 256: the
// smallest that holds it, columns past the head dim zero), 0 above 256.
inline int head_dim_tile(std::int64_t head_dim) {
  for (int tile : {32, 64, 128, 192, 256}) {
    if (head_dim >= 1 && head_dim <= tile) return tile;
  }
  return 0;
}

// fn.template operator()<kD>() for kD = `tile`: the one list of instantiated
// head-dim tiles (the launcher's and the host emulator's).
template <class Fn>
void with_tile(int tile, Fn&& fn) {
  switch (tile) {
    case 32:
      return fn.template operator()<32>();
    case 64:
      return fn.template operator()<64>();
    case 128:
      return fn.template operator()<128>();
    case 192:
      return fn.template operator()<192>();
    default:
      return fn.template operator()<256>();
  }
}

// fn.template operator()<kD, kKeysByWarp>() for the plan's kernel: the one
// list of instantiated forward kernels (the launcher's and the emulator's).
template <class Plan, class Fn>
void with_kernel(const Plan& plan, Fn&& fn) {
  with_tile(plan.tile, [&]<int kD>() {
    if (plan.keys_by_warp) return fn.template operator()<kD, true>();
    fn.template operator()<kD, false>();
  });
}

// Keys per tile: S (row_tiles x 16 x block_n) and O (row_tiles x 16 x tile)
// of a warp fit its registers.
inline constexpr int key_block(int tile) { return tile <= 64 ? 64 : 32; }

// Short queries (decoding: seqlen_q x pack at most 16 rows) run the
// kernel's keys-by-warp form: one row tile of 16 rows shared by the warps,
// each warp taking its own 16 keys of every 64-key tile, the warps' partial
// softmax states merged at the end. Otherwise one warp alone would compute
// (the others' rows are padding) while the block's loads wait on it.
inline constexpr int kKeysByWarpRows = 16;
struct TileShape {
  int row_tiles = 0;  // 16-row tiles per warp
  int block_m = 0;    // rows per block
  int block_n = 0;    // keys per tile
};
inline constexpr TileShape tile_shape(int tile, bool keys_by_warp) {
  if (keys_by_warp) return {1, kKeysByWarpRows, 16 * kWarps};
  return {row_tiles(tile), block_rows(tile), key_block(tile)};
}

struct ForwardPlan {
  int tile = 0;               // head-dim tile of max(head_dim, head_dim_v)
  bool keys_by_warp = false;  // the kernel's keys-by-warp form (tile_shape)
  int block_n = 0;            // keys per key tile
  int block_m = 0;            // rows per thread block (tile_shape)
  // Rows of a block are (query row i, query head h) pairs: row R of head
  // slot s is i = R / pack, h = s * pack + R % pack. pack = 1: one head per
  // block (grid.y = heads_q). pack = group (query heads per kv head): the
  // group's heads share the block, so each K/V tile is read once for all of
  // them; chosen for short queries (decoding), where one head's rows would
  // leave the block mostly empty.
  std::int64_t pack = 1;
  std::int64_t head_slots = 0;    // grid.y = heads_q / pack
  std::int64_t m_blocks = 0;      // blocks per (batch, head slot, split): ceil(seqlen_q * pack / block_m)
  std::int64_t splits = 1;        // key chunks per block's keys (grid.x = m_blocks * splits)
  std::int64_t partial_rows = 0;  // split partials: query rows of the batch (batch * seqlen_q, varlen total_q)
  // 16-byte cp.async loads need 16-byte aligned rows (head dim and strides
  // multiples of 8 elements, data 16-byte aligned); otherwise element loads.
  bool vec_q = false, vec_k = false, vec_v = false;
  bool vec_out = false;              // 2-element stores: even head_dim_v and strides, 4-byte aligned out
  std::int64_t workspace_bytes = 0;  // split partials, fp32: out (splits, rows, heads_q, head_dim_v) and lse
};

// Launch geometry: x = query block + m_blocks * split, y = head slot, z = batch.
struct GridDims {
  std::int64_t x = 1, y = 1, z = 1;
};
inline GridDims forward_grid(const ForwardPlan& plan, const AttentionParams& p) {
  return {plan.m_blocks * plan.splits, plan.head_slots, p.batch};
}
// The merge: kMergeRows query rows per block, x = row block, y = head, z = batch.
inline constexpr int kMergeRows = 4;
inline GridDims merge_grid(const AttentionParams& p) {
  return {(p.seqlen_q + kMergeRows - 1) / kMergeRows, p.heads_q, p.batch};
}

inline bool rows_aligned(const void* data, const BshdStrides& s, std::int64_t dim, std::int64_t elements,
                         std::int64_t element_bytes) {
  const auto at = reinterpret_cast<std::uintptr_t>(data);
  return at % static_cast<std::uintptr_t>(elements * element_bytes) == 0 && dim % elements == 0 &&
         s.batch % elements == 0 && s.row % elements == 0 && s.head % elements == 0;
}

// Splits: params.num_splits when > 0, else core::choose_num_splits over the
// blocks with one worker per multiprocessor; never more than the key
// tiles or core::kMaxSplits.
inline ForwardPlan plan_forward(const AttentionParams& p, int multiprocessors) {
  ForwardPlan plan;
  plan.tile = head_dim_tile(std::max(p.head_dim, p.head_dim_v));
  const std::int64_t group = p.heads_kv > 0 ? p.heads_q / p.heads_kv : 1;
  plan.pack = group > 1 && p.seqlen_q < block_rows(plan.tile) ? group : 1;
  plan.keys_by_warp = p.seqlen_q * plan.pack <= kKeysByWarpRows;
  const TileShape shape = tile_shape(plan.tile, plan.keys_by_warp);
  plan.block_m = shape.block_m;
  plan.block_n = shape.block_n;
  plan.head_slots = p.heads_q / plan.pack;
  plan.m_blocks = (p.seqlen_q * plan.pack + plan.block_m - 1) / plan.block_m;
  plan.partial_rows = p.is_varlen() ? p.bounds.rows_q : p.batch * p.seqlen_q;

  const std::int64_t key_tiles = std::max<std::int64_t>(1, (p.seqlen_k + plan.block_n - 1) / plan.block_n);
  const std::int64_t blocks = p.batch * plan.head_slots * plan.m_blocks;
  const std::int64_t wanted =
      p.num_splits > 0 ? p.num_splits : core::choose_num_splits(blocks, key_tiles, multiprocessors);
  plan.splits = std::clamp<std::int64_t>(wanted, 1, std::min(key_tiles, core::kMaxSplits));
  if (plan.splits > 1)
    plan.workspace_bytes = plan.splits * plan.partial_rows * p.heads_q * (p.head_dim_v + 1) * std::int64_t{4};

  const std::int64_t bytes = dtype_size(p.dtype);
  plan.vec_q = rows_aligned(p.q, p.q_stride, p.head_dim, 8, bytes);
  plan.vec_k = rows_aligned(p.k, p.k_stride, p.head_dim, 8, bytes);
  plan.vec_v = rows_aligned(p.v, p.v_stride, p.head_dim_v, 8, bytes);
  plan.vec_out = rows_aligned(p.out, p.out_stride, p.head_dim_v, 2, bytes);
  return plan;
}

}  // namespace flashattn::cuda
