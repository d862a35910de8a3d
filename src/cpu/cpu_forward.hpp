// Entry points of the per-ISA forward and backward kernels (one namespace per ISA).
#pragma once

#include <cstdint>

#include "cpu/tile_shape.hpp"
#include "flashattn/params.hpp"

namespace flashattn::cpu {

// What the dispatcher decided for one call; each ISA picks its own tile
// shape (cpu/tile_shape.hpp) from its register blocking.
struct ExecConfig {
  int threads = 1;
};

#define FLASHATTN_DECLARE_CPU_FORWARD(isa)                                                     \
  namespace isa {                                                                              \
  void forward(const AttentionParams& params, const ExecConfig& exec);                         \
  std::int64_t workspace_bytes(const AttentionParams& params, const ExecConfig& exec);          \
  void backward(const AttentionParams& params, const ExecConfig& exec);                        \
  std::int64_t backward_workspace_bytes(const AttentionParams& params, const ExecConfig& exec); \
  }

FLASHATTN_DECLARE_CPU_FORWARD(scalar)
FLASHATTN_DECLARE_CPU_FORWARD(avx2)
FLASHATTN_DECLARE_CPU_FORWARD(avx512)
FLASHATTN_DECLARE_CPU_FORWARD(avx512_bf16)  // bf16 inputs with vdpbf16ps; other dtypes run avx512

#undef FLASHATTN_DECLARE_CPU_FORWARD

}  // namespace flashattn::cpu
