// PagedKVCache against a contiguous model, a few thousand random operations
// per seed (add, reserve + write + commit / cancel, fork, free, out-of-blocks
// and other refused calls), checked after every operation:
//   - every live sequence read through its block table (and read_token)
//     equals the model's rows, in every layer, k and v;
//   - no block leaks: free + referenced == pool, each reference count equals
//     the number of tables holding the block, free blocks are held by none;
//   - no block is written while shared: every write target (computed from
//     the reservation's arrays) has reference count 1, and reserve, the
//     writes and commit leave every block that stays shared byte-identical;
//   - a refused call changes nothing (full snapshot, pools included);
//   - reserve takes exactly the blocks an independent count predicts, and
//     fails with "out of blocks" exactly when they are not free.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "flashattn/paged_kv_cache.hpp"
#include "support/paged_cache_state.hpp"

namespace flashattn::testing {
namespace {

using Token = std::pair<RowBytes, RowBytes>;   // k, v of one layer
using Rows = std::vector<std::vector<Token>>;  // (layer, position)

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

struct RunSpec {
  std::uint64_t seed;
  std::int64_t block_size, num_blocks;
  DType dtype;
};

class RandomRun {
 public:
  static constexpr std::size_t kMaxLive = 6;

  explicit RandomRun(const RunSpec& spec)
      : cache_({.num_layers = 2,
                .num_blocks = spec.num_blocks,
                .block_size = spec.block_size,
                .heads_kv = 2,
                .head_dim = 3,
                .dtype = spec.dtype}),
        c_(cache_.config()),
        rng_(spec.seed) {}

  void step() {
    const int pick = uniform(0, 99);
    const bool full = model_.size() >= kMaxLive;  // then a new sequence replaces one
    if (pick < 25 && full)
      free();
    else if (pick < 12)
      add();
    else if (pick < 25)
      fork();
    else if (pick < 35)
      free();
    else if (pick < 82)
      append();
    else if (pick < 93)
      refused();
    else
      oversized();
  }

  // Every invariant of the header's contract, against the model.
  void check() const {
    std::vector<SequenceId> ids;
    for (const auto& entry : model_) ids.push_back(entry.first);
    ASSERT_EQ(cache_.sequences(), ids);
    std::vector<std::int32_t> holders(static_cast<std::size_t>(c_.num_blocks), 0);
    for (SequenceId id : ids) {
      const std::vector<std::int32_t> table = cache_.block_ids(id);
      const std::int64_t length = static_cast<std::int64_t>(model_.at(id)[0].size());
      ASSERT_EQ(cache_.length(id), length);
      ASSERT_EQ(static_cast<std::int64_t>(table.size()), ceil_div(length, c_.block_size));
      ASSERT_EQ(std::set<std::int32_t>(table.begin(), table.end()).size(), table.size()) << "a block twice in a table";
      for (std::int32_t block : table) ++holders.at(static_cast<std::size_t>(block));
    }
    std::int64_t referenced = 0;
    for (std::int32_t b = 0; b < c_.num_blocks; ++b) {
      ASSERT_EQ(cache_.ref_count(b), holders[b]) << "block " << b;
      referenced += holders[b] > 0;
    }
    const std::vector<std::int32_t> free_list = cache_.free_block_ids();
    ASSERT_EQ(std::set<std::int32_t>(free_list.begin(), free_list.end()).size(), free_list.size());
    for (std::int32_t b : free_list)
      ASSERT_EQ(holders.at(static_cast<std::size_t>(b)), 0) << "free block " << b << " is held";
    ASSERT_EQ(static_cast<std::int64_t>(free_list.size()) + referenced, c_.num_blocks) << "a block leaked";
    if (!ids.empty()) check_contents(ids);
  }

  int count(const std::string& what) const { return counts_.contains(what) ? counts_.at(what) : 0; }

 private:
  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  std::vector<SequenceId> live() const {
    std::vector<SequenceId> ids;
    for (const auto& entry : model_) ids.push_back(entry.first);
    return ids;
  }
  SequenceId any_live() { return live()[static_cast<std::size_t>(uniform(0, static_cast<int>(model_.size()) - 1))]; }
  std::int64_t length(SequenceId id) const { return static_cast<std::int64_t>(model_.at(id)[0].size()); }

