// Bad input to flash_attn_with_kvcache: each case starts from a valid call
// (new k / v appended, rotary, causal, a cache_seqlens tensor, softmax_lse,
// alibi and softcap; contiguous with cache_batch_idx and cache_leftpad, or
// paged through a shuffled block table), breaks one thing, and expects a
// flashattn::Error that starts with "flash_attn_with_kvcache: <argument>" and
// says what was expected and given, with every buffer (caches byte for byte,
// outputs poisoned with a sentinel) untouched. Then a fixed-seed loop of
// random index-tensor mutations: each call succeeds, writing only the cache
// slots it appends to, or throws flashattn::Error and writes nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "flashattn/error.hpp"
#include "flashattn/flash_attn_kvcache.hpp"
#include "support/error_case.hpp"
#include "support/host_tensor.hpp"
#include "support/kvcache_error_case.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

using Entry = CacheLayout;
using Spec = KvCacheSpec;
using Case = KvCacheCase;
using Entries = std::vector<Entry>;
const Entries kBoth{Entry::contiguous, Entry::paged};
const Entries kContiguous{Entry::contiguous};
const Entries kPaged{Entry::paged};

constexpr std::int32_t kInt32Min = std::numeric_limits<std::int32_t>::min();
constexpr std::int32_t kInt32Max = std::numeric_limits<std::int32_t>::max();
constexpr std::int64_t kInt64Min = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

using Mutation = std::function<void(Case&)>;

Mutation replaced(const std::string& arg, DType dtype, std::vector<std::int64_t> shape) {
  return [=](Case& c) { c.replace(arg, dtype, shape); };
}
Mutation retyped(const std::string& arg, DType dtype) {
  return [=](Case& c) { c.replace(arg, dtype, shape_of(c.view(arg))); };
}
Mutation int_set(const std::string& arg, std::int64_t index, std::int32_t value) {
  return [=](Case& c) { c.set_int(arg, index, value); };
}
Mutation on_cuda(const std::string& arg) {
  return [arg](Case& c) { c.view(arg).device = {DeviceType::cuda, 0}; };
}
Mutation strided_last_dim(const std::string& arg) {
  return [arg](Case& c) { c.make_last_dim_strided(arg); };
}
Mutation one_rank_less(const std::string& arg) {
  return [arg](Case& c) { merge_leading_dims(c.view(arg)); };
}
Mutation null_data(const std::string& arg) {
  return [arg](Case& c) { c.view(arg).data = nullptr; };
}
Mutation with(std::function<void(KvCacheOptions&)> set) {
  return [set](Case& c) { set(c.options); };
}
Mutation table_set(std::int64_t b, std::int64_t n, std::int32_t value) {
  return [=](Case& c) { c.table(b, n) = value; };
}
Mutation seqlens_int(std::int64_t value) {
  return [value](Case& c) { c.seqlens_int = value; };
}

// One bad-input case: TEST(FlashAttnKvCacheErrors, name) running reject<Case>(...) (error_case.hpp).
#define REJECT(name, ...) \
  TEST(FlashAttnKvCacheErrors, name) { reject<Case>(__VA_ARGS__); }

// ---------------------------------------------------------------- controls
TEST(FlashAttnKvCacheErrors, ValidCallIsAccepted) {
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    for (Entry e : kBoth) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + (e == Entry::paged ? " paged" : " contiguous"));
      Case c(e, {.dtype = dtype});
      expect_accepted(c);
    }
  }
}

TEST(FlashAttnKvCacheErrors, AppendFillingTheCacheExactlyIsAccepted) {
  for (Entry e : kBoth) {
    Case c(e, Spec{});
    c.set_int("cache_seqlens", 0, static_cast<std::int32_t>(c.capacity - 2));  // + seqlen_new 2 = capacity
    expect_accepted(c);
  }
}

// The block table is checked where the call reads or writes, not beyond:
// garbage in entries past a sequence's end changes nothing.
TEST(FlashAttnKvCacheErrors, OutOfRangeBlockTableEntriesTheCallDoesNotUseAreAccepted) {
  Case valid(Entry::paged, Spec{}), c(Entry::paged, Spec{});
  c.table(0, 3) = -1;  // sequence 0 ends at 7 = pages 0..2; sequence 1 at 5 = pages 0..1
  c.table(1, 2) = kInt32Min;
  c.table(1, 3) = kInt32Max;
  expect_accepted(c);
  valid.call();
  for (const char* arg : {"out", "softmax_lse", "k_cache", "v_cache"})
    EXPECT_TRUE(c.owner(c.view(arg))->bytes() == valid.owner(valid.view(arg))->bytes()) << arg;
}

TEST(FlashAttnKvCacheErrors, SharedReadOnlyPageIsAccepted) {
  Case c(Entry::paged, Spec{});
  c.table(1, 0) = c.table(0, 0);  // a common prefix page: both read it, neither appends to it
  expect_accepted(c);
}

TEST(FlashAttnKvCacheErrors, DuplicateCacheBatchIdxWithoutAppendIsAccepted) {
  Case c(Entry::contiguous, Spec{});
  c.no_append();
  c.set_int("cache_batch_idx", 1, c.get_int("cache_batch_idx", 0));
  expect_accepted(c);
}

