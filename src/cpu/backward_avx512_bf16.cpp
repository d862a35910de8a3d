// The CPU backward for bf16 inputs on AVX512_BF16: S = K Q^T and dP = V dO^T
// (operands exact in bf16) with vdpbf16ps; dV, dK and dQ in fp32 FMA like
// every other path. Other dtypes take the avx512 backward.
#include "cpu/forward_includes.hpp"
FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX512_BF16)
namespace flashattn::cpu::avx512_bf16 {

namespace {  // internal linkage: nothing ISA-specific is visible outside this file
#include "cpu/vec_avx512.inl"
#include "cpu/vec_tanh.inl"
#include "cpu/vec_philox.inl"
#include "cpu/micro_kernel.inl"
#include "cpu/bf16_dot_math.inl"
#include "cpu/forward_workspace.inl"
#include "cpu/decode_kernel.inl"
#include "cpu/decode_bf16_dot.inl"
#include "cpu/forward_tile_loop.inl"
#include "cpu/backward_tile_loop.inl"
}  // namespace

void backward(const AttentionParams& params, const ExecConfig& exec) {
  if (params.dtype != DType::bf16) return avx512::backward(params, exec);
  run_backward_tiles<Bf16DotMath>(params, exec);
}

std::int64_t backward_workspace_bytes(const AttentionParams& params, const ExecConfig& exec) {
  if (params.dtype != DType::bf16) return avx512::backward_workspace_bytes(params, exec);
  return backward_workspace_bytes_of<Bf16DotMath>(params, exec);
}

}  // namespace flashattn::cpu::avx512_bf16
FLASHATTN_ISA_END