  void check_contents(const std::vector<SequenceId>& ids) const {
    const BlockTables tables = cache_.block_tables(ids);
    for (std::size_t b = 0; b < ids.size(); ++b) {
      const Rows& rows = model_.at(ids[b]);
      ASSERT_EQ(tables.seqlen(static_cast<std::int64_t>(b)), static_cast<std::int32_t>(rows[0].size()));
      for (std::int64_t i = ceil_div(tables.seqlen(b), c_.block_size); i < tables.max_blocks_per_seq(); ++i)
        ASSERT_EQ(tables.block(b, i), kNoBlock);
      for (std::int64_t layer = 0; layer < c_.num_layers; ++layer) {
        for (std::int64_t j = 0; j < static_cast<std::int64_t>(rows[0].size()); ++j) {
          const std::int32_t block = tables.block(b, j / c_.block_size);
          ASSERT_EQ(pool_row(cache_.k_cache(layer), block, j % c_.block_size), rows[layer][j].first)
              << "sequence " << ids[b].value << " layer " << layer << " k " << j;
          ASSERT_EQ(pool_row(cache_.v_cache(layer), block, j % c_.block_size), rows[layer][j].second)
              << "sequence " << ids[b].value << " layer " << layer << " v " << j;
          RowBytes k(rows[layer][j].first.size()), v(k.size());
          cache_.read_token(ids[b], layer, j, row_view(k, c_), row_view(v, c_));
          ASSERT_TRUE(k == rows[layer][j].first && v == rows[layer][j].second) << "read_token " << j;
        }
      }
    }
  }

  // The free blocks an append takes, counted per shared block rather than
  // per sequence (unlike the cache): k batch holders of a partially filled
  // block held by r tables copy it k times when r > k, k - 1 times when all
  // its holders are in the batch (the last one keeps it).
  std::int64_t predicted_blocks(const std::vector<SequenceId>& batch, std::int64_t n, std::int64_t* copies) const {
    std::int64_t fresh = 0;
    std::map<std::int32_t, std::int64_t> batch_holders;
    for (SequenceId id : batch) {
      const std::int64_t len = length(id);
      fresh += ceil_div(len + n, c_.block_size) - ceil_div(len, c_.block_size);
      if (len % c_.block_size != 0) ++batch_holders[cache_.block_ids(id).back()];
    }
    *copies = 0;
    for (const auto& [block, k] : batch_holders) *copies += cache_.ref_count(block) > k ? k : k - 1;
    return fresh + *copies;
  }

  std::map<std::int32_t, std::vector<std::byte>> shared_blocks() const {
    std::map<std::int32_t, std::vector<std::byte>> shared;
    for (std::int32_t b = 0; b < c_.num_blocks; ++b) {
      if (cache_.ref_count(b) < 2) continue;
      for (std::int64_t layer = 0; layer < c_.num_layers; ++layer)
        for (const TensorView& pool : {cache_.k_cache(layer), cache_.v_cache(layer)})
          for (std::int64_t r = 0; r < c_.block_size; ++r) {
            const RowBytes row = pool_row(pool, b, r);
            shared[b].insert(shared[b].end(), row.begin(), row.end());
          }
    }
    return shared;
  }
  // Blocks shared in `before` and still shared now hold the same bytes.
  void expect_untouched(const std::map<std::int32_t, std::vector<std::byte>>& before, const char* when) const {
    const auto now = shared_blocks();
    for (const auto& [block, bytes] : before)
      if (now.contains(block)) EXPECT_TRUE(now.at(block) == bytes) << "shared block " << block << " written " << when;
  }

  void add() {
    model_.emplace(cache_.add_sequence(), Rows(static_cast<std::size_t>(c_.num_layers)));
    ++counts_["add"];
  }

  void fork() {
    if (model_.empty()) return;
    const SequenceId parent = any_live();
    const Rows rows = model_.at(parent);
    model_.emplace(cache_.fork(parent), rows);
    ++counts_["fork"];
  }

  void free() {
    if (model_.size() < 2) return;  // keep something to work on
    const SequenceId id = any_live();
    cache_.free_sequence(id);
    model_.erase(id);
    freed_.push_back(id);
    ++counts_["free"];
  }

  std::vector<SequenceId> random_batch() {
    std::vector<SequenceId> ids = live();
    std::shuffle(ids.begin(), ids.end(), rng_);
    ids.resize(static_cast<std::size_t>(uniform(1, std::min(3, static_cast<int>(ids.size())))));
    return ids;
  }