TEST(FlashAttnKvCacheErrors, LeftpadEqualToCacheSeqlensIsAccepted) {
  Case c(Entry::contiguous, Spec{});
  c.set_int("cache_leftpad", 0, 5);  // only the appended keys remain
  expect_accepted(c);
}

// Without causal or a window, q is rotated at cache_seqlens only: the table
// needs rows up to the last new key (5 + 2 - 1 = 6), not q's rows.
TEST(FlashAttnKvCacheErrors, RotaryCoveringTheNewKeysIsEnoughWithoutCausal) {
  for (Entry e : kBoth) {
    Case c(e, Spec{});
    c.options.causal = false;
    c.view("rotary_cos").shape[0] = c.view("rotary_sin").shape[0] = 7;
    expect_accepted(c);
  }
}

TEST(FlashAttnKvCacheErrors, HugeNumSplitsIsClampedAndAccepted) {
  for (Entry e : kBoth) {
    Case c(e, Spec{});
    c.options.num_splits = kInt64Max;
    expect_accepted(c);
  }
}

TEST(FlashAttnKvCacheErrors, StridedIndexTensorsAreAccepted) {
  Case c(Entry::contiguous, Spec{});
  for (const char* arg : {"cache_seqlens", "cache_batch_idx", "cache_leftpad"}) {
    const std::int32_t first = c.get_int(arg, 0), second = c.get_int(arg, 1);
    c.view(arg) = c.add(int_tensor({first, -1, -1, second}));
    c.view(arg).shape[0] = 2;
    c.view(arg).stride[0] = 3;
  }
  expect_accepted(c);
}

// A broadcast (zero-stride) cache is fine to read.
TEST(FlashAttnKvCacheErrors, BroadcastCacheWithoutAppendIsAccepted) {
  Case c(Entry::contiguous, Spec{});
  c.no_append();
  c.k_cache.stride[0] = c.v_cache.stride[0] = 0;
  expect_accepted(c);
}

// -------------------------------------------------------------------- q
REJECT(QDtypeF64IsRejected, kBoth, {.dtype = DType::f64}, "q", {"dtype f64", "expected f32, f16 or bf16"})
#ifndef FLASHATTN_WITH_CUDA  // a CUDA build takes CUDA tensors: tests/cuda/test_cuda_dispatch.cpp
REJECT(CudaQIsRejected, kBoth, on_cuda("q"), "q", {"cuda:0", "expected cpu", "only the CPU backend"})
#endif
REJECT(QRankIsChecked, kBoth, one_rank_less("q"), "q", {"has rank 3", "expected 4"})
REJECT(QHeadDimAbove256IsRejected, kBoth, {.head_dim = 264}, "q", {"head dim 264", "expected 1 to 256"})
REJECT(QBatchZeroIsRejected, kBoth, [](Case& c) { c.q.shape[0] = 0; }, "q", {"batch size 0", "at least 1"})
REJECT(QSeqlenZeroIsRejected, kBoth, [](Case& c) { c.q.shape[1] = 0; }, "q", {"seqlen 0", "at least 1"})
REJECT(QLastDimMustBeContiguous, kBoth, strided_last_dim("q"), "q", {"contiguous in its last dimension", "got 2"})
REJECT(NullQIsRejected, kBoth, null_data("q"), "q", {"null data pointer"})

// ------------------------------------------------------- k_cache, v_cache
REJECT(KCacheDtypeMustMatchQ, kBoth, retyped("k_cache", DType::bf16), "k_cache", {"dtype bf16", "expected f32"})
REJECT(VCacheDtypeMustMatchQ, kBoth, retyped("v_cache", DType::f16), "v_cache", {"dtype f16", "expected f32"})
REJECT(KCacheDeviceMustMatchQ, kBoth, on_cuda("k_cache"), "k_cache", {"cuda:0", "expected cpu"})
REJECT(VCacheDeviceMustMatchQ, kBoth, on_cuda("v_cache"), "v_cache", {"cuda:0", "expected cpu"})
REJECT(KCacheRankIsChecked, kBoth, one_rank_less("k_cache"), "k_cache", {"has rank 3", "expected 4"})
REJECT(VCacheRankIsChecked, kBoth, one_rank_less("v_cache"), "v_cache", {"has rank 3", "expected 4"})
REJECT(KCacheHeadDimMustMatchQ, kBoth,
       [](Case& c) {
         std::vector<std::int64_t> shape = shape_of(c.k_cache);
         shape[3] = 16;
         c.replace("k_cache", DType::f32, shape);
       },
       "k_cache", {"head dim 16", "expected q's 8"})
REJECT(KCacheHeadsMustDivideQHeads, kBoth, {.heads_kv = 3}, "k_cache", {"3 heads", "does not divide q's 4 heads"})
REJECT(VCacheShapeMustMatchKCache, kBoth,
       [](Case& c) {
         std::vector<std::int64_t> shape = shape_of(c.v_cache);
         --shape[1];
         c.replace("v_cache", DType::f32, shape);
       },
       "v_cache", {"has shape (", "expected ("})
