// The CUDA launchers' steps (src/cuda/forward.cu) with emulated launches:
// the same plan, grids and kernels, run on the host by emu::launch.
#pragma once

#include <vector>

// clang-format off: the CUDA qualifiers and intrinsics for g++ come before any kernel header
#include "emu_runtime.hpp"
// clang-format on
#include "cuda/append_kernel.cuh"
#include "cuda/forward_kernel.cuh"
#include "cuda/merge_kernel.cuh"

namespace flashattn::testing {

inline constexpr int kH100Multiprocessors = 132;

inline dim3 dims(const cuda::GridDims& g) {
  return dim3(static_cast<unsigned>(g.x), static_cast<unsigned>(g.y), static_cast<unsigned>(g.z));
}

template <int kD, bool kKeysByWarp, class Elem>
void emulated_launch(const cuda::ForwardArgs& args) {
  emu::launch(dims(cuda::forward_grid(args.plan, args.p)), cuda::kThreads,
              [&] { cuda::forward_kernel<kD, kKeysByWarp, Elem>(args); });
  if (args.plan.splits > 1) {
    emu::launch(dims(cuda::merge_grid(args.p)), 32 * cuda::kMergeRows, [&] { cuda::merge_kernel<Elem>(args); });
  }
}

// cuda::run_forward's steps; the workspace is always given, so the plan's
// splits run as planned.
inline cuda::ForwardPlan emulated_forward(const AttentionParams& p) {
  cuda::ForwardArgs args{p, cuda::plan_forward(p, kH100Multiprocessors)};
  std::vector<float> workspace(static_cast<std::size_t>(args.plan.workspace_bytes / 4));
  if (args.plan.splits > 1) cuda::bind_partials(args, workspace.data());
  cuda::with_kernel(args.plan, [&]<int kD, bool kKeysByWarp>() {
    if (p.dtype == DType::f16) return emulated_launch<kD, kKeysByWarp, __half>(args);
    emulated_launch<kD, kKeysByWarp, __nv_bfloat16>(args);
  });
  return args.plan;
}

// cuda::run_kvcache_append's launch.
inline void emulated_append(const AttentionParams& p) {
  if (p.k_new == nullptr || p.seqlen_new == 0) return;
  emu::launch(dims(cuda::append_grid(p)), cuda::kAppendThreads, [&] {
    if (p.dtype == DType::f16) return cuda::append_kernel<__half>(p);
    cuda::append_kernel<__nv_bfloat16>(p);
  });
}

}  // namespace flashattn::testing
