// The CUDA forward's launcher and its kernel table (see forward_kernel.cuh).
// Instantiated kernels, deliberately few: 2 dtypes (f16, bf16) x 5 head-dim
// tiles (32, 64, 128, 192, 256) = 10. Masks, softcap and alibi are runtime
// branches that are uniform over a launch, not template arguments; a head
// dim runs in the smallest tile that holds it (96 in 128, 160 in 192).
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "cuda/check.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda/forward_kernel.cuh"
#include "flashattn/error.hpp"

namespace flashattn::cuda {
namespace {

template <int kD, class Elem>
void launch(const AttentionParams& p, cudaStream_t stream) {
  constexpr int kSmemBytes = ForwardShape<kD>::kSmemElems * static_cast<int>(sizeof(Elem));
  auto* kernel = &forward_kernel<kD, Elem>;
  // Over 48 KiB of dynamic shared memory needs the opt-in; the attribute is per kernel and cheap to set again.
  FLASHATTN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
  const dim3 grid(static_cast<unsigned>((p.seqlen_q + kBlockM - 1) / kBlockM), static_cast<unsigned>(p.heads_q),
                  static_cast<unsigned>(p.batch));
  kernel<<<grid, kThreads, kSmemBytes, stream>>>(p);
  FLASHATTN_CUDA_CHECK(cudaGetLastError());
}

template <class Elem>
void launch_for_head_dim(const AttentionParams& p, cudaStream_t stream) {
  switch (forward_head_dim_tile(std::max(p.head_dim, p.head_dim_v))) {
    case 32:
      return launch<32, Elem>(p, stream);
    case 64:
      return launch<64, Elem>(p, stream);
    case 128:
      return launch<128, Elem>(p, stream);
    case 192:
      return launch<192, Elem>(p, stream);
    default:
      return launch<256, Elem>(p, stream);
  }
}

// The device the call runs on: present, sm80 or newer.
void check_device() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    throw Error(std::string("flashattn: the tensors are on a CUDA device but none is available (") +
                (status == cudaSuccess ? "no device" : cudaGetErrorString(status)) + ")");
  }
  int device = 0, major = 0, minor = 0;
  FLASHATTN_CUDA_CHECK(cudaGetDevice(&device));
  FLASHATTN_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  FLASHATTN_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  if (major < 8) {
    throw Error("flashattn: CUDA device " + std::to_string(device) + " is sm_" + std::to_string(major) +
                std::to_string(minor) + ", expected sm_80 or newer");
  }
}

// What the CUDA forward does not run yet: an Error naming it, before any launch.
void check_supported(const AttentionParams& p) {
  auto unsupported = [](bool used, const char* what) {
    if (used) throw Error(std::string("flashattn (CUDA): ") + what + " is not supported by the CUDA backend yet");
  };
  unsupported(p.cu_seqlens_q || p.cu_seqlens_k, "varlen (cu_seqlens)");
  unsupported(p.seqused_k, "seqused_k");
  unsupported(p.block_table, "a paged cache (block_table)");
  unsupported(p.kv_batch_index || p.k_leftpad, "a kv cache (cache_batch_idx, cache_leftpad)");
  unsupported(p.dropout_p > 0.0f, "dropout");
  unsupported(p.probs, "return_attn_probs");
  for (std::int64_t d : {p.head_dim, p.head_dim_v}) {
    if (forward_head_dim_tile(d) == 0) {
      throw Error("flashattn (CUDA): head dim " + std::to_string(d) +
                  " is not supported, expected a multiple of 8 up to 256");
    }
  }
  if (p.dtype != DType::f16 && p.dtype != DType::bf16) {
    throw Error("flashattn (CUDA): dtype " + std::string(dtype_name(p.dtype)) +
                " is not supported, expected f16 or bf16");
  }
  // cp.async moves 16-byte chunks of q, k and v rows; out is written 2 elements at a time.
  auto aligned = [](const void* data, std::initializer_list<std::int64_t> strides, std::int64_t elements) {
    if (reinterpret_cast<std::uintptr_t>(data) % (2 * elements) != 0) return false;
    for (std::int64_t stride : strides) {
      if (stride % elements != 0) return false;
    }
    return true;
  };
  auto require_aligned = [&](const void* data, const BshdStrides& s, std::int64_t elements, const char* name) {
    if (!aligned(data, {s.batch, s.row, s.head}, elements)) {
      throw Error(std::string("flashattn (CUDA): ") + name + " must start on a " + std::to_string(2 * elements) +
                  "-byte boundary with strides that are multiples of " + std::to_string(elements) + " elements");
    }
  };
  require_aligned(p.q, p.q_stride, 8, "q");
  require_aligned(p.k, p.k_stride, 8, "k");
  require_aligned(p.v, p.v_stride, 8, "v");
  require_aligned(p.out, p.out_stride, 2, "out");
  if (p.batch > 65535 || p.heads_q > 65535) {
    throw Error("flashattn (CUDA): batch " + std::to_string(p.batch) + " and heads " + std::to_string(p.heads_q) +
                " must each be at most 65535 (grid dimensions)");
  }
}

}  // namespace

int forward_head_dim_tile(std::int64_t head_dim) {
  if (head_dim <= 0 || head_dim > 256 || head_dim % 8 != 0) return 0;
  for (int tile : {32, 64, 128, 192, 256}) {
    if (head_dim <= tile) return tile;
  }
  return 0;
}

void run_forward(const AttentionParams& p, void* stream) {
  check_supported(p);
  check_device();
  if (p.batch == 0 || p.seqlen_q == 0) return;
  const auto s = static_cast<cudaStream_t>(stream);
  if (p.dtype == DType::f16) return launch_for_head_dim<__half>(p, s);
  launch_for_head_dim<__nv_bfloat16>(p, s);
}

}  // namespace flashattn::cuda
