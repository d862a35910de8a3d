// The CPU backward compiled for the avx512 instruction set (see forward_avx512.cpp).
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
#include "cpu/backward_tile_loop.inl"
}  // namespace

void backward(const AttentionParams& params, const ExecConfig& exec) { run_backward_tiles<F32Math>(params, exec); }

std::int64_t backward_workspace_bytes(const AttentionParams& params, const ExecConfig& exec) {
  return backward_workspace_bytes_of<F32Math>(params, exec);
}

}  // namespace flashattn::cpu::avx512
FLASHATTN_ISA_END
