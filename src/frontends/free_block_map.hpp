// FreeBlockMap: which blocks of a PagedKVCache pool are free, as a bitmap,
// with the query its placement rule needs (the longest run of free blocks).
// Sized once: take and release never allocate, so releasing blocks cannot
// throw (PagedKVCache's commit and cancel rely on it).
#pragma once

#include <cstdint>
#include <vector>

namespace flashattn::frontend {

// A maximal run of free blocks [start, start + length).
struct FreeRun {
  std::int32_t start = 0;
  std::int64_t length = 0;
};

class FreeBlockMap {
 public:
  explicit FreeBlockMap(std::int64_t num_blocks);  // every block free

  std::int64_t count() const { return count_; }
  bool is_free(std::int32_t block) const { return (bits_[block >> 6] >> (block & 63)) & 1; }
  void take(std::int32_t block);     // block: free
  void release(std::int32_t block);  // block: taken

  // The longest run of free blocks, the lowest of equally long ones;
  // length 0 when none is free. One pass over the bitmap: 64 blocks a word.
  FreeRun longest_run() const;
  std::vector<std::int32_t> ids() const;  // the free blocks, ascending

 private:
  std::int64_t count_ = 0;
  std::vector<std::uint64_t> bits_;  // bit b of word w: block 64 w + b is free; 0 past num_blocks
};

}  // namespace flashattn::frontend
