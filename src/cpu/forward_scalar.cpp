// The CPU forward compiled for the scalar instruction set.
// Shared headers first (baseline code), then this ISA's region: see isa_region.hpp.
#include "cpu/forward_includes.hpp"

namespace flashattn::cpu::scalar {

namespace {  // internal linkage: nothing ISA-specific is visible outside this file
#include "cpu/vec_scalar.inl"
#include "cpu/forward_tile_loop.inl"
}  // namespace

void forward(const AttentionParams& params, const ExecConfig& exec) { run_forward_tiles(params, exec); }
std::int64_t workspace_bytes(const AttentionParams& params, const ExecConfig& exec) {
  return forward_workspace_bytes(params, exec);
}

}  // namespace flashattn::cpu::scalar

