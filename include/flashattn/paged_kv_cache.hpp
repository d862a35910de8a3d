// PagedKVCache — the block manager of a vLLM-style paged key/value cache,
// producing the arrays flash_attn_with_kvcache takes (block_table,
// cache_seqlens) and owning the pages it reads and appends to.
//
// The cache owns, per layer, a k pool and a v pool, each
//   (num_blocks, block_size, heads_kv, head_dim) contiguous, in one dtype,
// zero-filled at construction. Block ids are shared by every layer: a
// sequence has one block table, and block i of it holds tokens
// [i * block_size, (i + 1) * block_size) of every layer's k and v. Token j
// of a sequence lives at row j % block_size of block table[j / block_size].
//
// A decode step (one new token per sequence; a prefill is the same with
// n > 1; one call appends the same n to every sequence of its batch, so
// prompts of different lengths prefill in separate calls):
//
//   PagedKVCache cache({.num_layers = 2, .num_blocks = 1024, .block_size = 16,
//                       .heads_kv = 2, .head_dim = 64, .dtype = DType::bf16});
//   const SequenceId seq = cache.add_sequence();
//   ...
//   PagedKVCache::Reservation step = cache.reserve({seq, other}, 1);   // may throw: out of blocks
//   for (std::int64_t layer = 0; layer < 2; ++layer)
//     flash_attn_with_kvcache(q, cache.k_cache(layer), cache.v_cache(layer), {.out = out},
//                             {.k = k_new, .v = v_new, .cache_seqlens = step.cache_seqlens(),
//                              .block_table = step.block_table(), .causal = true});
//   step.commit();   // the lengths advance by 1; without commit() the step is cancelled
//
// Sharing (fork): a child shares every block of its parent's tokens, with
// reference counts. Full blocks are never written again, so they stay
// shared for good. The partially filled last block is copied lazily
// (copy-on-write): reserve() copies it, rows [0, length % block_size) of
// every layer's k and v, for a sequence that will write into it while
// another sequence still holds it. No block is written while shared.
//
// Placement: a sequence's blocks are kept adjacent in the pool where it
// allows, because the kernels read adjacent blocks as one stream and
// scattered ones slower (BENCHMARKS.md, session 24). A sequence's next block
// is the one after its last when that is free. Otherwise (a new sequence, a
// copy-on-write copy, a neighbour in the way) its new blocks start a run
// centred in the longest run of free blocks (at block 0 when that run starts
// the pool), leaving room on both sides: for the sequence before the gap to
// grow, and for this one. Sequences growing in step so split the pool among
// themselves instead of interleaving block by block. Finding the longest
// run is one pass over a bitmap of the pool (num_blocks / 64 words), paid
// only when a run starts.
//
// Errors: flashattn::Error, message "PagedKVCache::<operation>: ...". A
// failed call changes nothing: tables, lengths, reference counts, the free
// list and the pools are exactly as before (reserve() plans every block it
// needs before taking any).
//
// Thread safety: not internally synchronised. Const member functions may run
// concurrently with each other; any other call, including a Reservation's,
// needs exclusive access to the cache. flash_attn_with_kvcache calls of one
// reservation on different layers write disjoint memory and may run
// concurrently with each other (not with a call that changes the cache).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "flashattn/dtype.hpp"
#include "flashattn/tensor.hpp"

namespace flashattn {
namespace frontend {
class FreeBlockMap;
}

// One sequence of one PagedKVCache. Ids are never reused, so a freed id stays
// an error instead of naming a later sequence.
struct SequenceId {
  std::int64_t value = -1;
  friend auto operator<=>(const SequenceId&, const SequenceId&) = default;
};

struct PagedKVCacheConfig {
  std::int64_t num_layers = 1;
  std::int64_t num_blocks = 0;   // in the pool, shared by every layer; <= INT32_MAX (block ids are int32)
  std::int64_t block_size = 16;  // tokens per block (flash_attn_with_kvcache's page_size), any size >= 1
  std::int64_t heads_kv = 0;
  std::int64_t head_dim = 0;
  DType dtype = DType::f32;  // f32, f16 or bf16 (the dtype of q, k, v of the attention calls)
};

// Entries of a block table past a sequence's last block: not a block id, so
// a kernel that touched one would reject it instead of reading a stranger's page.
inline constexpr std::int32_t kNoBlock = -1;

// The paged-attention arrays of a batch of sequences, owned (a snapshot: it
// goes stale when a later reserve, commit, cancel or free changes a table).
class BlockTables {
 public:
  BlockTables() = default;
  BlockTables(std::int64_t batch, std::int64_t max_blocks_per_seq);

