// run_forward: picks the backend, then the ISA (which picks its tile shape);
// run_kvcache_append: picks the backend.
#include "cpu/cpu_forward.hpp"
#include "cpu/kvcache_append.hpp"
#ifdef FLASHATTN_WITH_CUDA
#include "cuda/cuda_backend.hpp"
#endif
#include "flashattn/error.hpp"
#include "flashattn/params.hpp"
#include "flashattn/runtime.hpp"
#include "reference/reference_forward.hpp"

namespace flashattn {

namespace {

cpu::ExecConfig exec_config() {
  cpu::ExecConfig exec;
  exec.threads = num_threads();
  return exec;
}

}  // namespace

void run_forward(const AttentionParams& params) {
#ifdef FLASHATTN_WITH_CUDA
  if (params.device.type == DeviceType::cuda) return cuda::run_forward(params, params.stream);
#endif
  if (params.rotary.rotate_q)
    throw Error("run_forward: params.rotary.rotate_q is run by the CUDA backend only; the CPU takes q rotated");
  if (active_backend() == Backend::reference) {
    reference::reference_backend_forward(params);
    return;
  }
  const cpu::ExecConfig exec = exec_config();
  switch (active_isa()) {
    case Isa::avx512_bf16: cpu::avx512_bf16::forward(params, exec); break;
    case Isa::avx512: cpu::avx512::forward(params, exec); break;
    case Isa::avx2: cpu::avx2::forward(params, exec); break;
    case Isa::scalar: cpu::scalar::forward(params, exec); break;
  }
}

void run_kvcache_append(const AttentionParams& params) {
  if (params.k_new == nullptr) return;
#ifdef FLASHATTN_WITH_CUDA
  if (params.device.type == DeviceType::cuda) return cuda::run_kvcache_append(params, params.stream);
#endif
  cpu::kvcache_append(params);
}

std::int64_t forward_workspace_bytes(const AttentionParams& params) {
#ifdef FLASHATTN_WITH_CUDA
  if (params.device.type == DeviceType::cuda) return cuda::forward_workspace_bytes(params);
#endif
  if (active_backend() == Backend::reference) return 0;
  const cpu::ExecConfig exec = exec_config();
  switch (active_isa()) {
    case Isa::avx512_bf16: return cpu::avx512_bf16::workspace_bytes(params, exec);
    case Isa::avx512: return cpu::avx512::workspace_bytes(params, exec);
    case Isa::avx2: return cpu::avx2::workspace_bytes(params, exec);
    case Isa::scalar: break;
  }
  return cpu::scalar::workspace_bytes(params, exec);
}

}  // namespace flashattn