REJECT(VCacheHeadsMustMatchKCache, kBoth,
       [](Case& c) {
         std::vector<std::int64_t> shape = shape_of(c.v_cache);
         shape[2] = 1;
         c.replace("v_cache", DType::f32, shape);
       },
       "v_cache", {", 1, 8), expected (", ", 2, 8)"})
REJECT(KCacheLastDimMustBeContiguous, kBoth, strided_last_dim("k_cache"), "k_cache",
       {"contiguous in its last dimension", "got 2"})
REJECT(VCacheLastDimMustBeContiguous, kBoth, strided_last_dim("v_cache"), "v_cache",
       {"contiguous in its last dimension", "got 2"})
REJECT(NullKCacheIsRejected, kBoth, null_data("k_cache"), "k_cache", {"null data pointer"})
REJECT(MissingVCacheIsRejected, kBoth, [](Case& c) { c.v_cache = {}; }, "v_cache", {"is missing"})
REJECT(ContiguousCacheWithFewerRowsThanBatchIsRejected, kContiguous,
       [](Case& c) {
         c.options.cache_batch_idx = {};
         c.k_cache.shape[0] = c.v_cache.shape[0] = 1;
       },
       "k_cache", {"1 rows", "expected at least q's batch size 2"})
REJECT(PagedCacheWithoutBlocksIsRejected, kPaged, [](Case& c) { c.k_cache.shape[0] = c.v_cache.shape[0] = 0; },
       "k_cache", {"0 blocks", "expected at least 1"})
REJECT(PagedCacheWithPageSizeZeroIsRejected, kPaged, [](Case& c) { c.k_cache.shape[1] = c.v_cache.shape[1] = 0; },
       "k_cache", {"page size 0", "expected at least 1"})
// Appending writes the caches: their elements need addresses of their own.
REJECT(KCacheWithAliasedPositionsIsRejectedWhenAppending, kBoth, [](Case& c) { c.k_cache.stride[1] = 0; }, "k_cache",
       {"overlapping elements", "expected every element at its own address"})
REJECT(VCacheWithAliasedRowsIsRejectedWhenAppending, kBoth, [](Case& c) { c.v_cache.stride[0] = 0; }, "v_cache",
       {"overlapping elements"})

// ------------------------------------------------------------ new k and v
REJECT(KWithoutVIsRejected, kBoth, [](Case& c) { c.options.v = {}; }, "k", {"without v", "expected both or neither"})
REJECT(VWithoutKIsRejected, kBoth, [](Case& c) { c.options.k = {}; }, "v", {"without k", "expected both or neither"})
REJECT(KDtypeMustMatchQ, kBoth, retyped("k", DType::f16), "k", {"dtype f16", "expected f32"})
REJECT(VDtypeMustMatchQ, kBoth, retyped("v", DType::bf16), "v", {"dtype bf16", "expected f32"})
REJECT(KDeviceMustMatchQ, kBoth, on_cuda("k"), "k", {"cuda:0", "expected cpu"})
REJECT(KHeadsMustMatchTheCache, kBoth, replaced("k", DType::f32, {2, 2, 1, 8}), "k",
       {"shape (2, 2, 1, 8)", "expected (2, 2, 2, 8)"})
REJECT(KBatchMustMatchQ, kBoth, replaced("k", DType::f32, {3, 2, 2, 8}), "k",
       {"shape (3, 2, 2, 8)", "expected (2, 2, 2, 8)"})
REJECT(KHeadDimMustMatchQ, kBoth, replaced("k", DType::f32, {2, 2, 2, 4}), "k",
       {"shape (2, 2, 2, 4)", "expected (2, 2, 2, 8)"})
REJECT(VSeqlenMustMatchK, kBoth, replaced("v", DType::f32, {2, 3, 2, 8}), "v",
       {"shape (2, 3, 2, 8)", "expected (2, 2, 2, 8)"})
REJECT(KRankIsChecked, kBoth, one_rank_less("k"), "k", {"has rank 3", "expected 4"})
REJECT(KLastDimMustBeContiguous, kBoth, strided_last_dim("k"), "k", {"contiguous in its last dimension", "got 2"})
REJECT(VLastDimMustBeContiguous, kBoth, strided_last_dim("v"), "v", {"contiguous in its last dimension", "got 2"})
REJECT(NullKIsRejected, kBoth, null_data("k"), "k", {"null data pointer"})
// seqlen_new near INT64_MAX (a zero-stride k): cache_seqlens + seqlen_new must not wrap.
REJECT(HugeSeqlenNewIsRejectedWithoutOverflow, kBoth,
       {.seqlen_q = 1, .heads = 1, .heads_kv = 1, .head_dim = 1, .rotary_half = 0, .cache_lens = {5}},
       [](Case& c) {
         for (TensorView* t : {&c.options.k, &c.options.v}) t->shape[1] = kInt64Max, t->stride[1] = 0;
       },
       "cache_seqlens", {"5 + 9223372036854775807", "exceeds the cache's capacity"})

