// The CUDA forward's launcher and its kernel table (see forward_kernel.cuh),
// and the kv-cache append's (append_kernel.cuh). Instantiated kernels,
// deliberately few: 2 dtypes (f16, bf16) x 5 head-dim tiles (32, 64, 128,
// 192, 256) x 2 forms (rows by warp; keys by warp, for decoding's short
// queries) = 20 forward kernels, plus 2 merge kernels and 2 append kernels
// (one per dtype). Masks, softcap, alibi, dropout, varlen, paging, row
// packing and the load paths are runtime branches that are uniform over a
// launch, not template arguments; a head dim runs in the smallest tile that
// holds it (96 in 128, 20 in 32).
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "cuda/append_kernel.cuh"
#include "cuda/check.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda/forward_kernel.cuh"
#include "cuda/merge_kernel.cuh"
#include "flashattn/error.hpp"

namespace flashattn::cuda {
namespace {

dim3 dims(const GridDims& g) {
  return dim3(static_cast<unsigned>(g.x), static_cast<unsigned>(g.y), static_cast<unsigned>(g.z));
}

template <int kD, bool kKeysByWarp, class Elem>
void launch(const ForwardArgs& args, cudaStream_t stream) {
  constexpr int kSmemBytes = ForwardShape<kD, kKeysByWarp>::kSmemElems * static_cast<int>(sizeof(Elem));
  auto* kernel = &forward_kernel<kD, kKeysByWarp, Elem>;
  // Over 48 KiB of dynamic shared memory needs the opt-in; the attribute is per kernel and cheap to set again.
  FLASHATTN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
  kernel<<<dims(forward_grid(args.plan, args.p)), kThreads, kSmemBytes, stream>>>(args);
  FLASHATTN_CUDA_CHECK(cudaGetLastError());
  if (args.plan.splits == 1) return;
  merge_kernel<Elem><<<dims(merge_grid(args.p)), 32 * kMergeRows, kMergeSmemBytes, stream>>>(args);
  FLASHATTN_CUDA_CHECK(cudaGetLastError());
}

// The device the call runs on: present, sm80 or newer. Returns its multiprocessor count.
int check_device() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    throw Error(std::string("flashattn: the tensors are on a CUDA device but none is available (") +
                (status == cudaSuccess ? "no device" : cudaGetErrorString(status)) + ")");
  }
  int device = 0, major = 0, minor = 0, multiprocessors = 0;
  FLASHATTN_CUDA_CHECK(cudaGetDevice(&device));
  FLASHATTN_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  FLASHATTN_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  FLASHATTN_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
  if (major < 8) {
    throw Error("flashattn: CUDA device " + std::to_string(device) + " is sm_" + std::to_string(major) +
                std::to_string(minor) + ", expected sm_80 or newer");
  }
  return multiprocessors;
}

