// The benches' tensor storage: aligned like a serving engine's tensors, so
// that a row of K or V never straddles more cache lines than it must.
#include <gtest/gtest.h>

#include <cstdint>

#include "bench_util.hpp"

namespace flashattn::tools {
namespace {

bool on_huge_page_boundary(const Bytes& bytes) {
  return reinterpret_cast<std::uintptr_t>(bytes.data()) % (std::uintptr_t{2} << 20) == 0;
}

TEST(BenchBytes, StorageStartsOnA2MiBBoundaryAtEverySize) {
  // 200 KiB and up come from mmap in glibc: a plain vector's data sits 16 bytes into a page.
  for (const std::size_t size : {std::size_t{1}, std::size_t{4096}, std::size_t{200} << 10, std::size_t{5} << 20}) {
    SCOPED_TRACE(size);
    Bytes bytes(size);
    EXPECT_TRUE(on_huge_page_boundary(bytes));
    Bytes huge;
    resize_on_huge_pages(huge, size);
    EXPECT_EQ(huge.size(), size);
    EXPECT_TRUE(on_huge_page_boundary(huge));
    const Bytes copy = huge;
    EXPECT_TRUE(on_huge_page_boundary(copy));
  }
}

}  // namespace
}  // namespace flashattn::tools