// ----------------------------------------------------------- cache_seqlens
REJECT(MissingCacheSeqlensWhileAppendingIsRejected, kBoth, [](Case& c) { c.seqlens = {}; }, "cache_seqlens",
       {"is missing", "required with new k and v"})
REJECT(NegativeCacheSeqlensIsRejected, kBoth, int_set("cache_seqlens", 1, -1), "cache_seqlens",
       {"[1] is -1", "expected >= 0"})
REJECT(Int32MinCacheSeqlensIsRejected, kBoth, int_set("cache_seqlens", 0, kInt32Min), "cache_seqlens",
       {"[0] is -2147483648", "expected >= 0"})
REJECT(Int32MaxCacheSeqlensIsRejected, kBoth, int_set("cache_seqlens", 0, kInt32Max), "cache_seqlens",
       {"2147483647 + 2", "exceeds the cache's capacity"})
REJECT(ContiguousCacheTooSmallForTheAppendIsRejected, kContiguous, int_set("cache_seqlens", 0, 10), "cache_seqlens",
       {"[0] + seqlen_new = 10 + 2", "capacity of 11 positions", "seqlen_cache 11"})
REJECT(PagedCacheTooSmallForTheAppendIsRejected, kPaged, int_set("cache_seqlens", 1, 11), "cache_seqlens",
       {"[1] + seqlen_new = 11 + 2", "capacity of 12 positions", "block_table has 4 pages of 3"})
REJECT(BlockTableTooNarrowForTheAppendIsRejected, kPaged,
       [](Case& c) { c.options.block_table.shape[1] = 2; },  // 6 positions; sequence 0 ends at 7
       "cache_seqlens", {"[0] + seqlen_new = 5 + 2", "capacity of 6 positions", "block_table has 2 pages of 3"})
REJECT(ContiguousCacheShorterThanTheAppendIsRejected, kContiguous,
       [](Case& c) { c.k_cache.shape[1] = c.v_cache.shape[1] = 6; }, "cache_seqlens",
       {"[0] + seqlen_new = 5 + 2", "capacity of 6 positions"})
REJECT(NegativeIntCacheSeqlensIsRejected, kBoth, seqlens_int(-1), "cache_seqlens", {"is -1", "expected 0 to "})
REJECT(Int64MinIntCacheSeqlensIsRejected, kBoth, seqlens_int(kInt64Min), "cache_seqlens",
       {"is -9223372036854775808", "expected 0 to "})
REJECT(Int64MaxIntCacheSeqlensIsRejected, kBoth, seqlens_int(kInt64Max), "cache_seqlens",
       {"is 9223372036854775807", "expected 0 to "})
REJECT(IntCacheSeqlensTooLargeForTheAppendIsRejected, kContiguous, seqlens_int(10), "cache_seqlens",
       {"[0] + seqlen_new = 10 + 2", "capacity of 11"})
REJECT(CacheSeqlensMustBeInt32, kBoth, retyped("cache_seqlens", DType::f32), "cache_seqlens",
       {"dtype f32", "expected i32"})
REJECT(CacheSeqlensF64IsRejected, kBoth, retyped("cache_seqlens", DType::f64), "cache_seqlens",
       {"dtype f64", "expected i32"})
REJECT(CacheSeqlensOfWrongLengthIsRejected, kBoth, replaced("cache_seqlens", DType::i32, {3}), "cache_seqlens",
       {"shape (3,)", "expected (2,)"})
REJECT(CacheSeqlensRankIsChecked, kBoth, replaced("cache_seqlens", DType::i32, {1, 2}), "cache_seqlens",
       {"rank 2", "expected 1"})
REJECT(CacheSeqlensDeviceMustBeCpu, kBoth, on_cuda("cache_seqlens"), "cache_seqlens", {"cuda:0", "expected cpu"})
REJECT(NullCacheSeqlensIsRejected, kBoth, null_data("cache_seqlens"), "cache_seqlens", {"null data pointer"})

// --------------------------------------------------------- cache_batch_idx
REJECT(NegativeCacheBatchIdxIsRejected, kContiguous, int_set("cache_batch_idx", 0, -1), "cache_batch_idx",
       {"[0] is -1", "expected a cache row in [0, 3)"})
REJECT(CacheBatchIdxPastTheCacheIsRejected, kContiguous, int_set("cache_batch_idx", 1, 3), "cache_batch_idx",
       {"[1] is 3", "expected a cache row in [0, 3)"})
REJECT(Int32MinCacheBatchIdxIsRejected, kContiguous, int_set("cache_batch_idx", 1, kInt32Min), "cache_batch_idx",
       {"[1] is -2147483648", "[0, 3)"})
REJECT(DuplicateCacheBatchIdxWhileAppendingIsRejected, kContiguous, int_set("cache_batch_idx", 1, 2), "cache_batch_idx",
       {"[0] and cache_batch_idx[1] are both 2", "expected distinct cache rows"})
REJECT(CacheBatchIdxMustBeInt32, kContiguous, retyped("cache_batch_idx", DType::f32), "cache_batch_idx",
       {"dtype f32", "expected i32"})
