#include "frontends/paged_checks.hpp"

namespace flashattn::frontend {
namespace {

std::string str(std::int64_t x) { return std::to_string(x); }

}  // namespace

void check_block_table(const ArgChecker& c, const TensorView& block_table, std::int64_t batch, std::int64_t num_pages,
                       std::int64_t page_size, const std::vector<std::int64_t>& lengths, const std::string& length_name,
                       const Device& device) {
  c.rows_tensor(block_table, "block_table", 2);
  c.dtype(block_table, "block_table", DType::i32);
  c.device(block_table, "block_table", device);
  c.require(block_table.shape[0] == batch, [&] {
    return "block_table has " + str(block_table.shape[0]) + " rows, expected one per sequence: " + str(batch);
  });
  if (device.type != DeviceType::cpu) return;  // contents on the device: clamped there (params.bounds)
  const std::int64_t max_blocks = block_table.shape[1];
  const auto* table = static_cast<const std::int32_t*>(block_table.data);
  for (std::int64_t b = 0; b < batch; ++b) {
    if (lengths[b] > max_blocks * page_size) {
      c.fail(length_name + " of sequence " + str(b) + " is " + str(lengths[b]) + ", expected at most " +
             str(max_blocks * page_size) + " (block_table has " + str(max_blocks) + " pages of " + str(page_size) +
             " per sequence)");
    }
    const std::int64_t used = (lengths[b] + page_size - 1) / page_size;
    for (std::int64_t n = 0; n < used; ++n) {
      const std::int64_t page = table[b * block_table.stride[0] + n];
      if (page < 0 || page >= num_pages) {
        c.fail("block_table[" + str(b) + ", " + str(n) + "] is " + str(page) + ", expected a page in [0, " +
               str(num_pages) + ")");
      }
    }
  }
}

void set_block_table(AttentionParams& a, const TensorView& block_table, std::int64_t num_pages,
                     std::int64_t page_size) {
  a.block_table = static_cast<const std::int32_t*>(block_table.data);
  a.block_table_stride = block_table.stride[0];
  a.page_size = page_size;
  a.bounds.num_pages = num_pages;
  a.bounds.pages_per_seq = block_table.shape[1];
}

}  // namespace flashattn::frontend
