// PagedKVCache: the pools, block tables with reference counts, lazy
// copy-on-write, and the reserve / commit protocol of in-place appends.
#include "flashattn/paged_kv_cache.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <utility>

#include "flashattn/error.hpp"
#include "frontends/free_block_map.hpp"
#include "frontends/tensor_checks.hpp"

namespace flashattn {
namespace {

// Rows of every block start on a cache line when the row size allows it.
constexpr std::align_val_t kPoolAlignment{64};
// cache_seqlens and block ids are int32.
constexpr std::int64_t kMaxTokens = std::numeric_limits<std::int32_t>::max();

std::string str(std::int64_t x) { return std::to_string(x); }
std::string id_str(SequenceId id) { return "sequence " + str(id.value); }
frontend::ArgChecker checker(const char* operation) {
  return frontend::ArgChecker(std::string("PagedKVCache::") + operation);
}
std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Messages are built only on failure: read_token and write_token run per token.
void check_index(const frontend::ArgChecker& check, const char* name, std::int64_t value, std::int64_t end) {
  if (value < 0 || value >= end) {
    check.fail(std::string(name) + " " + str(value) + " is out of range, expected 0 <= " + name + " < " + str(end));
  }
}

// A (heads_kv, head_dim) token row of the cache's dtype on the CPU, last
// dimension contiguous; an output's heads must not overlap. The common valid
// case is decided without building a message; anything else goes through
// the shared checks, which name what is wrong.
void check_row(const frontend::ArgChecker& check, const TensorView& t, const char* name, const PagedKVCacheConfig& c,
               bool output) {
  const bool plainly_valid = t.data != nullptr && t.rank == 2 && t.device == Device{} && t.dtype == c.dtype &&
                             t.shape[0] == c.heads_kv && t.shape[1] == c.head_dim && t.stride[1] == 1 &&
                             t.stride[0] >= 0 && (!output || t.shape[0] == 1 || t.stride[0] >= t.shape[1]) &&
                             t.stride[0] <= std::numeric_limits<std::int64_t>::max() / 4 / c.heads_kv;
  if (plainly_valid) return;
  if (output)
    check.output_tensor(t, name, 2);
  else
    check.rows_tensor(t, name, 2);
  check.device(t, name, Device{});
  check.dtype(t, name, c.dtype);
  check.shape(t, name, {c.heads_kv, c.head_dim});
}

}  // namespace

BlockTables::BlockTables(std::int64_t batch, std::int64_t max_blocks_per_seq)
    : max_blocks_per_seq_(max_blocks_per_seq),
      table_(static_cast<std::size_t>(batch * max_blocks_per_seq), kNoBlock),
      seqlens_(static_cast<std::size_t>(batch), 0) {}

TensorView BlockTables::block_table() const {
  return TensorView::contiguous(table_.data(), DType::i32, {batch(), max_blocks_per_seq_});
}

TensorView BlockTables::cache_seqlens() const { return TensorView::contiguous(seqlens_.data(), DType::i32, {batch()}); }

void PagedKVCache::PoolDeleter::operator()(std::byte* p) const { ::operator delete[](p, kPoolAlignment); }

PagedKVCache::PagedKVCache(const PagedKVCacheConfig& config) : config_(config) {
  const frontend::ArgChecker check("PagedKVCache");
  const std::pair<const char*, std::int64_t> sizes[] = {{"num_layers", config.num_layers},
                                                        {"num_blocks", config.num_blocks},
                                                        {"block_size", config.block_size},
                                                        {"heads_kv", config.heads_kv},
                                                        {"head_dim", config.head_dim}};
  for (const auto& [name, value] : sizes)
    check.require(value >= 1, [&] { return std::string(name) + " is " + str(value) + ", expected >= 1"; });
  check.require(config.num_blocks <= kMaxTokens, [&] {
    return "num_blocks is " + str(config.num_blocks) + ", expected <= " + str(kMaxTokens) + " (block ids are int32)";
  });
  check.require(config.dtype == DType::f32 || config.dtype == DType::f16 || config.dtype == DType::bf16,
                [&] { return "dtype is " + std::string(dtype_name(config.dtype)) + ", expected f32, f16 or bf16"; });
  std::int64_t bytes = 0;
  const bool overflow = __builtin_mul_overflow(config.heads_kv, config.head_dim, &row_bytes_) ||
                        __builtin_mul_overflow(row_bytes_, dtype_size(config.dtype), &row_bytes_) ||
                        __builtin_mul_overflow(row_bytes_, config.block_size, &block_bytes_) ||
                        __builtin_mul_overflow(block_bytes_, config.num_blocks, &bytes) ||
                        __builtin_mul_overflow(bytes, 2 * config.num_layers, &bytes);
  check.require(!overflow, [&] {
    return "the pools of " + str(config.num_layers) + " layers x 2 x " + str(config.num_blocks) + " blocks x " +
           str(config.block_size) + " tokens x " + str(config.heads_kv) + " heads x " + str(config.head_dim) +
           " elements have more bytes than int64 can count";
  });
  pools_.reset(static_cast<std::byte*>(::operator new[](static_cast<std::size_t>(bytes), kPoolAlignment)));
  std::memset(pools_.get(), 0, static_cast<std::size_t>(bytes));
  ref_counts_.assign(static_cast<std::size_t>(config.num_blocks), 0);
  free_ = std::make_unique<frontend::FreeBlockMap>(config.num_blocks);
}

PagedKVCache::~PagedKVCache() = default;

std::byte* PagedKVCache::row(std::int64_t layer, int kv, std::int32_t block, std::int64_t row_in_block) const {
  return pools_.get() + ((layer * 2 + kv) * config_.num_blocks + block) * block_bytes_ + row_in_block * row_bytes_;
}

TensorView PagedKVCache::k_cache(std::int64_t layer) const {
  check_index(checker("k_cache"), "layer", layer, config_.num_layers);
  return TensorView::contiguous(row(layer, 0, 0, 0), config_.dtype,
                                {config_.num_blocks, config_.block_size, config_.heads_kv, config_.head_dim});
}

TensorView PagedKVCache::v_cache(std::int64_t layer) const {
  check_index(checker("v_cache"), "layer", layer, config_.num_layers);
  return TensorView::contiguous(row(layer, 1, 0, 0), config_.dtype,
                                {config_.num_blocks, config_.block_size, config_.heads_kv, config_.head_dim});
}

const PagedKVCache::Sequence& PagedKVCache::live(SequenceId id, const char* operation) const {
  const auto found = sequences_.find(id.value);
  if (found != sequences_.end()) return found->second;
  if (id.value >= 0 && id.value < next_id_) checker(operation).fail(id_str(id) + " was freed");
  checker(operation).fail(id_str(id) + " is unknown (this cache made sequences 0 to " + str(next_id_ - 1) + ")");
}

PagedKVCache::Sequence& PagedKVCache::live(SequenceId id, const char* operation) {
  return const_cast<Sequence&>(std::as_const(*this).live(id, operation));
}

SequenceId PagedKVCache::add_sequence() {
  sequences_.emplace(next_id_, Sequence{});
  return SequenceId{next_id_++};
}

SequenceId PagedKVCache::fork(SequenceId parent) {
  const Sequence& from = live(parent, "fork");
  if (from.reserved) checker("fork").fail(id_str(parent) + " has an active reservation, commit or cancel it first");
  Sequence child;
  child.length = from.length;
  child.blocks = from.blocks;  // exactly the blocks of its tokens: no reservation is active
  sequences_.emplace(next_id_, std::move(child));
  for (std::int32_t block : from.blocks) ++ref_counts_[block];
  return SequenceId{next_id_++};
}

void PagedKVCache::free_sequence(SequenceId sequence) {
  Sequence& s = live(sequence, "free_sequence");
  if (s.reserved) {
    checker("free_sequence").fail(id_str(sequence) + " has an active reservation, commit or cancel it first");
  }
  for (std::int32_t block : s.blocks) release_block(block);
  sequences_.erase(sequence.value);
}

bool PagedKVCache::contains(SequenceId sequence) const { return sequences_.contains(sequence.value); }

std::int64_t PagedKVCache::length(SequenceId sequence) const { return live(sequence, "length").length; }

std::vector<SequenceId> PagedKVCache::sequences() const {
  std::vector<SequenceId> ids;
  for (const auto& entry : sequences_) ids.push_back(SequenceId{entry.first});
  return ids;
}

std::int64_t PagedKVCache::num_free_blocks() const { return free_->count(); }

std::vector<std::int32_t> PagedKVCache::free_block_ids() const { return free_->ids(); }

std::vector<std::int32_t> PagedKVCache::block_ids(SequenceId sequence) const {
  return live(sequence, "block_ids").blocks;
}

std::int32_t PagedKVCache::ref_count(std::int32_t block) const {
  check_index(checker("ref_count"), "block", block, config_.num_blocks);
  return ref_counts_[block];
}

void PagedKVCache::check_batch(const std::vector<SequenceId>& sequences, const char* operation) const {
  const frontend::ArgChecker check = checker(operation);
  check.require(!sequences.empty(), [&] { return "sequences is empty, expected at least one sequence"; });
  for (std::size_t i = 0; i < sequences.size(); ++i) {
    live(sequences[i], operation);
    for (std::size_t j = 0; j < i; ++j) {
      check.require(sequences[j] != sequences[i], [&] {
        return id_str(sequences[i]) + " appears twice (batch entries " + str(j) + " and " + str(i) +
               "), expected distinct sequences";
      });
    }
  }
}

// The free blocks an append of n tokens to each sequence takes: new blocks
// past each table's end, plus a copy of each shared partially filled last
// block. Sequences of one batch that share such a block copy it in batch
// order until one holder is left, which writes in place (as reserve does).
std::int64_t PagedKVCache::plan_blocks(const std::vector<SequenceId>& sequences, std::int64_t num_new_tokens,
                                       std::int64_t* copies, const char* operation) const {
  const frontend::ArgChecker check = checker(operation);
  check.require(num_new_tokens >= 1, [&] { return "num_new_tokens is " + str(num_new_tokens) + ", expected >= 1"; });
  check_batch(sequences, operation);
  std::map<std::int32_t, std::int32_t> copied;  // shared block -> holders in this batch that copy it
  std::int64_t fresh = 0;
  *copies = 0;
  for (SequenceId id : sequences) {
    const Sequence& s = live(id, operation);
    check.require(!s.reserved,
                  [&] { return id_str(id) + " already has an active reservation, commit or cancel it first"; });
    check.require(num_new_tokens <= kMaxTokens - s.length, [&] {
      return id_str(id) + " holds " + str(s.length) + " tokens: " + str(num_new_tokens) +
             " more exceed the int32 cache_seqlens limit of " + str(kMaxTokens);
    });
    fresh += ceil_div(s.length + num_new_tokens, config_.block_size) - static_cast<std::int64_t>(s.blocks.size());
    if (s.length % config_.block_size == 0) continue;
    const std::int32_t last = s.blocks.back();
    if (ref_counts_[last] - copied[last] > 1) ++copied[last], ++*copies;
  }
  return fresh + *copies;
}

std::int64_t PagedKVCache::blocks_to_reserve(const std::vector<SequenceId>& sequences,
                                             std::int64_t num_new_tokens) const {
  std::int64_t copies = 0;
  return plan_blocks(sequences, num_new_tokens, &copies, "blocks_to_reserve");
}

// A free block for a sequence whose last block is `after` (-1: a new run)
// and which is placing `count` blocks, this one included (the placement
// rule in the header).
std::int32_t PagedKVCache::take_block(std::int32_t after, std::int64_t count) {
  std::int32_t block = after + 1;
  if (after < 0 || block == config_.num_blocks || !free_->is_free(block)) {
    const frontend::FreeRun gap = free_->longest_run();
    block =
        gap.start == 0 ? 0 : gap.start + static_cast<std::int32_t>(std::max<std::int64_t>(0, gap.length - count) / 2);
  }
  free_->take(block);
  ref_counts_[block] = 1;
  return block;
}

void PagedKVCache::release_block(std::int32_t block) {
  if (--ref_counts_[block] == 0) free_->release(block);  // never allocates
}

PagedKVCache::Reservation PagedKVCache::reserve(const std::vector<SequenceId>& sequences, std::int64_t num_new_tokens) {
  std::int64_t copies = 0;
  const std::int64_t needed = plan_blocks(sequences, num_new_tokens, &copies, "reserve");
  if (needed > num_free_blocks()) {
    const std::string whom = sequences.size() == 1
                                 ? std::string("1 sequence")
                                 : "each of " + str(static_cast<std::int64_t>(sequences.size())) + " sequences";
    checker("reserve").fail("out of blocks: " + str(num_new_tokens) + " new tokens for " + whom + " need " +
                            str(needed) + " free blocks (" + str(needed - copies) + " new, " + str(copies) +
                            " copy-on-write), " + str(num_free_blocks()) + " are free");
  }
  // Everything that allocates happens first, so the changes below cannot fail half-way.
  std::int64_t width = 1;
  for (SequenceId id : sequences) {
    Sequence& s = live(id, "reserve");
    const std::int64_t blocks = ceil_div(s.length + num_new_tokens, config_.block_size);
    s.blocks.reserve(static_cast<std::size_t>(blocks));
    width = std::max(width, blocks);
  }
  BlockTables tables(static_cast<std::int64_t>(sequences.size()), width);
  std::vector<SequenceId> batch = sequences;

  for (std::size_t b = 0; b < sequences.size(); ++b) {
    Sequence& s = live(sequences[b], "reserve");
    const std::int64_t filled = s.length % config_.block_size;  // rows of the last block in use
    const std::size_t blocks = static_cast<std::size_t>(ceil_div(s.length + num_new_tokens, config_.block_size));
    if (filled != 0 && ref_counts_[s.blocks.back()] > 1) {
      // The copy starts a new run: the shared block's neighbour is taken or another holder's to grow into.
      const std::int32_t shared = s.blocks.back();
      const std::int32_t copy = take_block(-1, static_cast<std::int64_t>(blocks - s.blocks.size()) + 1);
      for (std::int64_t layer = 0; layer < config_.num_layers; ++layer)
        for (int kv = 0; kv < 2; ++kv)
          std::memcpy(row(layer, kv, copy, 0), row(layer, kv, shared, 0),
                      static_cast<std::size_t>(filled * row_bytes_));
      --ref_counts_[shared];  // still held by another table
      s.blocks.back() = copy;
    }
    while (s.blocks.size() < blocks) {
      const std::int32_t last = s.blocks.empty() ? -1 : s.blocks.back();
      s.blocks.push_back(take_block(last, static_cast<std::int64_t>(blocks - s.blocks.size())));
    }
    s.reserved = true;
    std::copy(s.blocks.begin(), s.blocks.end(), tables.table_.begin() + static_cast<std::ptrdiff_t>(b * width));
    tables.seqlens_[b] = static_cast<std::int32_t>(s.length);
  }
  return Reservation(this, std::move(batch), num_new_tokens, std::move(tables));
}

BlockTables PagedKVCache::block_tables(const std::vector<SequenceId>& sequences) const {
  check_batch(sequences, "block_tables");
  std::int64_t width = 1;
  for (SequenceId id : sequences)
    width = std::max(width, ceil_div(live(id, "block_tables").length, config_.block_size));
  BlockTables tables(static_cast<std::int64_t>(sequences.size()), width);
  for (std::size_t b = 0; b < sequences.size(); ++b) {
    const Sequence& s = live(sequences[b], "block_tables");
    // Only the blocks of its tokens: a reserved sequence's next blocks are not part of it yet.
    const auto end = s.blocks.begin() + ceil_div(s.length, config_.block_size);
    std::copy(s.blocks.begin(), end, tables.table_.begin() + static_cast<std::ptrdiff_t>(b * width));
    tables.seqlens_[b] = static_cast<std::int32_t>(s.length);
  }
  return tables;
}

void PagedKVCache::read_token(SequenceId sequence, std::int64_t layer, std::int64_t position, const TensorView& k_out,
                              const TensorView& v_out) const {
  const frontend::ArgChecker check = checker("read_token");
  const Sequence& s = live(sequence, "read_token");
  check_index(check, "layer", layer, config_.num_layers);
  check_index(check, "position", position, s.length);
  check_row(check, k_out, "k_out", config_, true);
  check_row(check, v_out, "v_out", config_, true);
  const std::int64_t pool_bytes = 2 * config_.num_layers * config_.num_blocks * block_bytes_;
  const TensorView pools =
      TensorView::contiguous(pools_.get(), config_.dtype, {pool_bytes / dtype_size(config_.dtype)});
  check.separate({{k_out, "k_out"}, {v_out, "v_out"}}, {{pools, "the cache's pools"}});

  const std::int32_t block = s.blocks[static_cast<std::size_t>(position / config_.block_size)];
  const std::int64_t head_bytes = config_.head_dim * dtype_size(config_.dtype);
  for (int kv = 0; kv < 2; ++kv) {
    const TensorView& out = kv == 0 ? k_out : v_out;
    const std::byte* src = row(layer, kv, block, position % config_.block_size);
    for (std::int64_t h = 0; h < config_.heads_kv; ++h) {
      std::memcpy(static_cast<std::byte*>(out.data) + h * out.stride[0] * dtype_size(out.dtype), src + h * head_bytes,
                  static_cast<std::size_t>(head_bytes));
    }
  }
}

void PagedKVCache::end_reservation(const std::vector<SequenceId>& sequences, std::int64_t advance) {
  for (SequenceId id : sequences) {
    Sequence& s = sequences_.find(id.value)->second;  // live: free_sequence refuses reserved sequences
    s.length += advance;
    const std::size_t keep = static_cast<std::size_t>(ceil_div(s.length, config_.block_size));
    while (s.blocks.size() > keep) {
      release_block(s.blocks.back());
      s.blocks.pop_back();
    }
    s.reserved = false;
  }
}

PagedKVCache::Reservation::Reservation(Reservation&& other) noexcept
    : cache_(std::exchange(other.cache_, nullptr)),
      sequences_(std::move(other.sequences_)),
      num_new_tokens_(other.num_new_tokens_),
      tables_(std::move(other.tables_)) {}

PagedKVCache::Reservation& PagedKVCache::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    end(0);
    cache_ = std::exchange(other.cache_, nullptr);
    sequences_ = std::move(other.sequences_);
    num_new_tokens_ = other.num_new_tokens_;
    tables_ = std::move(other.tables_);
  }
  return *this;
}