REJECT(CacheBatchIdxOfWrongLengthIsRejected, kContiguous, replaced("cache_batch_idx", DType::i32, {1}),
       "cache_batch_idx", {"shape (1,)", "expected (2,)"})
REJECT(CacheBatchIdxWithBlockTableIsRejected, kPaged,
       [](Case& c) {
         c.options.cache_batch_idx = c.add(int_tensor({0, 1}));
       },
       "cache_batch_idx", {"given with block_table", "expected one or the other"})

// ----------------------------------------------------------- cache_leftpad
REJECT(LeftpadWithBlockTableIsRejected, kPaged,
       [](Case& c) {
         c.options.cache_leftpad = c.add(int_tensor({0, 0}));
       },
       "cache_leftpad", {"given with block_table", "expected one or the other"})
REJECT(LeftpadPastCacheSeqlensIsRejected, kContiguous, int_set("cache_leftpad", 0, 6), "cache_leftpad",
       {"[0] is 6", "expected 0 to cache_seqlens[0] = 5"})
REJECT(NegativeLeftpadIsRejected, kContiguous, int_set("cache_leftpad", 1, -1), "cache_leftpad",
       {"[1] is -1", "expected 0 to cache_seqlens[1] = 3"})
REJECT(Int32MaxLeftpadIsRejected, kContiguous, int_set("cache_leftpad", 1, kInt32Max), "cache_leftpad",
       {"[1] is 2147483647", "expected 0 to"})
REJECT(LeftpadMustBeInt32, kContiguous, retyped("cache_leftpad", DType::f64), "cache_leftpad",
       {"dtype f64", "expected i32"})
REJECT(LeftpadOfWrongLengthIsRejected, kContiguous, replaced("cache_leftpad", DType::i32, {3}), "cache_leftpad",
       {"shape (3,)", "expected (2,)"})

// ------------------------------------------------------------- block_table
// Sequence 0 (cache_seqlens 5, appends at 5 and 6) uses entries 0..2,
// sequence 1 (appends at 3 and 4) entries 0..1; the caches have 11 pages.
REJECT(NegativeBlockTableEntryOfAReadPageIsRejected, kPaged, table_set(0, 0, -1), "block_table",
       {"[0, 0] is -1", "expected a page in [0, 11)"})
REJECT(BlockTableEntryEqualToNumBlocksIsRejected, kPaged, table_set(0, 2, 11), "block_table",
       {"[0, 2] is 11", "expected a page in [0, 11)"})
REJECT(Int32MinBlockTableEntryIsRejected, kPaged, table_set(1, 1, kInt32Min), "block_table",
       {"[1, 1] is -2147483648", "[0, 11)"})
REJECT(Int32MaxBlockTableEntryIsRejected, kPaged, table_set(1, 0, kInt32Max), "block_table",
       {"[1, 0] is 2147483647", "[0, 11)"})
// Without cache_seqlens every cache row is full: every entry is used.
REJECT(EveryBlockTableEntryIsUsedWithoutCacheSeqlens, kPaged,
       [](Case& c) {
         c.no_append();
         c.seqlens = {};
         c.table(1, 3) = -1;
       },
       "block_table", {"[1, 3] is -1"})
REJECT(BlockTableRowsMustMatchBatch, kPaged, replaced("block_table", DType::i32, {3, 4}), "block_table",
       {"3 rows", "expected one per sequence: 2"})
REJECT(BlockTableMustBeInt32, kPaged, retyped("block_table", DType::f32), "block_table", {"dtype f32", "expected i32"})
REJECT(BlockTableRankIsChecked, kPaged, one_rank_less("block_table"), "block_table", {"rank 1", "expected 2"})
REJECT(BlockTableLastDimMustBeContiguous, kPaged, strided_last_dim("block_table"), "block_table",
       {"contiguous in its last dimension", "got 2"})
REJECT(BlockTableDeviceMustBeCpu, kPaged, on_cuda("block_table"), "block_table", {"cuda:0", "expected cpu"})
// Sequence 0 appends position 6 at (entry 2, row 0), sequence 1 position 3 at (entry 1, row 0).
REJECT(TwoSequencesAppendingToOneSlotIsRejected, kPaged, [](Case& c) { c.table(1, 1) = c.table(0, 2); }, "block_table",
       {"sequences 0 and 1 append to the same slot", ", row 0)", "expected appends to disjoint slots"})
// Sequence 1 appends positions 3 and 4 at rows 0 and 1 of its entry 1, the
// page that sequence 0 now reads as positions 0..2.
REJECT(AppendingIntoASlotAnotherSequenceReadsIsRejected, kPaged, [](Case& c) { c.table(0, 0) = c.table(1, 1); },
       "block_table",
       {"sequence 1 append to the slot (page ", ", row 0) that sequence 0 reads at position 0",
        "expected appends to slots no other position reads"})
// Sequence 0's entries 1 and 2 name one page: position 6 (row 0) would overwrite its cached position 3.
REJECT(AppendingOverTheSequencesOwnCachedPositionIsRejected, kPaged, [](Case& c) { c.table(0, 2) = c.table(0, 1); },
       "block_table", {"sequence 0 append to the slot (page ", ", row 0) that sequence 0 reads at position 3"})
