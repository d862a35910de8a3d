// The CPU's kv-cache append (run_kvcache_append on host tensors).
#pragma once

#include "flashattn/params.hpp"

namespace flashattn::cpu {

// Writes params.k_new (rotated by params.rotary) and params.v_new into the
// cache at positions core::cached_keys + t, in place, element by element
// (the cache's dtype; the rotation in fp32 as core::rotate_row).
void kvcache_append(const AttentionParams& params);

}  // namespace flashattn::cpu