PagedKVCache::Reservation::~Reservation() { end(0); }

void PagedKVCache::Reservation::end(std::int64_t advance) noexcept {
  if (cache_ == nullptr) return;
  cache_->end_reservation(sequences_, advance);
  cache_ = nullptr;
}

void PagedKVCache::Reservation::write_token(std::int64_t batch_index, std::int64_t token, std::int64_t layer,
                                            const TensorView& k, const TensorView& v) {
  const frontend::ArgChecker check = checker("Reservation::write_token");
  check.require(active(), [&] { return "the reservation is no longer active (committed or cancelled)"; });
  const PagedKVCacheConfig& c = cache_->config_;
  check_index(check, "batch_index", batch_index, tables_.batch());
  check_index(check, "token", token, num_new_tokens_);
  check_index(check, "layer", layer, c.num_layers);
  check_row(check, k, "k", c, false);
  check_row(check, v, "v", c, false);

  const std::int64_t position = tables_.seqlen(batch_index) + token;
  const std::int32_t block = tables_.block(batch_index, position / c.block_size);
  const std::int64_t head_bytes = c.head_dim * dtype_size(c.dtype);
  for (int kv = 0; kv < 2; ++kv) {
    const TensorView& in = kv == 0 ? k : v;
    std::byte* dst = cache_->row(layer, kv, block, position % c.block_size);
    for (std::int64_t h = 0; h < c.heads_kv; ++h) {  // memmove: `in` may be a view of the pools
      std::memmove(dst + h * head_bytes,
                   static_cast<const std::byte*>(in.data) + h * in.stride[0] * dtype_size(in.dtype),
                   static_cast<std::size_t>(head_bytes));
    }
  }
}

void PagedKVCache::Reservation::commit() {
  checker("Reservation::commit").require(active(), [&] {
    return "the reservation is no longer active (committed or cancelled)";
  });
  end(num_new_tokens_);
}

void PagedKVCache::Reservation::cancel() {
  checker("Reservation::cancel").require(active(), [&] {
    return "the reservation is no longer active (committed or cancelled)";
  });
  end(0);
}

}  // namespace flashattn
