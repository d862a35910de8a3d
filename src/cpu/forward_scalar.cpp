// The CPU forward compiled for the baseline instruction set (no FMA).
// Baseline code: no target region (see isa_region.hpp).
#include "cpu/forward_includes.hpp"
namespace flashattn::cpu::scalar {

namespace {  // internal linkage: nothing ISA-specific is visible outside this file
#include "cpu/vec_scalar.inl"
#include "cpu/vec_tanh.inl"
#include "cpu/vec_philox.inl"
#include "cpu/micro_kernel.inl"
#include "cpu/forward_workspace.inl"
#include "cpu/decode_kernel.inl"
#include "cpu/forward_tile_loop.inl"
}  // namespace

void forward(const AttentionParams& params, const ExecConfig& exec) { run_forward_tiles<F32Math>(params, exec); }

std::int64_t workspace_bytes(const AttentionParams& params, const ExecConfig& exec) {
  return workspace_bytes_of<F32Math>(params, exec);
}

}  // namespace flashattn::cpu::scalar
