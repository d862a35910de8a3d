// run_backward: picks the backend, then the ISA.
#include "cpu/cpu_forward.hpp"
#include "flashattn/params.hpp"
#include "flashattn/runtime.hpp"
#include "reference/reference_backward.hpp"

namespace flashattn {

void run_backward(const AttentionParams& params) {
  if (active_backend() == Backend::reference) {
    reference::reference_backend_backward(params);
    return;
  }
  cpu::ExecConfig exec;
  exec.threads = num_threads();
  switch (active_isa()) {
    case Isa::avx512_bf16: cpu::avx512_bf16::backward(params, exec); break;
    case Isa::avx512: cpu::avx512::backward(params, exec); break;
    case Isa::avx2: cpu::avx2::backward(params, exec); break;
    case Isa::scalar: cpu::scalar::backward(params, exec); break;
  }
}

std::int64_t backward_workspace_bytes(const AttentionParams& params) {
  if (active_backend() == Backend::reference) return 0;
  cpu::ExecConfig exec;
  exec.threads = num_threads();
  switch (active_isa()) {
    case Isa::avx512_bf16: return cpu::avx512_bf16::backward_workspace_bytes(params, exec);
    case Isa::avx512: return cpu::avx512::backward_workspace_bytes(params, exec);
    case Isa::avx2: return cpu::avx2::backward_workspace_bytes(params, exec);
    case Isa::scalar: break;
  }
  return cpu::scalar::backward_workspace_bytes(params, exec);
}

}  // namespace flashattn
