// Checks of paged key/value caches, shared by flash_attn_with_kvcache and
// flash_attn_varlen with a block_table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "flashattn/params.hpp"
#include "frontends/tensor_checks.hpp"

namespace flashattn::frontend {

// block_table int32 (batch, max_blocks_per_seq), rows contiguous. Sequence b
// uses key positions [0, lengths[b]): those must fit in its row of the table
// (lengths[b] <= max_blocks_per_seq * page_size), and the entries they use,
// the first ceil(lengths[b] / page_size), must name pages in [0, num_pages).
// `length_name` says where the lengths come from, for messages. The table
// must be on `device`; its contents (and `lengths`) are checked only on the
// CPU: a device table is clamped by the kernels instead (params.bounds).
void check_block_table(const ArgChecker& c, const TensorView& block_table, std::int64_t batch, std::int64_t num_pages,
                       std::int64_t page_size, const std::vector<std::int64_t>& lengths,
                       const std::string& length_name, const Device& device = Device{});

// Fills the params' paged addressing (and its bounds) from a checked block table.
void set_block_table(AttentionParams& a, const TensorView& block_table, std::int64_t num_pages,
                     std::int64_t page_size);

}  // namespace flashattn::frontend
