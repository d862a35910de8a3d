// Key addressing (src/core/sequence.hpp): key_offsets, the kernels' one
// division per tile, equals key_offset key by key for contiguous, cache-
// indexed, left-padded and paged sequences, across page boundaries; and
// longest_first, the order the forward hands out sequences in.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/sequence.hpp"

namespace flashattn::testing {
namespace {

void expect_offsets_match(const BshdStrides& s, const core::SequenceExtent& e, std::int64_t keys) {
  for (std::int64_t h : {0, 3}) {
    for (std::int64_t begin : {std::int64_t{0}, std::int64_t{1}, std::int64_t{15}, std::int64_t{16}, keys / 2}) {
      const std::int64_t n = keys - begin;
      std::vector<std::int64_t> offsets(n, -1);
      core::key_offsets(s, e, begin, n, h, offsets.data());
      for (std::int64_t j = 0; j < n; ++j)
        ASSERT_EQ(offsets[j], core::key_offset(s, e, begin + j, h)) << "begin " << begin << " key " << j << " head " << h;
    }
  }
}

TEST(KeyOffsets, ContiguousWithBatchIndexAndLeftPadding) {
  const BshdStrides s{.batch = 1000000, .row = 512, .head = 128};
  core::SequenceExtent e;
  e.k_batch = 2;
  e.k_start = 7;
  expect_offsets_match(s, e, 100);
}

TEST(KeyOffsets, PagedAcrossPageBoundaries) {
  const BshdStrides s{.batch = 16 * 512, .row = 512, .head = 128};
  const std::vector<std::int32_t> pages = {9, 2, 7, 0, 5, 11, 3, 8, 1, 4, 6, 10, 12, 13, 14, 15, 16, 17, 18, 19,
                                           20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36};
  for (std::int64_t page_size : {1, 3, 16}) {
    core::SequenceExtent e;
    e.pages = pages.data();
    e.page_size = page_size;
    expect_offsets_match(s, e, std::min<std::int64_t>(37 * page_size, 100));
  }
}

TEST(LongestFirst, EqualLengthsKeepBatchOrder) {
  AttentionParams p;
  p.batch = 5, p.seqlen_q = 7, p.seqlen_k = 300;
  EXPECT_EQ(core::longest_first(p), (std::vector<std::int64_t>{0, 1, 2, 3, 4}));
}

TEST(LongestFirst, VarlenByQueryTimesKeysTiesInBatchOrder) {
  // (sq, sk): (2, 10) = 20, (1, 50) = 50, (5, 4) = 20, (3, 30) = 90, (0, 99) = 0
  const std::vector<std::int32_t> cu_q{0, 2, 3, 8, 11, 11}, cu_k{0, 10, 60, 64, 94, 193};
  AttentionParams p;
  p.batch = 5, p.seqlen_q = 5, p.seqlen_k = 99;
  p.cu_seqlens_q = cu_q.data(), p.cu_seqlens_k = cu_k.data();
  EXPECT_EQ(core::longest_first(p), (std::vector<std::int64_t>{3, 1, 0, 2, 4}));
}

TEST(LongestFirst, CacheLengthsFromSequsedK) {
  // Decoding: one query per sequence against cache_seqlens keys.
  const std::vector<std::int32_t> used{1024, 4096, 1, 4096, 2000};
  AttentionParams p;
  p.batch = 5, p.seqlen_q = 1, p.seqlen_k = 4096;
  p.seqused_k = used.data();
  EXPECT_EQ(core::longest_first(p), (std::vector<std::int64_t>{1, 3, 4, 0, 2}));
}

}  // namespace
}  // namespace flashattn::testing
