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

// Checks what run_forward(p) checks (so that a call that would fail
// launches nothing), then launches the kv-cache append (p.k_new, p.v_new,
// p.rotary) on `stream`. Does not synchronise; allocates nothing.
void run_kvcache_append(const AttentionParams& p, void* stream);

// The workspace run_forward(p) uses for split-KV when the caller passes
// one in p.workspace (0: the call does not split). Queries the current
// device (its multiprocessor count feeds the split heuristic).
std::int64_t forward_workspace_bytes(const AttentionParams& p);

}  // namespace flashattn::cuda
