// run_forward: picks the backend, then the ISA, then the tile shape.
#include "cpu/cpu_forward.hpp"
#include "flashattn/params.hpp"
#include "flashattn/runtime.hpp"
#include "reference/reference_forward.hpp"

namespace flashattn {

void run_forward(const AttentionParams& params) {
  if (active_backend() == Backend::reference) {
    reference::reference_backend_forward(params);
    return;
  }
  cpu::ExecConfig exec;
  exec.threads = num_threads();
  exec.tiles = cpu::choose_tile_shape(params.head_dim, params.head_dim_v, params.seqlen_q,
                                      params.batch * params.heads_q, exec.threads);
  switch (active_isa()) {
    case Isa::avx512: cpu::avx512::forward(params, exec); break;
    case Isa::avx2: cpu::avx2::forward(params, exec); break;
    case Isa::scalar: cpu::scalar::forward(params, exec); break;
  }
}

}  // namespace flashattn
