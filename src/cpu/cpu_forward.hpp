// Entry points of the per-ISA forward kernels (one namespace per ISA).
#pragma once

#include <cstdint>

#include "cpu/tile_shape.hpp"
#include "flashattn/params.hpp"

namespace flashattn::cpu {

// What the dispatcher decided for one call.
struct ExecConfig {
  int threads = 1;
  TileShape tiles{};
};

namespace scalar {
void forward(const AttentionParams& params, const ExecConfig& exec);
std::int64_t workspace_bytes(const AttentionParams& params, const ExecConfig& exec);
}  // namespace scalar
namespace avx2 {
void forward(const AttentionParams& params, const ExecConfig& exec);
std::int64_t workspace_bytes(const AttentionParams& params, const ExecConfig& exec);
}  // namespace avx2
namespace avx512 {
void forward(const AttentionParams& params, const ExecConfig& exec);
std::int64_t workspace_bytes(const AttentionParams& params, const ExecConfig& exec);
}  // namespace avx512

}  // namespace flashattn::cpu