  void append() {
    if (model_.empty()) return;
    const std::vector<SequenceId> batch = random_batch();
    const std::int64_t n = uniform(0, 3) == 0 ? uniform(1, static_cast<int>(3 * c_.block_size)) : uniform(1, 2);
    std::int64_t copies = 0;
    const std::int64_t predicted = predicted_blocks(batch, n, &copies);
    EXPECT_EQ(cache_.blocks_to_reserve(batch, n), predicted);
    const std::int64_t free_before = cache_.num_free_blocks();
    if (predicted > free_before) {
      expect_refused(cache_, [&] { (void)cache_.reserve(batch, n); }, "reserve",
                     {"out of blocks", "need " + std::to_string(predicted) + " free blocks",
                      std::to_string(free_before) + " are free"});
      ++counts_["out of blocks"];
      return;
    }
    const auto shared_before = shared_blocks();
    std::vector<std::vector<std::int32_t>> tables_before;
    for (SequenceId id : batch) tables_before.push_back(cache_.block_ids(id));
    PagedKVCache::Reservation r = cache_.reserve(batch, n);
    EXPECT_EQ(free_before - cache_.num_free_blocks(), predicted);
    counts_["copy-on-write"] += static_cast<int>(copies);
    expect_untouched(shared_before, "by reserve");
    check_reservation(r, batch, n, tables_before);
    if (uniform(0, 19) == 0) {  // the reserved sequences refuse structural changes meanwhile
      expect_refused(cache_, [&] { (void)cache_.fork(batch[0]); }, "fork", {"has an active reservation"});
      expect_refused(cache_, [&] { cache_.free_sequence(batch[0]); }, "free_sequence", {"has an active reservation"});
    }
    std::vector<Rows> pending = write_all(r, batch, n);
    const int end = uniform(0, 9);
    if (end < 8) {
      r.commit();
      for (std::size_t b = 0; b < batch.size(); ++b)
        for (std::int64_t layer = 0; layer < c_.num_layers; ++layer)
          for (Token& t : pending[b][layer]) model_.at(batch[b])[layer].push_back(std::move(t));
      ++counts_["commit"];
    } else if (end == 8) {
      r.cancel();
      ++counts_["cancel"];
    } else {
      PagedKVCache::Reservation dropped = std::move(r);  // cancelled by its destructor
      ++counts_["cancel"];
    }
    expect_untouched(shared_before, "by the append");
  }

  // The arrays flash_attn_with_kvcache gets: lengths before the append, the
  // committed full blocks unchanged, the blocks of [length, length + n) the
  // sequence's alone, kNoBlock past the end.
  void check_reservation(const PagedKVCache::Reservation& r, const std::vector<SequenceId>& batch, std::int64_t n,
                         const std::vector<std::vector<std::int32_t>>& tables_before) const {
    const BlockTables& t = r.tables();
    ASSERT_EQ(t.batch(), static_cast<std::int64_t>(batch.size()));
    std::int64_t width = 1;
    for (SequenceId id : batch) width = std::max(width, ceil_div(length(id) + n, c_.block_size));
    ASSERT_EQ(t.max_blocks_per_seq(), width);
    for (std::int64_t b = 0; b < t.batch(); ++b) {
      const std::int64_t len = length(batch[b]), blocks = ceil_div(len + n, c_.block_size);
      ASSERT_EQ(t.seqlen(b), len);
      for (std::int64_t i = 0; i < len / c_.block_size; ++i) ASSERT_EQ(t.block(b, i), tables_before[b][i]);
      for (std::int64_t i = len / c_.block_size; i < blocks; ++i) ASSERT_EQ(cache_.ref_count(t.block(b, i)), 1);
      for (std::int64_t i = blocks; i < width; ++i) ASSERT_EQ(t.block(b, i), kNoBlock);
    }
  }