REJECT(BlockTableRowsSharingAllPagesWhileAppendingIsRejected, kPaged,
       [](Case& c) {
         c.options.block_table.stride[0] = 0;  // every sequence is sequence 0's pages
         c.set_int("cache_seqlens", 1, 5);
       },
       "block_table", {"sequences 0 and 1 append to the same slot"})

// ------------------------------------------------------------------ rotary
REJECT(RotaryWithoutNewKIsRejected, kBoth, [](Case& c) { c.options.k = c.options.v = {}; }, "rotary_cos",
       {"without new k and v"})
REJECT(RotaryCosWithoutSinIsRejected, kBoth, [](Case& c) { c.options.rotary_sin = {}; }, "rotary_cos",
       {"without rotary_sin", "expected both or neither"})
REJECT(RotarySinWithoutCosIsRejected, kBoth, [](Case& c) { c.options.rotary_cos = {}; }, "rotary_sin",
       {"without rotary_cos", "expected both or neither"})
REJECT(RotaryCosDtypeMustMatchQ, kBoth, retyped("rotary_cos", DType::f16), "rotary_cos", {"dtype f16", "expected f32"})
REJECT(RotarySinDtypeMustMatchQ, kBoth, retyped("rotary_sin", DType::bf16), "rotary_sin",
       {"dtype bf16", "expected f32"})
REJECT(RotaryCosF64IsRejected, kBoth, retyped("rotary_cos", DType::f64), "rotary_cos", {"dtype f64", "expected f32"})
REJECT(RotaryCosDeviceMustMatchQ, kBoth, on_cuda("rotary_cos"), "rotary_cos", {"cuda:0", "expected cpu"})
REJECT(RotaryCosRankIsChecked, kBoth, one_rank_less("rotary_cos"), "rotary_cos", {"rank 1", "expected 2"})
REJECT(RotarySinLastDimMustBeContiguous, kBoth, strided_last_dim("rotary_sin"), "rotary_sin",
       {"contiguous in its last dimension", "got 2"})
// rotary_dim = 2 * columns: 10 > head_dim 8.
REJECT(RotaryDimAboveHeadDimIsRejected, kBoth,
       [](Case& c) {
         c.replace("rotary_cos", DType::f32, {c.view("rotary_cos").shape[0], 5});
         c.replace("rotary_sin", DType::f32, {c.view("rotary_sin").shape[0], 5});
       },
       "rotary_cos", {"5 columns (rotary_dim / 2)", "expected 1 to head_dim / 2 = 4"})
// An odd head dim: 2 * 4 columns = 8 > 7 (rotary_dim itself is always even: 2 * columns).
REJECT(RotaryDimAboveOddHeadDimIsRejected, kBoth, {.head_dim = 7, .rotary_half = 4}, "rotary_cos",
       {"4 columns", "expected 1 to head_dim / 2 = 3"})
REJECT(RotaryWithoutColumnsIsRejected, kBoth,
       [](Case& c) { c.view("rotary_cos").shape[1] = c.view("rotary_sin").shape[1] = 0; }, "rotary_cos",
       {"0 columns", "expected 1 to head_dim / 2 = 4"})
REJECT(RotarySinColumnsMustMatchCos, kBoth,
       [](Case& c) {
         c.replace("rotary_sin", DType::f32, {c.view("rotary_sin").shape[0], 3});
       },
       "rotary_sin", {"has shape (", ", 3), expected (", ", 2)"})
REJECT(RotarySinRowsMustMatchCos, kBoth, [](Case& c) { c.view("rotary_sin").shape[0] = 13; }, "rotary_sin",
       {"has shape (13, 2), expected (1"})
// Causal: q row i (of 3) at cache_seqlens + i, up to 5 + 2 = 7: 8 rows needed.
REJECT(RotaryTooShortForCausalQueriesIsRejected, kBoth,
       [](Case& c) { c.view("rotary_cos").shape[0] = c.view("rotary_sin").shape[0] = 7; }, "rotary_cos",
       {"7 rows (seqlen_ro)", "expected at least 8", "up to position 7"})
REJECT(RotaryTooShortForWindowedQueriesIsRejected, kBoth,
       [](Case& c) {
         c.options.causal = false;
         c.options.window_size = {4, 0};
         c.view("rotary_cos").shape[0] = c.view("rotary_sin").shape[0] = 7;
       },
       "rotary_cos", {"7 rows", "expected at least 8"})
// The last new key: 5 + 2 - 1 = 6, 7 rows needed.
REJECT(RotaryTooShortForNewKeysIsRejected, kBoth,
       [](Case& c) {
         c.options.causal = false;
         c.view("rotary_cos").shape[0] = c.view("rotary_sin").shape[0] = 6;
       },
       "rotary_cos", {"6 rows", "expected at least 7", "up to position 6"})

