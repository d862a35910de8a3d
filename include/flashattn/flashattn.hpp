// Umbrella header of flashattn.
#pragma once

#include "flashattn/dtype.hpp"
#include "flashattn/error.hpp"
#include "flashattn/flash_attn.hpp"
#include "flashattn/flash_attn_backward.hpp"
#include "flashattn/flash_attn_kvcache.hpp"
#include "flashattn/merge_attention_states.hpp"
#include "flashattn/paged_kv_cache.hpp"
#include "flashattn/params.hpp"
#include "flashattn/runtime.hpp"
#include "flashattn/tensor.hpp"
