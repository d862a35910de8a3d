// The CUDA forward's launch plan (src/cuda/forward_plan.hpp): a pure
// function of the params and the multiprocessor count, tested on any host.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "cuda/forward_plan.hpp"

namespace flashattn::testing {
namespace {

using cuda::ForwardPlan;
using cuda::head_dim_tile;
using cuda::plan_forward;

constexpr int kH100Multiprocessors = 132;

// A bf16 (batch, seqlen, heads, dim) problem with contiguous tensors at `data`.
AttentionParams problem(std::int64_t batch, std::int64_t heads_q, std::int64_t heads_kv, std::int64_t seqlen_q,
                        std::int64_t seqlen_k, std::int64_t head_dim, const void* data) {
  AttentionParams p;
  p.dtype = DType::bf16;
  p.batch = batch, p.heads_q = heads_q, p.heads_kv = heads_kv;
  p.seqlen_q = seqlen_q, p.seqlen_k = seqlen_k, p.head_dim = p.head_dim_v = head_dim;
  p.q = p.k = p.v = data;
  p.out = const_cast<void*>(data);
  p.q_stride = p.out_stride = {seqlen_q * heads_q * head_dim, heads_q * head_dim, head_dim};
  p.k_stride = p.v_stride = {seqlen_k * heads_kv * head_dim, heads_kv * head_dim, head_dim};
  return p;
}

alignas(16) const std::uint16_t kData[64] = {};

TEST(ForwardPlan, HeadDimRunsInTheSmallestTileHoldingIt) {
  EXPECT_EQ(head_dim_tile(1), 32);
  EXPECT_EQ(head_dim_tile(20), 32);
  EXPECT_EQ(head_dim_tile(33), 64);
  EXPECT_EQ(head_dim_tile(96), 128);
  EXPECT_EQ(head_dim_tile(100), 128);
  EXPECT_EQ(head_dim_tile(160), 192);
  EXPECT_EQ(head_dim_tile(256), 256);
  EXPECT_EQ(head_dim_tile(0), 0);
  EXPECT_EQ(head_dim_tile(257), 0);
  EXPECT_EQ(cuda::key_block(64), 64);
  EXPECT_EQ(cuda::key_block(128), 32);
  EXPECT_EQ(cuda::key_block(192), 32);
  EXPECT_EQ(cuda::block_rows(64), 128);  // two row tiles per warp up to 128
  EXPECT_EQ(cuda::block_rows(128), 128);
  EXPECT_EQ(cuda::block_rows(192), 64);
}

TEST(ForwardPlan, DecodingPacksAKvGroupsHeadsIntoOneBlock) {
  const ForwardPlan decode = plan_forward(problem(1, 32, 8, 1, 65536, 128, kData), kH100Multiprocessors);
  EXPECT_EQ(decode.pack, 4);
  EXPECT_EQ(decode.head_slots, 8);
  EXPECT_EQ(decode.m_blocks, 1);
  EXPECT_TRUE(decode.keys_by_warp);  // 4 rows: every warp on the same rows, 16 keys of each 64 each
  EXPECT_EQ(decode.block_m, 16);
  EXPECT_EQ(decode.block_n, 64);
  const ForwardPlan prefill = plan_forward(problem(1, 32, 8, 2048, 2048, 128, kData), kH100Multiprocessors);
  EXPECT_EQ(prefill.pack, 1);
  EXPECT_EQ(prefill.head_slots, 32);
  EXPECT_FALSE(prefill.keys_by_warp);
  EXPECT_EQ(prefill.block_m, 128);
  EXPECT_EQ(prefill.block_n, 32);
  EXPECT_EQ(prefill.m_blocks, 16);
  const ForwardPlan mha = plan_forward(problem(1, 32, 32, 1, 4096, 128, kData), kH100Multiprocessors);
  EXPECT_EQ(mha.pack, 1);
  EXPECT_EQ(mha.m_blocks, 1);
  const ForwardPlan short_gqa = plan_forward(problem(2, 16, 2, 10, 100, 64, kData), kH100Multiprocessors);
  EXPECT_EQ(short_gqa.pack, 8);
  EXPECT_EQ(short_gqa.m_blocks, 1);  // 10 rows x 8 heads = 80 rows
  EXPECT_FALSE(short_gqa.keys_by_warp);
  const ForwardPlan two_rows = plan_forward(problem(1, 32, 4, 2, 5000, 64, kData), kH100Multiprocessors);
  EXPECT_TRUE(two_rows.keys_by_warp);  // 2 rows x 8 heads = 16 rows: the keys-by-warp limit
  const ForwardPlan three_rows = plan_forward(problem(1, 32, 4, 3, 5000, 64, kData), kH100Multiprocessors);
  EXPECT_FALSE(three_rows.keys_by_warp);
  const ForwardPlan wide = plan_forward(problem(2, 16, 2, 100, 100, 256, kData), kH100Multiprocessors);
  EXPECT_EQ(wide.pack, 1);
  EXPECT_EQ(wide.m_blocks, 2);  // 64-row blocks for the 256 tile
}

TEST(ForwardPlan, SplitsFollowTheSharedHeuristicAndSizeTheWorkspace) {
  AttentionParams p = problem(1, 32, 8, 1, 65536, 128, kData);
  p.num_splits = 0;
  const ForwardPlan heuristic = plan_forward(p, kH100Multiprocessors);
  EXPECT_EQ(heuristic.splits, core::choose_num_splits(8, 65536 / 64, kH100Multiprocessors));
  EXPECT_EQ(heuristic.partial_rows, 1);
  EXPECT_EQ(heuristic.workspace_bytes, heuristic.splits * 1 * 32 * (128 + 1) * 4);

  p.num_splits = 1;
  EXPECT_EQ(plan_forward(p, kH100Multiprocessors).splits, 1);
  EXPECT_EQ(plan_forward(p, kH100Multiprocessors).workspace_bytes, 0);
  p.num_splits = 3;
  EXPECT_EQ(plan_forward(p, kH100Multiprocessors).splits, 3);
  p.seqlen_k = 100;  // two key tiles of 64 (keys by warp): never more chunks than tiles
  EXPECT_EQ(plan_forward(p, kH100Multiprocessors).splits, 2);

  AttentionParams full = problem(8, 32, 32, 2048, 2048, 64, kData);  // many blocks: no split
  full.num_splits = 0;
  EXPECT_EQ(plan_forward(full, kH100Multiprocessors).splits, 1);
}

TEST(ForwardPlan, VarlenPartialsCoverTheRowsOfQ) {
  AttentionParams p = problem(3, 4, 4, 7, 900, 64, kData);
  const std::int32_t cu[4] = {0, 3, 5, 7};
  p.cu_seqlens_q = p.cu_seqlens_k = cu;
  p.bounds.rows_q = 7;
  p.num_splits = 4;
  const ForwardPlan plan = plan_forward(p, kH100Multiprocessors);
  EXPECT_EQ(plan.partial_rows, 7);
  EXPECT_EQ(plan.workspace_bytes, 4 * 7 * 4 * (64 + 1) * 4);
}

TEST(ForwardPlan, SixteenByteLoadsOnlyForAlignedRows) {
  const ForwardPlan aligned = plan_forward(problem(1, 2, 2, 8, 8, 64, kData), kH100Multiprocessors);
  EXPECT_TRUE(aligned.vec_q && aligned.vec_k && aligned.vec_v && aligned.vec_out);

  const ForwardPlan odd_dim = plan_forward(problem(1, 2, 2, 8, 8, 20, kData), kH100Multiprocessors);
  EXPECT_FALSE(odd_dim.vec_q || odd_dim.vec_k || odd_dim.vec_v);
  EXPECT_TRUE(odd_dim.vec_out);  // 20 is even: pairs of elements still line up
  const ForwardPlan seven = plan_forward(problem(1, 2, 2, 8, 8, 7, kData), kH100Multiprocessors);
  EXPECT_FALSE(seven.vec_out);

  AttentionParams shifted = problem(1, 2, 2, 8, 8, 64, kData);
  shifted.q = kData + 1;      // 2 bytes off
  shifted.k_stride.row += 4;  // rows 136 bytes apart
  const ForwardPlan off = plan_forward(shifted, kH100Multiprocessors);
  EXPECT_FALSE(off.vec_q);
  EXPECT_FALSE(off.vec_k);
  EXPECT_TRUE(off.vec_v);
}

}  // namespace
}  // namespace flashattn::testing
