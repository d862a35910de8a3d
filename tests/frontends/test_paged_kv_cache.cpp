// PagedKVCache, one operation at a time: the pools, block-table growth,
// the reserve / write / commit flow (through write_token and through the
// arrays as flash_attn_with_kvcache uses them), cancel, free, fork with
// copy-on-write, running out of blocks, and every refused call.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "flashattn/flash_attn.hpp"
#include "flashattn/flash_attn_kvcache.hpp"
#include "flashattn/paged_kv_cache.hpp"
#include "support/host_tensor.hpp"
#include "support/paged_cache_state.hpp"

namespace flashattn::testing {
namespace {

PagedKVCacheConfig small_config(std::int64_t num_blocks = 8, std::int64_t block_size = 4, DType dtype = DType::f32) {
  return {.num_layers = 2,
          .num_blocks = num_blocks,
          .block_size = block_size,
          .heads_kv = 2,
          .head_dim = 3,
          .dtype = dtype};
}

std::vector<std::int32_t> ints(const TensorView& t) {
  const auto* p = static_cast<const std::int32_t*>(t.data);
  return {p, p + t.numel()};
}

// A cache whose sequences hold known tokens: rows[seq][layer][position] = {k, v}.
struct Filled {
  PagedKVCache cache;
  std::mt19937_64 rng{7};
  std::vector<std::vector<std::vector<std::pair<RowBytes, RowBytes>>>> rows;

  explicit Filled(const PagedKVCacheConfig& c) : cache(c) {}

  SequenceId add() {
    rows.emplace_back(cache.config().num_layers);
    return cache.add_sequence();
  }
  // Appends n random tokens to every sequence of the batch with write_token.
  void append(const std::vector<SequenceId>& batch, std::int64_t n) {
    PagedKVCache::Reservation r = cache.reserve(batch, n);
    for (std::size_t b = 0; b < batch.size(); ++b)
      for (std::int64_t layer = 0; layer < cache.config().num_layers; ++layer)
        for (std::int64_t t = 0; t < n; ++t) {
          auto& token = rows[batch[b].value][layer].emplace_back(random_row(rng, cache.config()),
                                                                 random_row(rng, cache.config()));
          r.write_token(static_cast<std::int64_t>(b), t, layer, row_view(token.first, cache.config()),
                        row_view(token.second, cache.config()));
        }
    r.commit();
  }
  SequenceId fork(SequenceId parent) {
    rows.push_back(rows[parent.value]);
    return cache.fork(parent);
  }
  // Every token of `seq` reads back (read_token, and through block_tables and the pools) as written.
  void expect_contents(SequenceId seq) const {
    const PagedKVCacheConfig& c = cache.config();
    const BlockTables tables = cache.block_tables({seq});
    ASSERT_EQ(tables.seqlen(0), static_cast<std::int32_t>(rows[seq.value][0].size()));
    for (std::int64_t layer = 0; layer < c.num_layers; ++layer)
      for (std::int64_t j = 0; j < tables.seqlen(0); ++j) {
        RowBytes k(row_bytes(c)), v(row_bytes(c));
        cache.read_token(seq, layer, j, row_view(k, c), row_view(v, c));
        EXPECT_EQ(k, rows[seq.value][layer][j].first) << "seq " << seq.value << " layer " << layer << " token " << j;
        EXPECT_EQ(v, rows[seq.value][layer][j].second) << "seq " << seq.value << " layer " << layer << " token " << j;
        const std::int32_t block = tables.block(0, j / c.block_size);
        EXPECT_EQ(pool_row(cache.k_cache(layer), block, j % c.block_size), rows[seq.value][layer][j].first);
        EXPECT_EQ(pool_row(cache.v_cache(layer), block, j % c.block_size), rows[seq.value][layer][j].second);
      }
  }
};

TEST(PagedKVCache, PoolsAreZeroedDisjointPagesOfTheConfiguredShape) {
  const PagedKVCache cache(small_config(5, 3, DType::bf16));
  std::set<const void*> starts;
  for (std::int64_t layer = 0; layer < 2; ++layer) {
    for (const TensorView& pool : {cache.k_cache(layer), cache.v_cache(layer)}) {
      EXPECT_EQ(pool.rank, 4);
      EXPECT_EQ(pool.shape_string(), "(5, 3, 2, 3)");
      EXPECT_EQ(pool.stride[0], 18);
      EXPECT_EQ(pool.stride[3], 1);
      EXPECT_EQ(pool.dtype, DType::bf16);
      starts.insert(pool.data);
    }
  }
  EXPECT_EQ(starts.size(), 4u);
  const std::vector<std::byte> bytes = pool_bytes(cache);
  EXPECT_EQ(bytes.size(), 2u * 2 * 5 * 3 * 2 * 3 * 2);
  EXPECT_TRUE(std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; }));
  EXPECT_EQ(cache.num_free_blocks(), 5);
  EXPECT_EQ(cache.free_block_ids(), (std::vector<std::int32_t>{0, 1, 2, 3, 4}));
}