// ------------------------------------------------------------------ outputs
REJECT(MissingOutIsRejected, kBoth, [](Case& c) { c.outputs.out = {}; }, "out", {"is missing"})
REJECT(OutDtypeMustMatchQ, kBoth, retyped("out", DType::bf16), "out", {"dtype bf16", "expected f32"})
REJECT(OutOfWrongShapeIsRejected, kBoth, replaced("out", DType::f32, {2, 3, 4, 9}), "out",
       {"shape (2, 3, 4, 9)", "expected (2, 3, 4, 8)"})
REJECT(OutLastDimMustBeContiguous, kBoth, strided_last_dim("out"), "out", {"contiguous in its last dimension", "got 2"})
REJECT(OutWithZeroStrideIsRejected, kBoth, [](Case& c) { c.outputs.out.stride[1] = 0; }, "out",
       {"overlapping elements"})
REJECT(SoftmaxLseMustBeF32, kBoth, retyped("softmax_lse", DType::f16), "softmax_lse", {"dtype f16", "expected f32"})
REJECT(SoftmaxLseOfWrongShapeIsRejected, kBoth, replaced("softmax_lse", DType::f32, {2, 3, 4}), "softmax_lse",
       {"shape (2, 3, 4)", "expected (2, 4, 3)"})

// ---------------------------------------------------------------- overlaps
REJECT(OutOverlappingKCacheIsRejectedWhenAppending, kBoth, [](Case& c) { c.alias("out", "k_cache"); }, "k_cache",
       {"overlaps out in memory", "both are written"})
REJECT(OutOverlappingKCacheIsRejectedWithoutAppend, kBoth,
       [](Case& c) {
         c.no_append();
         c.alias("out", "k_cache");
       },
       "out", {"overlaps k_cache in memory", "out is written while k_cache is read"})
REJECT(SoftmaxLseOverlappingVCacheIsRejected, kBoth, [](Case& c) { c.alias("softmax_lse", "v_cache"); }, "v_cache",
       {"overlaps softmax_lse in memory"})
REJECT(CachesSharingMemoryWhileAppendingIsRejected, kBoth, [](Case& c) { c.alias("v_cache", "k_cache"); }, "v_cache",
       {"overlaps k_cache in memory"})
REJECT(KCacheOverlappingQIsRejected, kBoth, [](Case& c) { c.alias("q", "k_cache"); }, "k_cache",
       {"overlaps q in memory", "k_cache is written while q is read"})
REJECT(VCacheOverlappingNewKIsRejected, kBoth, [](Case& c) { c.alias("k", "v_cache"); }, "v_cache",
       {"overlaps k in memory"})
REJECT(KCacheOverlappingBlockTableIsRejected, kPaged,
       [](Case& c) {
         std::memcpy(c.k_cache.data, c.options.block_table.data, 8 * sizeof(std::int32_t));
         c.alias("block_table", "k_cache");
       },
       "k_cache", {"overlaps block_table in memory"})
REJECT(OutOverlappingCacheSeqlensIsRejected, kBoth,
       [](Case& c) {
         std::memcpy(c.outputs.out.data, c.seqlens.data, 2 * sizeof(std::int32_t));
         c.alias("cache_seqlens", "out");
       },
       "out", {"overlaps cache_seqlens in memory"})

// ------------------------------------------------------------------ options
REJECT(NegativeNumSplitsIsRejected, kBoth, with([](auto& o) { o.num_splits = -1; }), "num_splits",
       {"is -1", "expected >= 0"})
REJECT(Int64MinNumSplitsIsRejected, kBoth, with([](auto& o) { o.num_splits = kInt64Min; }), "num_splits",
       {"is -9223372036854775808", "expected >= 0"})
REJECT(WindowLeftBelowMinusOneIsRejected, kBoth, with([](auto& o) { o.window_size.left = -2; }), "window_size.left",
       {"-2", "expected >= -1"})
REJECT(WindowRightBelowMinusOneIsRejected, kBoth, with([](auto& o) { o.window_size.right = kInt64Min; }),
       "window_size.right", {"-9223372036854775808", "expected >= -1"})
REJECT(NegativeSoftcapIsRejected, kBoth, with([](auto& o) { o.softcap = -1.0f; }), "softcap",
       {"-1.0", "expected a finite value >= 0"})
REJECT(NanSoftcapIsRejected, kBoth, with([](auto& o) { o.softcap = std::nanf(""); }), "softcap",
       {"nan", "expected a finite value >= 0"})
REJECT(InfiniteSoftmaxScaleIsRejected, kBoth, with([](auto& o) { o.softmax_scale = INFINITY; }), "softmax_scale",
       {"inf", "expected a finite value"})
REJECT(AlibiSlopesWithWrongHeadsIsRejected, kBoth, replaced("alibi_slopes", DType::f32, {3}), "alibi_slopes",
       {"(3,)", "expected (4,)"})
REJECT(AlibiSlopesWithWrongBatchIsRejected, kBoth, replaced("alibi_slopes", DType::f32, {3, 4}), "alibi_slopes",
       {"(3, 4)", "expected (2, 4)"})
REJECT(AlibiSlopesRankMustBe1Or2, kBoth, replaced("alibi_slopes", DType::f32, {1, 2, 4}), "alibi_slopes",
       {"rank 3", "expected (4,) or (2, 4)"})