  // int32 (batch, max_blocks_per_seq); padded with kNoBlock.
  TensorView block_table() const;
  // int32 (batch,): the number of tokens of each sequence the cache holds.
  TensorView cache_seqlens() const;

  std::int64_t batch() const { return static_cast<std::int64_t>(seqlens_.size()); }
  std::int64_t max_blocks_per_seq() const { return max_blocks_per_seq_; }
  std::int32_t block(std::int64_t b, std::int64_t i) const { return table_[b * max_blocks_per_seq_ + i]; }
  std::int32_t seqlen(std::int64_t b) const { return seqlens_[b]; }

 private:
  friend class PagedKVCache;
  std::int64_t max_blocks_per_seq_ = 0;
  std::vector<std::int32_t> table_;    // (batch, max_blocks_per_seq)
  std::vector<std::int32_t> seqlens_;  // (batch,)
};

class PagedKVCache {
 public:
  class Reservation;

  explicit PagedKVCache(const PagedKVCacheConfig& config);
  // Not copyable or movable: reservations point at their cache (and the
  // pools can be large). Hold it by value or in a std::unique_ptr.
  PagedKVCache(const PagedKVCache&) = delete;
  PagedKVCache& operator=(const PagedKVCache&) = delete;
  ~PagedKVCache();

  const PagedKVCacheConfig& config() const { return config_; }

  // The pools of `layer`, to pass as k_cache / v_cache:
  // (num_blocks, block_size, heads_kv, head_dim), contiguous, the cache's dtype.
  TensorView k_cache(std::int64_t layer) const;
  TensorView v_cache(std::int64_t layer) const;

  // A new empty sequence.
  SequenceId add_sequence();
  // A new sequence holding the parent's tokens (parallel sampling, beam
  // search). Shares the parent's blocks; takes no free block, copies nothing.
  SequenceId fork(SequenceId parent);
  // Ends a sequence: its blocks return to the pool once no table holds them.
  void free_sequence(SequenceId sequence);

  bool contains(SequenceId sequence) const;        // live (added or forked, not freed)
  std::int64_t length(SequenceId sequence) const;  // committed tokens
  std::vector<SequenceId> sequences() const;       // live ids, ascending

  // The batch's tables at the current lengths: attention over the cached
  // tokens only (no new k / v; appending needs reserve()). Sequences
  // distinct; max_blocks_per_seq >= 1.
  BlockTables block_tables(const std::vector<SequenceId>& sequences) const;

  // Room for `num_new_tokens` (>= 1) more tokens of each of the distinct
  // `sequences`: positions [length, length + n) get blocks that only that
  // sequence holds (new blocks, and copy-on-write of a shared partially
  // filled last block). All or nothing: out of blocks, it throws with the
  // blocks needed and free and changes nothing. While the reservation is
  // active its sequences refuse fork, free and another reserve.
  Reservation reserve(const std::vector<SequenceId>& sequences, std::int64_t num_new_tokens);
  // The free blocks reserve(sequences, num_new_tokens) would take now (throws as it would on bad ids).
  std::int64_t blocks_to_reserve(const std::vector<SequenceId>& sequences, std::int64_t num_new_tokens) const;

  // Copies token `position` (< length) of `layer` into k_out and v_out:
  // (heads_kv, head_dim), the cache's dtype, last dimension contiguous.
  void read_token(SequenceId sequence, std::int64_t layer, std::int64_t position, const TensorView& k_out,
                  const TensorView& v_out) const;

