// The CUDA backend's entry points, callable from host-only code (no CUDA
// headers): the dispatcher routes a call here when its tensors live on a
// CUDA device. Present only in builds with FLASHATTN_CUDA (FLASHATTN_WITH_CUDA).
#pragma once

#include "flashattn/params.hpp"

namespace flashattn::cuda {

// Checks what only the device can tell (a device exists, it is sm80 or
// newer, the head dims are supported), then launches the forward on
// `stream` (a cudaStream_t; null: the legacy default stream). Does not
// synchronise; allocates nothing. Throws Error before any launch.
void run_forward(const AttentionParams& p, void* stream);

// The head-dim tile a head dim runs in (32, 64, 128, 192 or 256), 0 when
// none: the kernels take head dims that are multiples of 8 up to 256.
int forward_head_dim_tile(std::int64_t head_dim);

}  // namespace flashattn::cuda