REJECT(AlibiSlopesMustBeF32, kBoth, retyped("alibi_slopes", DType::bf16), "alibi_slopes",
       {"dtype bf16", "expected f32"})
REJECT(AlibiSlopesDeviceMustBeCpu, kBoth, on_cuda("alibi_slopes"), "alibi_slopes", {"cuda:0", "expected cpu"})

// ------------------------------------------------------------- randomized
// Random values for an int32 index: int32 limits, sizes of the call +- 1, and
// (half of the time) values in the range where a valid value lies.
std::int32_t random_index(std::mt19937_64& rng, const Case& c, std::int32_t valid_end) {
  const std::int64_t limits[] = {kInt32Min, kInt32Min + 1, -2, -1, 0, 1, kInt32Max - 1, kInt32Max};
  const std::int64_t sizes[] = {c.page_size, c.capacity, c.cache_rows};
  switch (rng() % 4) {
    case 0:
      return static_cast<std::int32_t>(limits[rng() % std::size(limits)]);
    case 1:
      return static_cast<std::int32_t>(sizes[rng() % std::size(sizes)] + static_cast<std::int64_t>(rng() % 3) - 1);
    default:
      return static_cast<std::int32_t>(rng() % std::max<std::int32_t>(valid_end, 1));
  }
}

// Mutates one index of `c`: a block_table entry, cache_seqlens (tensor or
// int), cache_leftpad or cache_batch_idx (given to a paged call: rejected).
void mutate_an_index(Case& c, std::mt19937_64& rng, bool paged) {
  const std::int64_t batch = c.q.shape[0];
  const std::int64_t b = static_cast<std::int64_t>(rng() % batch);
  const std::int32_t rows = static_cast<std::int32_t>(c.cache_rows), length = static_cast<std::int32_t>(c.capacity);
  switch (rng() % 6) {
    case 0:
    case 1:
      if (paged) {
        c.table(b, static_cast<std::int64_t>(rng() % c.options.block_table.shape[1])) = random_index(rng, c, rows);
        return;
      }
      [[fallthrough]];
    case 2:
      c.set_int("cache_seqlens", b, random_index(rng, c, length));
      return;
    case 3: {
      const std::int64_t extremes[] = {kInt64Min, -1, 0, c.capacity - 2, c.capacity - 1, c.capacity, kInt64Max};
      c.seqlens_int = rng() % 2 ? extremes[rng() % std::size(extremes)] : static_cast<std::int64_t>(rng() % length);
      return;
    }
    case 4:
      if (!c.options.cache_leftpad.present())
        c.options.cache_leftpad = c.add(int_tensor(std::vector<std::int32_t>(batch, 0)));
      c.set_int("cache_leftpad", b, random_index(rng, c, 6));
      return;
    default:
      if (!c.options.cache_batch_idx.present()) {
        std::vector<std::int32_t> rows_used(batch);
        std::iota(rows_used.begin(), rows_used.end(), 0);
        c.options.cache_batch_idx = c.add(int_tensor(rows_used));
      }
      c.set_int("cache_batch_idx", b, random_index(rng, c, rows));
      return;
  }
}

TEST(FlashAttnKvCacheErrors, RandomIndexMutationsAreRejectedOrStayInTheirSlots) {
  std::mt19937_64 rng(0x6b76636163686521ull);
  int accepted = 0, rejected = 0;
  for (int iteration = 0; iteration < 400; ++iteration) {
    const bool paged = iteration % 4 != 3;
    Spec spec;
    spec.seqlen_new = 1 + static_cast<std::int64_t>(rng() % 3);
    spec.cache_lens = {static_cast<std::int32_t>(rng() % 6), static_cast<std::int32_t>(rng() % 6), 2};
    Case c(paged ? Entry::paged : Entry::contiguous, spec);
    c.options.num_splits = static_cast<std::int64_t>(rng() % 4);
    const int mutations = 1 + static_cast<int>(rng() % 3);
    for (int m = 0; m < mutations; ++m) mutate_an_index(c, rng, paged);
    SCOPED_TRACE("iteration " + std::to_string(iteration));
    const auto before = c.snapshot();
    const std::vector<unsigned char> k_before = c.owner(c.k_cache)->bytes(), v_before = c.owner(c.v_cache)->bytes();
    try {
      c.call();
      ++accepted;
      expect_wrote_only_its_slots(c, k_before, v_before);
    } catch (const Error& error) {
      ++rejected;
      ASSERT_TRUE(std::string(error.what()).starts_with("flash_attn_with_kvcache: ")) << error.what();
      ASSERT_TRUE(c.snapshot() == before) << "a buffer changed although the call threw: " << error.what();
    } catch (const std::exception& other) {
      FAIL() << "threw something other than flashattn::Error: " << other.what();
    }
  }
  RecordProperty("accepted", accepted);
  RecordProperty("rejected", rejected);
  EXPECT_GE(accepted, 40);  // both outcomes are exercised
  EXPECT_GE(rejected, 40);
}

}  // namespace
}  // namespace flashattn::testing
