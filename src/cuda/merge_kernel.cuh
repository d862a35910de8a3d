// Split-KV's merge on the device: each row's chunk partials (fp32 out / l
// and lse, written by forward_kernel) combined with the shared merge
// formula (core::merge_weights, in double), rounded once to the output
// dtype. One warp per (query row, head); 4 rows of a head per block.
#pragma once

#include <cstdint>

#include "core/merge.hpp"
#include "cuda/forward_kernel.cuh"

namespace flashattn::cuda {

// Dynamic shared memory of a merge block: each warp's split weights and merged lse.
inline constexpr int kMergeSmemBytes = kMergeRows * (core::kMaxSplits * 8 + 8);

template <class Elem>
__global__ void __launch_bounds__(32 * kMergeRows) merge_kernel(const __grid_constant__ ForwardArgs args) {
  const AttentionParams& p = args.p;
  const ForwardPlan& plan = args.plan;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  double* weights = reinterpret_cast<double*>(smem_raw) + warp * core::kMaxSplits;
  double* merged_lse = reinterpret_cast<double*>(smem_raw) + kMergeRows * core::kMaxSplits + warp;
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * kMergeRows + warp, h = blockIdx.y, b = blockIdx.z;
  const core::SequenceExtent seq = bounded_extent(p, b);
  if (i >= seq.seqlen_q) return;  // whole warps leave together: the warp syncs below stay complete

  const std::int64_t row = p.is_varlen() ? seq.q_start + i : b * p.seqlen_q + i;
  const std::int64_t at = row * p.heads_q + h, split_stride = plan.partial_rows * p.heads_q;
  if (lane == 0) {
    *merged_lse = core::merge_weights(
        plan.splits, [&](std::int64_t s) { return args.partial_lse[s * split_stride + at]; }, weights);
  }
  __syncwarp();
  auto* out = reinterpret_cast<std::uint16_t*>(static_cast<Elem*>(p.out) + b * p.out_stride.batch +
                                               (seq.q_start + i) * p.out_stride.row + h * p.out_stride.head);
  for (std::int64_t c = lane; c < p.head_dim_v; c += 32) {
    double sum = 0.0;
    for (std::int64_t s = 0; s < plan.splits; ++s)
      sum += weights[s] * args.partial_out[(s * split_stride + at) * p.head_dim_v + c];
    const std::uint32_t two = pack2<Elem>(static_cast<float>(sum), 0.0f);
    out[c] = static_cast<std::uint16_t>(two & 0xffffu);
  }
  if (p.lse && lane == 0) {
    const double lse = *merged_lse;
    p.lse[b * p.lse_batch_stride + h * p.lse_head_stride + seq.q_start + i] =
        lse == -INFINITY ? p.lse_of_empty_row : static_cast<float>(lse);
  }
}

}  // namespace flashattn::cuda