  // New rows for every (batch entry, layer, token), written per layer either
  // with write_token or straight into the pools through the arrays (as the
  // kernel does). Each target must be unshared at the time of the write.
  std::vector<Rows> write_all(PagedKVCache::Reservation& r, const std::vector<SequenceId>& batch, std::int64_t n) {
    std::vector<Rows> pending(batch.size(), Rows(static_cast<std::size_t>(c_.num_layers)));
    const BlockTables& t = r.tables();
    for (std::int64_t layer = 0; layer < c_.num_layers; ++layer) {
      const bool kernel_style = uniform(0, 1) == 0;
      for (std::int64_t b = 0; b < t.batch(); ++b)
        for (std::int64_t token = 0; token < n; ++token) {
          const std::int64_t pos = t.seqlen(b) + token;
          const std::int32_t block = t.block(b, pos / c_.block_size);
          EXPECT_EQ(cache_.ref_count(block), 1) << "write into a shared block";
          Token& row = pending[b][layer].emplace_back(random_row(rng_, c_), random_row(rng_, c_));
          if (kernel_style) {
            for (int kv = 0; kv < 2; ++kv) {
              const TensorView pool = kv == 0 ? cache_.k_cache(layer) : cache_.v_cache(layer);
              const RowBytes& src = kv == 0 ? row.first : row.second;
              std::byte* dst = static_cast<std::byte*>(pool.data) +
                               (block * pool.stride[0] + pos % c_.block_size * pool.stride[1]) * dtype_size(c_.dtype);
              std::copy(src.begin(), src.end(), dst);
            }
          } else {
            r.write_token(b, token, layer, row_view(row.first, c_), row_view(row.second, c_));
            EXPECT_EQ(pool_row(cache_.k_cache(layer), block, pos % c_.block_size), row.first);
            EXPECT_EQ(pool_row(cache_.v_cache(layer), block, pos % c_.block_size), row.second);
          }
        }
    }
    return pending;
  }

  // A request far beyond the pool: at least free + 1 new blocks.
  void oversized() {
    if (model_.empty()) return;
    const SequenceId id = any_live();
    const std::int64_t n = (cache_.num_free_blocks() + 1) * c_.block_size;
    expect_refused(cache_, [&] { (void)cache_.reserve({id}, n); }, "reserve", {"out of blocks"});
    ++counts_["out of blocks"];
  }

  void refused() {
    if (model_.empty()) return;
    const SequenceId id = any_live();
    switch (uniform(0, 5)) {
      case 0:
        if (freed_.empty()) return;
        expect_refused(cache_, [&] { (void)cache_.reserve({id, freed_.back()}, 1); }, "reserve", {"was freed"});
        break;
      case 1:
        expect_refused(cache_, [&] { (void)cache_.reserve({id, id}, 1); }, "reserve", {"appears twice"});
        break;
      case 2:
        expect_refused(cache_, [&] { (void)cache_.reserve({id}, 0); }, "reserve", {"num_new_tokens is 0"});
        break;
      case 3:
        expect_refused(cache_, [&] { (void)cache_.fork(SequenceId{id.value + 1000}); }, "fork", {"is unknown"});
        break;
      case 4: {
        RowBytes k(static_cast<std::size_t>(row_bytes(c_))), v(k.size());
        expect_refused(cache_, [&] { cache_.read_token(id, 0, length(id), row_view(k, c_), row_view(v, c_)); },
                       "read_token", {"out of range"});
        break;
      }
      default:
        if (freed_.empty()) return;
        expect_refused(cache_, [&] { cache_.free_sequence(freed_.front()); }, "free_sequence", {"was freed"});
    }
    ++counts_["refused"];
  }

  PagedKVCache cache_;
  const PagedKVCacheConfig& c_;
  std::mt19937_64 rng_;
  std::map<SequenceId, Rows> model_;
  std::vector<SequenceId> freed_;
  std::map<std::string, int> counts_;
};

class PagedKVCacheRandom : public ::testing::TestWithParam<RunSpec> {};

TEST_P(PagedKVCacheRandom, MatchesTheContiguousModelAfterEveryOperation) {
  constexpr int kOperations = 3000;
  RandomRun run(GetParam());
  for (int op = 0; op < kOperations; ++op) {
    run.step();
    run.check();
    if (::testing::Test::HasFailure()) FAIL() << "after operation " << op;
  }
  // The run exercised what it claims to test.
  for (const char* what : {"add", "fork", "free", "commit", "cancel", "out of blocks", "refused"})
    EXPECT_GE(run.count(what), 20) << what;
  if (GetParam().block_size > 1) EXPECT_GE(run.count("copy-on-write"), 20);  // blocks of 1 are never partial
}

INSTANTIATE_TEST_SUITE_P(Seeds, PagedKVCacheRandom,
                         ::testing::Values(RunSpec{1, 1, 40, DType::f32}, RunSpec{2, 2, 32, DType::bf16},
                                           RunSpec{3, 3, 24, DType::f16}, RunSpec{4, 4, 24, DType::f32},
                                           RunSpec{5, 5, 20, DType::f32}, RunSpec{6, 16, 10, DType::bf16}),
                         [](const ::testing::TestParamInfo<RunSpec>& info) {
                           return "seed" + std::to_string(info.param.seed) + "_block" +
                                  std::to_string(info.param.block_size);
                         });

}  // namespace
}  // namespace flashattn::testing
