// The CPU forward compiled for the avx512 instruction set.
// Shared headers first (baseline code), then this ISA's region: see isa_region.hpp.
#include "cpu/forward_includes.hpp"
FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX512)
namespace flashattn::cpu::avx512 {

namespace {  // internal linkage: nothing ISA-specific is visible outside this file
#include "cpu/vec_avx512.inl"
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

}  // namespace flashattn::cpu::avx512
FLASHATTN_ISA_END