TEST(PagedKVCache, RejectsBadConfigurations) {
  auto refused = [](PagedKVCacheConfig c, const std::string& detail) {
    try {
      PagedKVCache cache(c);
      ADD_FAILURE() << "accepted: " << detail;
    } catch (const Error& e) {
      EXPECT_TRUE(std::string(e.what()).starts_with("PagedKVCache: ")) << e.what();
      EXPECT_NE(std::string(e.what()).find(detail), std::string::npos) << e.what();
    }
  };
  PagedKVCacheConfig c = small_config();
  refused({.num_layers = 0, .num_blocks = 4, .block_size = 4, .heads_kv = 1, .head_dim = 1},
          "num_layers is 0, expected >= 1");
  refused({.num_layers = 1, .num_blocks = 0, .block_size = 4, .heads_kv = 1, .head_dim = 1}, "num_blocks is 0");
  refused({.num_layers = 1, .num_blocks = 4, .block_size = 0, .heads_kv = 1, .head_dim = 1}, "block_size is 0");
  refused({.num_layers = 1, .num_blocks = 4, .block_size = 4, .heads_kv = -2, .head_dim = 1}, "heads_kv is -2");
  refused({.num_layers = 1, .num_blocks = 4, .block_size = 4, .heads_kv = 1, .head_dim = 0}, "head_dim is 0");
  c.num_blocks = std::int64_t{1} << 31;
  refused(c, "block ids are int32");
  c = small_config();
  c.dtype = DType::i32;
  refused(c, "dtype is i32, expected f32, f16 or bf16");
  c = small_config();
  c.head_dim = std::int64_t{1} << 40;
  c.heads_kv = std::int64_t{1} << 20;
  refused(c, "more bytes than int64 can count");
}

TEST(PagedKVCache, NewSequenceIsEmpty) {
  PagedKVCache cache(small_config());
  const SequenceId a = cache.add_sequence(), b = cache.add_sequence();
  EXPECT_NE(a, b);
  EXPECT_EQ(cache.sequences(), (std::vector<SequenceId>{a, b}));
  EXPECT_EQ(cache.length(a), 0);
  EXPECT_TRUE(cache.block_ids(a).empty());
  const BlockTables tables = cache.block_tables({b, a});
  EXPECT_EQ(tables.block_table().shape_string(), "(2, 1)");
  EXPECT_EQ(ints(tables.block_table()), (std::vector<std::int32_t>{kNoBlock, kNoBlock}));
  EXPECT_EQ(ints(tables.cache_seqlens()), (std::vector<std::int32_t>{0, 0}));
  EXPECT_EQ(cache.num_free_blocks(), 8);
}