// What the CUDA forward does not run: an Error naming it, before any launch.
void check_supported(const AttentionParams& p) {
  auto unsupported = [](bool used, const char* what) {
    if (used) throw Error(std::string("flashattn (CUDA): ") + what + " is not supported by the CUDA backend yet");
  };
  unsupported(p.probs, "return_attn_probs");
  if (head_dim_tile(p.head_dim) == 0 || head_dim_tile(p.head_dim_v) == 0) {
    throw Error("flashattn (CUDA): head dims " + std::to_string(p.head_dim) + " and " + std::to_string(p.head_dim_v) +
                " are not supported, expected 1 to 256");
  }
  if (p.dtype != DType::f16 && p.dtype != DType::bf16) {
    throw Error("flashattn (CUDA): dtype " + std::string(dtype_name(p.dtype)) +
                " is not supported, expected f16 or bf16");
  }
  if (p.batch > 65535 || p.heads_q > 65535) {
    throw Error("flashattn (CUDA): batch " + std::to_string(p.batch) + " and heads " + std::to_string(p.heads_q) +
                " must each be at most 65535 (grid dimensions)");
  }
  // Device index arrays are clamped to params.bounds (sequence_bounds.cuh): the front-end must set them.
  auto bound = [](bool used, std::int64_t value, const char* name) {
    if (used && value <= 0) throw Error(std::string("flashattn (CUDA): params.bounds.") + name + " is not set");
  };
  bound(p.is_varlen(), p.bounds.rows_q, "rows_q");
  bound(p.is_varlen() && !p.block_table, p.bounds.rows_k, "rows_k");
  bound(p.block_table != nullptr, p.bounds.num_pages, "num_pages");
  bound(p.block_table != nullptr, p.bounds.pages_per_seq, "pages_per_seq");
  bound(p.kv_batch_index != nullptr, p.bounds.kv_batches, "kv_batches");
  const bool cache_rows = !p.is_varlen() && !p.block_table;  // a kv cache's contiguous rows
  bound(cache_rows && (p.cache_seqlens || p.k_new), p.bounds.kv_seqlen, "kv_seqlen");
  if (p.rotary.cos != nullptr && p.rotary.positions <= 0)
    throw Error("flashattn (CUDA): params.rotary.positions is not set");
  if (p.seqlen_new > 0x7fffffff) {
    throw Error("flashattn (CUDA): seqlen_new " + std::to_string(p.seqlen_new) +
                " new keys exceed the append's grid (2^31 - 1)");
  }
}

ForwardArgs make_args(const AttentionParams& p, int multiprocessors) {
  ForwardArgs args{p, plan_forward(p, multiprocessors)};
  ForwardPlan& plan = args.plan;
  if (plan.m_blocks * plan.splits > 0x7fffffff) {
    throw Error("flashattn (CUDA): " + std::to_string(plan.m_blocks * plan.splits) +
                " blocks of queries x splits exceed the grid");
  }
  if (plan.splits == 1) return args;
  if (p.workspace != nullptr && p.workspace_bytes >= plan.workspace_bytes) {
    bind_partials(args, p.workspace);
    return args;
  }
  if (p.num_splits > 1) {  // asked for explicitly: say what is missing
    throw Error("flashattn (CUDA): num_splits " + std::to_string(p.num_splits) + " needs a workspace of " +
                std::to_string(plan.workspace_bytes) + " bytes (forward_workspace_bytes), got " +
                std::to_string(p.workspace == nullptr ? 0 : p.workspace_bytes));
  }
  plan.splits = 1;  // the heuristic's choice, without the scratch it needs
  plan.workspace_bytes = 0;
  return args;
}

template <class Elem>
void launch_append(const AttentionParams& p, cudaStream_t stream) {
  append_kernel<Elem><<<dims(append_grid(p)), kAppendThreads, 0, stream>>>(p);
  FLASHATTN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

std::int64_t forward_workspace_bytes(const AttentionParams& p) {
  check_supported(p);
  return plan_forward(p, check_device()).workspace_bytes;
}

void run_kvcache_append(const AttentionParams& p, void* stream) {
  check_supported(p);
  const int multiprocessors = check_device();
  if (p.batch == 0 || p.seqlen_new == 0) return;
  make_args(p, multiprocessors);  // the forward's plan errors (split workspace, grid) before anything runs
  const auto s = static_cast<cudaStream_t>(stream);
  if (p.dtype == DType::f16) return launch_append<__half>(p, s);
  launch_append<__nv_bfloat16>(p, s);
}

void run_forward(const AttentionParams& p, void* stream) {
  check_supported(p);
  const int multiprocessors = check_device();
  if (p.batch == 0 || p.seqlen_q == 0) return;
  const ForwardArgs args = make_args(p, multiprocessors);
  const auto s = static_cast<cudaStream_t>(stream);
  with_kernel(args.plan, [&]<int kD, bool kKeysByWarp>() {
    if (p.dtype == DType::f16) return launch<kD, kKeysByWarp, __half>(args, s);
    launch<kD, kKeysByWarp, __nv_bfloat16>(args, s);
  });
}

}  // namespace flashattn::cuda