  // Introspection (schedulers, tests).
  std::int64_t num_free_blocks() const;
  std::vector<std::int32_t> free_block_ids() const;                // ascending
  std::vector<std::int32_t> block_ids(SequenceId sequence) const;  // its block table
  std::int32_t ref_count(std::int32_t block) const;                // tables holding the block

 private:
  struct Sequence {
    std::vector<std::int32_t> blocks;  // ceil(length / block_size), + the reserved ones while reserved
    std::int64_t length = 0;
    bool reserved = false;  // in an active Reservation
  };
  struct PoolDeleter {
    void operator()(std::byte* p) const;
  };

  Sequence& live(SequenceId id, const char* operation);
  const Sequence& live(SequenceId id, const char* operation) const;
  void check_batch(const std::vector<SequenceId>& sequences, const char* operation) const;
  std::int64_t plan_blocks(const std::vector<SequenceId>& sequences, std::int64_t num_new_tokens, std::int64_t* copies,
                           const char* operation) const;
  std::int32_t take_block(std::int32_t after, std::int64_t count);
  void release_block(std::int32_t block);
  std::byte* row(std::int64_t layer, int kv, std::int32_t block, std::int64_t row_in_block) const;
  void end_reservation(const std::vector<SequenceId>& sequences, std::int64_t advance);

  PagedKVCacheConfig config_;
  std::int64_t block_bytes_ = 0;  // one block of one layer's k (or v)
  std::int64_t row_bytes_ = 0;    // one token of one layer's k (or v): heads_kv * head_dim elements
  // (num_layers, 2 (k, v), num_blocks, block_size, heads_kv, head_dim), 64-byte aligned
  std::unique_ptr<std::byte[], PoolDeleter> pools_;
  std::vector<std::int32_t> ref_counts_;  // (num_blocks,)
  std::unique_ptr<frontend::FreeBlockMap> free_;
  std::map<std::int64_t, Sequence> sequences_;
  std::int64_t next_id_ = 0;
};

// Room for the new tokens of a batch, from reserve(): pass block_table() and
// cache_seqlens() (the lengths before the append) with the new k / v to
// flash_attn_with_kvcache for every layer, or write_token() them, then
// commit(). Destroyed, moved over or cancel()led while active, it is
// cancelled: the lengths stay, the blocks past them return to the pool (a
// copy-on-write copy is kept: it holds the same tokens). Move-only; must
// not outlive its cache.
class PagedKVCache::Reservation {
 public:
  Reservation(Reservation&& other) noexcept;
  Reservation& operator=(Reservation&& other) noexcept;
  ~Reservation();

  // int32 (batch, max_blocks_per_seq) covering positions [0, length + n) of each sequence.
  TensorView block_table() const { return tables_.block_table(); }
  // int32 (batch,): the lengths before the append, where the new tokens go.
  TensorView cache_seqlens() const { return tables_.cache_seqlens(); }
  const BlockTables& tables() const { return tables_; }
  const std::vector<SequenceId>& sequences() const { return sequences_; }
  std::int64_t num_new_tokens() const { return num_new_tokens_; }
  bool active() const { return cache_ != nullptr; }

  // Writes new token `token` (in [0, n)) of batch entry `batch_index` in
  // `layer`: k, v (heads_kv, head_dim), the cache's dtype, last dimension contiguous.
  void write_token(std::int64_t batch_index, std::int64_t token, std::int64_t layer, const TensorView& k,
                   const TensorView& v);
  // The n tokens are in every layer: the lengths advance by n. Ends the reservation.
  void commit();
  // Ends the reservation with the lengths unchanged.
  void cancel();

 private:
  friend class PagedKVCache;
  Reservation(PagedKVCache* cache, std::vector<SequenceId> sequences, std::int64_t num_new_tokens, BlockTables tables)
      : cache_(cache), sequences_(std::move(sequences)), num_new_tokens_(num_new_tokens), tables_(std::move(tables)) {}
  void end(std::int64_t advance) noexcept;

  PagedKVCache* cache_ = nullptr;  // null once committed or cancelled
  std::vector<SequenceId> sequences_;
  std::int64_t num_new_tokens_ = 0;
  BlockTables tables_;
};

}  // namespace flashattn