TEST(PagedKVCache, TableGrowsByOneBlockOnlyWhenTheLastIsFull) {
  Filled f(small_config(8, 4));
  const SequenceId s = f.add();
  f.append({s}, 3);
  EXPECT_EQ(f.cache.block_ids(s), (std::vector<std::int32_t>{0}));
  f.append({s}, 1);  // fills block 0
  EXPECT_EQ(f.cache.block_ids(s), (std::vector<std::int32_t>{0}));
  EXPECT_EQ(f.cache.blocks_to_reserve({s}, 1), 1);
  f.append({s}, 1);
  EXPECT_EQ(f.cache.block_ids(s), (std::vector<std::int32_t>{0, 1}));
  f.append({s}, 10);  // 5 + 10 = 15 tokens: 4 blocks
  EXPECT_EQ(f.cache.block_ids(s), (std::vector<std::int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(f.cache.length(s), 15);
  EXPECT_EQ(f.cache.num_free_blocks(), 4);
  f.expect_contents(s);
}

TEST(PagedKVCache, ReservationHoldsTheKernelArgumentsOfTheAppend) {
  Filled f(small_config(8, 4));
  const SequenceId a = f.add(), b = f.add();
  f.append({a}, 6);
  f.append({b}, 1);
  PagedKVCache::Reservation r = f.cache.reserve({b, a}, 3);
  EXPECT_TRUE(r.active());
  EXPECT_EQ(r.num_new_tokens(), 3);
  EXPECT_EQ(r.sequences(), (std::vector<SequenceId>{b, a}));
  // b started a run in the middle of the free blocks 2-7 (block 4); 1 + 3
  // tokens fit it. a: 6 + 3 = 9 tokens need a third block, the one after its last.
  EXPECT_EQ(r.block_table().shape_string(), "(2, 3)");
  EXPECT_EQ(r.block_table().dtype, DType::i32);
  EXPECT_EQ(ints(r.block_table()), (std::vector<std::int32_t>{4, kNoBlock, kNoBlock, 0, 1, 2}));
  EXPECT_EQ(ints(r.cache_seqlens()), (std::vector<std::int32_t>{1, 6}));  // lengths before the append
  EXPECT_EQ(f.cache.length(a), 6);                                        // not yet committed
  // Attention over cached tokens only sees the committed blocks.
  EXPECT_EQ(ints(f.cache.block_tables({a}).block_table()), (std::vector<std::int32_t>{0, 1}));
  r.cancel();
}

// Writes as flash_attn_with_kvcache does: token t of batch entry b goes to
// position cache_seqlens[b] + t through block_table, in every layer's pools.
TEST(PagedKVCache, AppendThroughTheArraysAsTheKernelDoes) {
  Filled f(small_config(8, 3));
  const PagedKVCacheConfig& c = f.cache.config();
  const SequenceId a = f.add(), b = f.add();
  f.append({a}, 2);
  PagedKVCache::Reservation r = f.cache.reserve({a, b}, 4);
  const std::vector<std::int32_t> table = ints(r.block_table()), seqlens = ints(r.cache_seqlens());
  const std::int64_t width = r.block_table().shape[1];
  for (std::int64_t layer = 0; layer < c.num_layers; ++layer)
    for (std::int64_t bi = 0; bi < 2; ++bi)
      for (std::int64_t t = 0; t < 4; ++t) {
        const std::int64_t pos = seqlens[bi] + t;
        const std::int32_t block = table[bi * width + pos / c.block_size];
        EXPECT_EQ(f.cache.ref_count(block), 1);
        auto& token =
            f.rows[bi == 0 ? a.value : b.value][layer].emplace_back(random_row(f.rng, c), random_row(f.rng, c));
        for (int kv = 0; kv < 2; ++kv) {
          const TensorView pool = kv == 0 ? f.cache.k_cache(layer) : f.cache.v_cache(layer);
          const RowBytes& src = kv == 0 ? token.first : token.second;
          std::copy(
              src.begin(), src.end(),
              static_cast<std::byte*>(pool.data) + (block * pool.stride[0] + pos % c.block_size * pool.stride[1]) * 4);
        }
      }
  r.commit();
  EXPECT_FALSE(r.active());
  EXPECT_EQ(f.cache.length(a), 6);
  EXPECT_EQ(f.cache.length(b), 4);
  f.expect_contents(a);
  f.expect_contents(b);
}

TEST(PagedKVCache, CancelKeepsLengthsAndReturnsTheReservedBlocks) {
  Filled f(small_config(8, 4));
  const SequenceId s = f.add();
  f.append({s}, 5);
  const CacheSnapshot before(f.cache);
  {
    PagedKVCache::Reservation r = f.cache.reserve({s}, 8);  // two more blocks
    EXPECT_EQ(f.cache.num_free_blocks(), 4);
    PagedKVCache::Reservation moved = std::move(r);
    EXPECT_FALSE(r.active());
    EXPECT_TRUE(moved.active());
  }  // destroyed without commit: cancelled
  EXPECT_TRUE(CacheSnapshot(f.cache) == before);

  PagedKVCache::Reservation r = f.cache.reserve({s}, 8);
  r.cancel();
  EXPECT_FALSE(r.active());
  EXPECT_EQ(f.cache.length(s), 5);
  EXPECT_EQ(f.cache.block_ids(s), (std::vector<std::int32_t>{0, 1}));
  EXPECT_EQ(f.cache.num_free_blocks(), 6);

  const SequenceId other = f.add();
  r = f.cache.reserve({s}, 4);
  EXPECT_EQ(f.cache.num_free_blocks(), 5);
  r = f.cache.reserve({other}, 8);  // moving over an active reservation cancels it
  EXPECT_EQ(f.cache.num_free_blocks(), 4);
  EXPECT_EQ(f.cache.block_ids(s), (std::vector<std::int32_t>{0, 1}));
  r.commit();
  EXPECT_EQ(f.cache.length(other), 8);
  EXPECT_EQ(f.cache.length(s), 5);
}

TEST(PagedKVCache, FreeReturnsEveryBlockAndTheIdStaysDead) {
  Filled f(small_config(8, 4));
  const SequenceId a = f.add(), b = f.add();
  f.append({a, b}, 6);
  EXPECT_EQ(f.cache.num_free_blocks(), 4);
  f.cache.free_sequence(a);
  EXPECT_FALSE(f.cache.contains(a));
  EXPECT_EQ(f.cache.sequences(), (std::vector<SequenceId>{b}));
  EXPECT_EQ(f.cache.num_free_blocks(), 6);
  EXPECT_EQ(f.cache.ref_count(0), 0);
  f.expect_contents(b);
  const SequenceId c = f.add();
  EXPECT_NE(c, a);  // ids are not reused
  for (const std::string& op :
       {"length", "fork", "free_sequence", "block_ids", "block_tables", "reserve", "read_token"}) {
    SCOPED_TRACE(op);
    expect_refused(f.cache,
                   [&] {
                     if (op == "length") (void)f.cache.length(a);
                     if (op == "fork") (void)f.cache.fork(a);
                     if (op == "free_sequence") f.cache.free_sequence(a);
                     if (op == "block_ids") (void)f.cache.block_ids(a);
                     if (op == "block_tables") (void)f.cache.block_tables({b, a});
                     if (op == "reserve") (void)f.cache.reserve({b, a}, 1);
                     if (op == "read_token") {
                       RowBytes k(row_bytes(f.cache.config())), v(k.size());
                       f.cache.read_token(a, 0, 0, row_view(k, f.cache.config()), row_view(v, f.cache.config()));
                     }
                   },
                   op, {"sequence 0 was freed"});
  }
  expect_refused(f.cache, [&] { (void)f.cache.fork(SequenceId{42}); }, "fork",
                 {"sequence 42 is unknown (this cache made sequences 0 to 2)"});
  expect_refused(f.cache, [&] { (void)f.cache.length(SequenceId{-1}); }, "length", {"sequence -1 is unknown"});
}

TEST(PagedKVCache, ForkSharesBlocksAndCopiesThePartialOneOnFirstWrite) {
  Filled f(small_config(8, 4));
  const SequenceId parent = f.add();
  f.append({parent}, 6);  // blocks 0 (full) and 1 (2 of 4 rows)
  const CacheSnapshot before_fork(f.cache);
  const SequenceId child = f.fork(parent);
  EXPECT_EQ(f.cache.length(child), 6);
  EXPECT_EQ(f.cache.block_ids(child), (std::vector<std::int32_t>{0, 1}));
  EXPECT_EQ(f.cache.ref_count(0), 2);
  EXPECT_EQ(f.cache.ref_count(1), 2);
  EXPECT_EQ(f.cache.free_block_ids(), before_fork.free_list);  // fork takes no block
  EXPECT_EQ(pool_bytes(f.cache), before_fork.pools);           // and copies nothing

  EXPECT_EQ(f.cache.blocks_to_reserve({child}, 1), 1);
  f.append({child}, 1);  // block 1 is shared: the child writes into a copy, a run in the middle of blocks 2-7
  EXPECT_EQ(f.cache.block_ids(child), (std::vector<std::int32_t>{0, 4}));
  EXPECT_EQ(f.cache.block_ids(parent), (std::vector<std::int32_t>{0, 1}));
  EXPECT_EQ(f.cache.ref_count(0), 2);
  EXPECT_EQ(f.cache.ref_count(1), 1);
  EXPECT_EQ(f.cache.ref_count(4), 1);
  f.expect_contents(parent);  // untouched by the child's write
  f.expect_contents(child);   // the copied rows 0, 1 of block 1 in both layers, k and v

  EXPECT_EQ(f.cache.blocks_to_reserve({parent}, 1), 0);  // block 1 is the parent's alone now
  f.append({parent}, 1);
  EXPECT_EQ(f.cache.block_ids(parent), (std::vector<std::int32_t>{0, 1}));
  f.expect_contents(parent);
  f.expect_contents(child);

  f.cache.free_sequence(parent);
  EXPECT_EQ(f.cache.ref_count(0), 1);
  EXPECT_EQ(f.cache.num_free_blocks(), 6);
  f.expect_contents(child);
}

TEST(PagedKVCache, ForkAtABlockBoundaryNeverCopies) {
  Filled f(small_config(8, 4));
  const SequenceId parent = f.add();
  f.append({parent}, 8);
  const SequenceId child = f.fork(parent);
  EXPECT_EQ(f.cache.blocks_to_reserve({parent, child}, 1), 2);  // one new block each, no copy
  f.append({parent, child}, 1);
  EXPECT_EQ(f.cache.block_ids(parent), (std::vector<std::int32_t>{0, 1, 2}));  // the block after its last
  EXPECT_EQ(f.cache.block_ids(child), (std::vector<std::int32_t>{0, 1, 5}));   // the middle of blocks 3-7
  f.expect_contents(parent);
  f.expect_contents(child);
}

// Three holders of one partial block in one batch: two copy, the last writes in place.
TEST(PagedKVCache, BatchOfHoldersOfOneSharedBlockCopiesAllButOne) {
  Filled f(small_config(6, 4));
  const SequenceId a = f.add();
  f.append({a}, 5);  // blocks 0, 1
  const SequenceId b = f.fork(a), c = f.fork(b);
  EXPECT_EQ(f.cache.ref_count(1), 3);
  EXPECT_EQ(f.cache.blocks_to_reserve({a, b, c}, 2), 2);
  EXPECT_EQ(f.cache.blocks_to_reserve({b}, 2), 1);
  EXPECT_EQ(f.cache.blocks_to_reserve({a, c}, 4), 4);                  // 9 tokens: a third block each, and two copies
  f.append({c, a, b}, 2);                                              // exactly enough blocks: 4 free, 2 taken
  EXPECT_EQ(f.cache.block_ids(c), (std::vector<std::int32_t>{0, 3}));  // the middle of blocks 2-5
  EXPECT_EQ(f.cache.block_ids(a), (std::vector<std::int32_t>{0, 4}));  // the middle of 4-5, the longest run left
  EXPECT_EQ(f.cache.block_ids(b), (std::vector<std::int32_t>{0, 1}));
  EXPECT_EQ(f.cache.ref_count(0), 3);
  EXPECT_EQ(f.cache.num_free_blocks(), 2);
  for (SequenceId s : {a, b, c}) f.expect_contents(s);
}

TEST(PagedKVCache, OutOfBlocksNamesTheNeedAndChangesNothing) {
  Filled f(small_config(4, 2));
  const SequenceId a = f.add();
  f.append({a}, 3);  // blocks 0, 1 (1 of 2 rows)
  const SequenceId b = f.fork(a);
  // b: 3 + 4 = 7 tokens: 2 more blocks and a copy of block 1 = 3, 2 free.
  expect_refused(f.cache, [&] { (void)f.cache.reserve({b}, 4); }, "reserve",
                 {"out of blocks: 4 new tokens for 1 sequence need 3 free blocks (2 new, 1 copy-on-write), "
                  "2 are free"});
  // a and b: one new block each and one copy (the second holder writes in place).
  expect_refused(f.cache,
                 [&] {
                   (void)f.cache.reserve({a, b}, 2);
                 },
                 "reserve", {"need 3 free blocks (2 new, 1 copy-on-write), 2 are free"});
  expect_refused(f.cache, [&] { (void)f.cache.reserve({a}, 100); }, "reserve",
                 {"need 51 free blocks (50 new, 1 copy-on-write)"});
  EXPECT_EQ(f.cache.blocks_to_reserve({b}, 3), 2);  // exactly what is free
  f.append({b}, 3);
  EXPECT_EQ(f.cache.num_free_blocks(), 0);
  f.append({a}, 1);  // block 1 is a's alone again: fits without a block
  expect_refused(f.cache, [&] { (void)f.cache.reserve({a}, 1); }, "reserve", {"need 1 free blocks", "0 are free"});
  f.expect_contents(a);
  f.expect_contents(b);
  f.cache.free_sequence(b);
  EXPECT_EQ(f.cache.num_free_blocks(), 2);
}

TEST(PagedKVCache, ReservedSequencesRefuseForkFreeAndAnotherReserve) {
  Filled f(small_config(8, 4));
  const SequenceId a = f.add(), b = f.add();
  f.append({a, b}, 2);
  PagedKVCache::Reservation r = f.cache.reserve({a}, 3);
  expect_refused(f.cache, [&] { (void)f.cache.fork(a); }, "fork", {"sequence 0 has an active reservation"});
  expect_refused(f.cache, [&] { f.cache.free_sequence(a); }, "free_sequence", {"sequence 0 has an active reservation"});
  expect_refused(f.cache,
                 [&] {
                   (void)f.cache.reserve({b, a}, 1);
                 },
                 "reserve", {"sequence 0 already has an active reservation"});
  expect_refused(f.cache, [&] { (void)f.cache.blocks_to_reserve({a}, 1); }, "blocks_to_reserve",
                 {"sequence 0 already has an active reservation"});
  // Other sequences go on meanwhile, and the reserved one is readable.
  f.append({b}, 5);
  const SequenceId c = f.fork(b);
  f.append({c}, 1);
  EXPECT_EQ(f.cache.block_tables({a, b}).seqlen(0), 2);
  r.commit();
  const SequenceId d = f.cache.fork(a);
  EXPECT_EQ(f.cache.length(d), 5);
  f.expect_contents(b);
  f.expect_contents(c);
}

TEST(PagedKVCache, EndedReservationRefusesEverything) {
  Filled f(small_config());
  const SequenceId s = f.add();
  PagedKVCache::Reservation r = f.cache.reserve({s}, 1);
  r.commit();
  const RowBytes row(row_bytes(f.cache.config()));
  const TensorView view = row_view(row, f.cache.config());
  expect_refused(f.cache, [&] { r.commit(); }, "Reservation::commit", {"no longer active"});
  expect_refused(f.cache, [&] { r.cancel(); }, "Reservation::cancel", {"no longer active"});
  expect_refused(f.cache, [&] { r.write_token(0, 0, 0, view, view); }, "Reservation::write_token",
                 {"no longer active"});
  EXPECT_EQ(f.cache.length(s), 1);
}

TEST(PagedKVCache, RefusesBadArguments) {
  Filled f(small_config(8, 4));
  const PagedKVCacheConfig& c = f.cache.config();
  const SequenceId a = f.add(), b = f.add();
  f.append({a}, 2);
  RowBytes k(row_bytes(c)), v(row_bytes(c)), wide(2 * row_bytes(c));
  const TensorView kv = row_view(k, c), vv = row_view(v, c);
  PagedKVCache& cache = f.cache;
  expect_refused(cache, [&] { (void)cache.reserve({a}, 0); }, "reserve", {"num_new_tokens is 0, expected >= 1"});
  expect_refused(cache, [&] { (void)cache.reserve({a}, -3); }, "reserve", {"num_new_tokens is -3, expected >= 1"});
  expect_refused(cache, [&] { (void)cache.reserve({}, 1); }, "reserve", {"sequences is empty"});
  expect_refused(cache,
                 [&] {
                   (void)cache.reserve({a, b, a}, 1);
                 },
                 "reserve", {"sequence 0 appears twice (batch entries 0 and 2), expected distinct sequences"});
  expect_refused(cache, [&] { (void)cache.block_tables({b, b}); }, "block_tables", {"sequence 1 appears twice"});
  expect_refused(cache, [&] { (void)cache.reserve({a}, std::numeric_limits<std::int64_t>::max()); }, "reserve",
                 {"sequence 0 holds 2 tokens", "int32 cache_seqlens limit of 2147483647"});
  expect_refused(cache, [&] { (void)cache.k_cache(2); }, "k_cache",
                 {"layer 2 is out of range, expected 0 <= layer < 2"});
  expect_refused(cache, [&] { (void)cache.v_cache(-1); }, "v_cache", {"layer -1 is out of range"});
  expect_refused(cache, [&] { (void)cache.ref_count(8); }, "ref_count", {"block 8 is out of range"});
  expect_refused(cache, [&] { cache.read_token(a, 0, 2, kv, vv); }, "read_token",
                 {"position 2 is out of range, expected 0 <= position < 2"});
  expect_refused(cache, [&] { cache.read_token(a, 2, 0, kv, vv); }, "read_token", {"layer 2 is out of range"});
  expect_refused(cache,
                 [&] {
                   cache.read_token(a, 0, 0, TensorView::contiguous(k.data(), c.dtype, {3, 2}), vv);
                 },
                 "read_token", {"k_out has shape (3, 2), expected (2, 3)"});
  expect_refused(cache,
                 [&] {
                   cache.read_token(a, 0, 0, kv, TensorView::contiguous(v.data(), DType::bf16, {2, 3}));
                 },
                 "read_token", {"v_out has dtype bf16, expected f32"});
  expect_refused(cache, [&] { cache.read_token(a, 0, 0, kv, kv); }, "read_token", {"v_out overlaps k_out"});
  expect_refused(cache,
                 [&] {
                   const TensorView pool = cache.k_cache(1);  // a row of the pools as the output
                   cache.read_token(a, 0, 0, kv, TensorView::contiguous(pool.data, c.dtype, {2, 3}));
                 },
                 "read_token", {"v_out overlaps the cache's pools"});

  PagedKVCache::Reservation r = cache.reserve({a, b}, 2);
  const TensorView strided = TensorView::strided(wide.data(), c.dtype, {2, 3}, {6, 2});
  expect_refused(cache, [&] { r.write_token(2, 0, 0, kv, vv); }, "Reservation::write_token",
                 {"batch_index 2 is out of range, expected 0 <= batch_index < 2"});
  expect_refused(cache, [&] { r.write_token(0, 2, 0, kv, vv); }, "Reservation::write_token",
                 {"token 2 is out of range, expected 0 <= token < 2"});
  expect_refused(cache, [&] { r.write_token(0, 0, 5, kv, vv); }, "Reservation::write_token",
                 {"layer 5 is out of range"});
  expect_refused(cache, [&] { r.write_token(0, 0, 0, strided, vv); }, "Reservation::write_token",
                 {"k must be contiguous in its last dimension"});
  expect_refused(cache, [&] { r.write_token(0, 0, 0, kv, TensorView{}); }, "Reservation::write_token",
                 {"v is missing"});
  r.cancel();
}

// Rows of strided views (a head stride larger than head_dim) are gathered and scattered by head.
TEST(PagedKVCache, StridedRowsAndHalfPrecisionRoundTrip) {
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    SCOPED_TRACE(std::string(dtype_name(dtype)));
    Filled f(small_config(8, 3, dtype));
    const PagedKVCacheConfig& c = f.cache.config();
    const SequenceId s = f.add();
    f.append({s}, 4);
    f.expect_contents(s);
    std::vector<std::byte> wide(static_cast<std::size_t>(2 * row_bytes(c)), std::byte{0x5a});
    const TensorView out = TensorView::strided(wide.data(), dtype, {2, 3}, {6, 1});
    RowBytes v(row_bytes(c));
    f.cache.read_token(s, 1, 3, out, row_view(v, c));
    const std::size_t head = static_cast<std::size_t>(row_bytes(c) / 2);
    const RowBytes& k = f.rows[s.value][1][3].first;
    EXPECT_TRUE(std::equal(k.begin(), k.begin() + head, wide.begin()));
    EXPECT_TRUE(std::equal(k.begin() + head, k.end(), wide.begin() + 2 * head));
    EXPECT_EQ(wide[head], std::byte{0x5a});  // the gap between heads is not written

    PagedKVCache::Reservation r = f.cache.reserve({s}, 1);
    r.write_token(0, 0, 0, out, row_view(v, c));
    r.commit();
    RowBytes k_back(row_bytes(c)), v_back(row_bytes(c));
    f.cache.read_token(s, 0, 4, row_view(k_back, c), row_view(v_back, c));
    EXPECT_EQ(k_back, k);
    EXPECT_EQ(v_back, v);
  }
}

// The whole protocol with the kernel: flash_attn_with_kvcache appends a
// batch's new k / v through a reservation (one sequence a fresh fork, so one
// holder of the shared partial block copies it) and attends over the pages;
// the pages then hold exactly the new rows, the other holder's tokens are
// untouched, and the output equals flash_attn over the contiguous keys.
TEST(PagedKVCache, FlashAttnWithKvcacheAppendsThroughAReservation) {
  Filled f(small_config(16, 3, DType::bf16));
  const PagedKVCacheConfig& c = f.cache.config();
  const SequenceId a = f.add();
  f.append({a}, 7);
  const SequenceId b = f.fork(a), other = f.add();
  f.append({other}, 2);
  const std::int64_t n = 4, heads = 4;
  std::mt19937_64 rng(11);
  HostTensor q(c.dtype, {3, n, heads, c.head_dim}), k_new(c.dtype, {3, n, c.heads_kv, c.head_dim});
  HostTensor v_new(c.dtype, {3, n, c.heads_kv, c.head_dim}), out(c.dtype, {3, n, heads, c.head_dim});
  q.randomize(rng), k_new.randomize(rng), v_new.randomize(rng);
  const std::vector<SequenceId> batch{b, other, a};
  PagedKVCache::Reservation r = f.cache.reserve(batch, n);
  for (std::int64_t layer = 0; layer < c.num_layers; ++layer) {
    flash_attn_with_kvcache(q, f.cache.k_cache(layer), f.cache.v_cache(layer), {.out = out},
                            {.k = k_new,
                             .v = v_new,
                             .cache_seqlens = r.cache_seqlens(),
                             .block_table = r.block_table(),
                             .causal = true,
                             .num_splits = 1});  // the unsplit kernel: bitwise what flash_attn computes
  }
  r.commit();
  const std::int64_t row = row_bytes(c);
  const auto* k_bytes = static_cast<const std::byte*>(k_new.view().data);
  const auto* v_bytes = static_cast<const std::byte*>(v_new.view().data);
  for (std::size_t i = 0; i < batch.size(); ++i)
    for (std::int64_t layer = 0; layer < c.num_layers; ++layer)
      for (std::int64_t t = 0; t < n; ++t) {
        const std::int64_t at = (static_cast<std::int64_t>(i) * n + t) * row;  // (b, n) rows of new k / v
        f.rows[batch[i].value][layer].emplace_back(RowBytes(k_bytes + at, k_bytes + at + row),
                                                   RowBytes(v_bytes + at, v_bytes + at + row));
      }
  for (SequenceId s : batch) f.expect_contents(s);
  EXPECT_NE(f.cache.block_ids(a)[2], f.cache.block_ids(b)[2]);  // the shared partial block was copied once

  // Sequence b attends over its 11 keys: flash_attn on a contiguous copy, the same result.
  const std::int64_t length = f.cache.length(b);
  HostTensor k_all(c.dtype, {1, length, c.heads_kv, c.head_dim}), v_all(c.dtype, {1, length, c.heads_kv, c.head_dim});
  HostTensor q_b(c.dtype, {1, n, heads, c.head_dim}), expected(c.dtype, {1, n, heads, c.head_dim});
  const std::int64_t last = c.num_layers - 1;
  for (std::int64_t j = 0; j < length; ++j) {
    std::copy(f.rows[b.value][last][j].first.begin(), f.rows[b.value][last][j].first.end(),
              k_all.data<std::byte>() + j * row);
    std::copy(f.rows[b.value][last][j].second.begin(), f.rows[b.value][last][j].second.end(),
              v_all.data<std::byte>() + j * row);
  }
  for (std::int64_t e = 0; e < q_b.numel(); ++e) q_b.set(e, q.get(e));  // batch entry 0 is b
  flash_attn(q_b, k_all, v_all, {.out = expected}, {.causal = true});
  for (std::int64_t e = 0; e < expected.numel(); ++e) EXPECT_EQ(out.get(e), expected.get(e)) << e;
}

}  // namespace
}  // namespace flashattn::testing
