// FreeBlockMap: the free blocks of a paged cache's pool as a bitmap.
#include "frontends/free_block_map.hpp"

#include <bit>

namespace flashattn::frontend {

FreeBlockMap::FreeBlockMap(std::int64_t num_blocks)
    : count_(num_blocks), bits_(static_cast<std::size_t>((num_blocks + 63) / 64), ~0ull) {
  if (num_blocks % 64 != 0) bits_.back() = (1ull << (num_blocks % 64)) - 1;
}

void FreeBlockMap::take(std::int32_t block) {
  bits_[block >> 6] &= ~(1ull << (block & 63));
  --count_;
}

void FreeBlockMap::release(std::int32_t block) {
  bits_[block >> 6] |= 1ull << (block & 63);
  ++count_;
}

FreeRun FreeBlockMap::longest_run() const {
  FreeRun best, run;
  auto close = [&] {
    if (run.length > best.length) best = run;
    run.length = 0;
  };
  for (std::size_t w = 0; w < bits_.size(); ++w) {
    const std::uint64_t word = bits_[w];
    const std::int64_t base = static_cast<std::int64_t>(w) * 64;
    for (int bit = 0; bit < 64;) {
      const std::uint64_t rest = word >> bit;  // bits above the word's end are 0
      if (rest == 0) {
        close();
        break;
      }
      if (rest & 1) {  // a run of free blocks starts or goes on here; it may go on into the next word
        const int ones = std::countr_one(rest);
        if (run.length == 0) run.start = static_cast<std::int32_t>(base + bit);
        run.length += ones, bit += ones;
      } else {
        close();
        bit += std::countr_zero(rest);
      }
    }
  }
  close();
  return best;
}

std::vector<std::int32_t> FreeBlockMap::ids() const {
  std::vector<std::int32_t> free;
  free.reserve(static_cast<std::size_t>(count_));
  for (std::size_t w = 0; w < bits_.size(); ++w)
    for (std::uint64_t word = bits_[w]; word != 0; word &= word - 1)
      free.push_back(static_cast<std::int32_t>(static_cast<std::int64_t>(w) * 64 + std::countr_zero(word)));
  return free;
}

}  // namespace flashattn::frontend
