// flash_attn_with_kvcache: checks every argument, appends the new keys and
// values in place (rotated), rotates q, then runs the forward over the cache
// through AttentionParams' kv-cache addressing. Host tensors: every index
// and length is read and checked here. CUDA tensors: only what the host
// knows (shapes, dtypes, devices, scalar lengths); the kernels clamp every
// index they read from the device (params.bounds).
#include "flashattn/flash_attn_kvcache.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/convert.hpp"
#include "core/rotary.hpp"
#include "core/sequence.hpp"
#include "frontends/flash_attn_args.hpp"
#include "frontends/kvcache_call.hpp"
#include "frontends/paged_checks.hpp"
#include "frontends/tensor_checks.hpp"

namespace flashattn {
namespace frontend {
namespace {

std::string str(std::int64_t x) { return std::to_string(x); }

template <class T = char>
T* element(const TensorView& t, std::initializer_list<std::int64_t> index) {
  std::int64_t offset = 0;
  int d = 0;
  for (const std::int64_t i : index) offset += i * t.stride[d++];
  return reinterpret_cast<T*>(static_cast<char*>(t.data) + offset * dtype_size(t.dtype));
}

// An int32 (batch,) index tensor on `device`. Host tensors are copied (the
// call uses what it checked); a device one cannot be read without
// synchronising, so the kernels read it in place (contiguous, as upstream
// asks) and the result is empty.
std::vector<std::int32_t> int32_per_batch(const ArgChecker& c, const TensorView& t, const std::string& name,
                                          std::int64_t batch, const Device& device) {
  c.tensor(t, name, 1);
  c.dtype(t, name, DType::i32);
  c.device(t, name, device);
  c.shape(t, name, {batch});
  if (device.type != DeviceType::cpu) {
    c.require(t.stride[0] == 1 || batch == 1,
              [&] { return name + " must be contiguous, expected stride 1, got " + str(t.stride[0]); });
    return {};
  }
  std::vector<std::int32_t> values(batch);
  for (std::int64_t b = 0; b < batch; ++b) values[b] = *element<std::int32_t>(t, {b});
  return values;
}

}  // namespace

// The cache tensors, with what their shape means.
struct CacheShape {
  bool paged = false;
  std::int64_t rows = 0;        // contiguous: b_cache; paged: num_blocks
  std::int64_t seqlen = 0;      // contiguous: seqlen_cache; paged: page_size
  std::int64_t capacity = 0;    // positions one sequence can hold
  std::string capacity_source;  // for messages: "block_table has 4 pages of 16 positions per sequence"
  std::int64_t heads_kv = 0;
};

namespace {

CacheShape check_caches(const ArgChecker& c, const TensorView& q, const TensorView& k_cache, const TensorView& v_cache,
                        const TensorView& block_table) {
  CacheShape s;
  s.paged = block_table.present();
  for (const auto& [t, name] : {std::pair{&k_cache, "k_cache"}, std::pair{&v_cache, "v_cache"}}) {
    c.rows_tensor(*t, name, 4);
    c.dtype(*t, name, q.dtype);
    c.device(*t, name, q.device);
  }
  const char* layout = s.paged ? "(num_blocks, page_size, hk, d)" : "(b_cache, seqlen_cache, hk, d)";
  s.rows = k_cache.shape[0];
  s.seqlen = k_cache.shape[1];
  s.heads_kv = k_cache.shape[2];
  c.require(k_cache.shape[3] == q.shape[3], [&] {
    return "k_cache has head dim " + str(k_cache.shape[3]) + ", expected q's " + str(q.shape[3]) + " (layout " +
           layout + ")";
  });
  c.require(s.heads_kv >= 1 && q.shape[2] % s.heads_kv == 0, [&] {
    return "k_cache has " + str(s.heads_kv) + " heads, which does not divide q's " + str(q.shape[2]) + " heads";
  });
  c.shape(v_cache, "v_cache", {s.rows, s.seqlen, s.heads_kv, q.shape[3]});
  if (s.paged) {
    c.require(s.seqlen >= 1, [&] {
      return "k_cache has page size " + str(s.seqlen) + ", expected at least 1 (layout " + layout + ")";
    });
    c.require(s.rows >= 1, [&] { return "k_cache has " + str(s.rows) + " blocks, expected at least 1"; });
    c.rows_tensor(block_table, "block_table", 2);
    c.require(!__builtin_mul_overflow(block_table.shape[1], s.seqlen, &s.capacity), [&] {
      return "block_table has " + str(block_table.shape[1]) + " pages per sequence of " + str(s.seqlen) +
             " positions: the capacity overflows int64";
    });
    s.capacity_source =
        "block_table has " + str(block_table.shape[1]) + " pages of " + str(s.seqlen) + " positions per sequence";
  } else {
    s.capacity = s.seqlen;
    s.capacity_source = "k_cache has seqlen_cache " + str(s.seqlen);
  }
  // Key counts are int32 below the API (seqused_k): a sequence may not reach past that.
  if (s.capacity > std::numeric_limits<std::int32_t>::max()) {
    s.capacity = std::numeric_limits<std::int32_t>::max();
    s.capacity_source += ", capped to the int32 key count";
  }
  return s;
}

// Appending through a block table: every slot written is the slot of one
// sequence position only. No two appends share a slot, and no sequence reads
// a written slot as one of its cached positions (pages shared read-only, as
// a common prefix, are fine; appending into rows of them is not).
void check_appends_private(const ArgChecker& c, const TensorView& block_table, std::int64_t page_size,
                           const std::vector<std::int32_t>& starts, std::int64_t seqlen_new) {
  const auto page = [&](std::int64_t b, std::int64_t j) {
    return *element<std::int32_t>(block_table, {b, j / page_size});
  };
  std::vector<std::pair<std::int64_t, std::int64_t>> written;  // (slot, batch)
  for (std::int64_t b = 0; b < static_cast<std::int64_t>(starts.size()); ++b) {
    for (std::int64_t j = starts[b]; j < starts[b] + seqlen_new; ++j)
      written.emplace_back(page(b, j) * page_size + j % page_size, b);
  }
  std::sort(written.begin(), written.end());
  for (std::size_t n = 1; n < written.size(); ++n) {
    if (written[n].first == written[n - 1].first) {
      c.fail("block_table makes sequences " + str(written[n - 1].second) + " and " + str(written[n].second) +
             " append to the same slot (page " + str(written[n].first / page_size) + ", row " +
             str(written[n].first % page_size) + "), expected appends to disjoint slots");
    }
  }
  if (written.empty()) return;
  std::vector<std::int64_t> written_pages;
  for (const auto& w : written) written_pages.push_back(w.first / page_size);
  written_pages.erase(std::unique(written_pages.begin(), written_pages.end()), written_pages.end());  // sorted
  for (std::int64_t b = 0; b < static_cast<std::int64_t>(starts.size()); ++b) {
    for (std::int64_t first = 0; first < starts[b]; first += page_size) {  // the pages of b's cached positions
      if (!std::binary_search(written_pages.begin(), written_pages.end(), std::int64_t{page(b, first)})) continue;
      for (std::int64_t j = first; j < std::min(first + page_size, std::int64_t{starts[b]}); ++j) {
        const std::int64_t slot = page(b, j) * page_size + j % page_size;
        const auto w = std::lower_bound(written.begin(), written.end(), std::pair{slot, std::int64_t{0}});
        if (w != written.end() && w->first == slot) {
          c.fail("block_table makes sequence " + str(w->second) + " append to the slot (page " + str(slot / page_size) +
                 ", row " + str(slot % page_size) + ") that sequence " + str(b) + " reads at position " + str(j) +
                 ", expected appends to slots no other position reads");
        }
      }
    }
  }
}

// q (b, sq, h, d): the problem's sizes except the keys.
Problem check_q(const ArgChecker& c, const TensorView& q) {
  c.rows_tensor(q, "q", 4);
  c.require(q.dtype == DType::f32 || q.dtype == DType::f16 || q.dtype == DType::bf16,
            [&] { return "q has dtype " + std::string(dtype_name(q.dtype)) + ", expected f32, f16 or bf16"; });
#ifndef FLASHATTN_WITH_CUDA  // a CUDA build takes CUDA tensors; the CUDA backend says what it cannot run
  c.require(q.device.type == DeviceType::cpu, [&] {
    return "q is on " + device_string(q.device) + ", expected cpu (" + cpu_only_reason("flash_attn_with_kvcache") + ")";
  });
#endif
  Problem p;
  p.device = q.device;
  p.batch = q.shape[0];
  p.seqlen_q = q.shape[1];
  p.heads = q.shape[2];
  p.head_dim = q.shape[3];
  c.require(p.batch >= 1, [&] { return "q has batch size " + str(p.batch) + ", expected at least 1"; });
  c.require(p.seqlen_q >= 1, [&] { return "q has seqlen " + str(p.seqlen_q) + ", expected at least 1"; });
  c.require(p.heads >= 1, [&] { return "q has " + str(p.heads) + " heads, expected at least 1"; });
  c.require(p.head_dim >= 1 && p.head_dim <= kMaxHeadDim,
            [&] { return "q has head dim " + str(p.head_dim) + ", expected 1 to " + str(kMaxHeadDim); });
  return p;
}

// New k and v (both or neither): returns seqlen_new (0 without them).
std::int64_t check_new_kv(const ArgChecker& c, const KvCacheOptions& o, const TensorView& q, const Problem& p,
                          const TensorView& k_cache, const TensorView& v_cache) {
  c.require(o.k.present() == o.v.present(), [&] {
    return std::string(o.k.present() ? "k is given without v" : "v is given without k") + ", expected both or neither";
  });
  if (!o.k.present()) return 0;
  c.rows_tensor(o.k, "k", 4);
  const std::int64_t seqlen_new = o.k.shape[1];
  for (const auto& [t, name] : {std::pair{&o.k, "k"}, std::pair{&o.v, "v"}}) {
    c.rows_tensor(*t, name, 4);
    c.dtype(*t, name, q.dtype);
    c.device(*t, name, q.device);
    c.shape(*t, name, {p.batch, seqlen_new, p.heads_kv, p.head_dim});
  }
  c.require(o.cache_seqlens.present(),
            [&] { return "cache_seqlens is missing, required with new k and v (where to append)"; });
  // The caches are written: two positions sharing an address would take each other's keys.
  c.output_tensor(k_cache, "k_cache", 4);
  c.output_tensor(v_cache, "v_cache", 4);
  return seqlen_new;
}

// The flash-attn options shared with flash_attn_func, checked as there.
FlashAttnOptions shared_options(const ArgChecker& c, const KvCacheOptions& o, const Problem& p) {
  FlashAttnOptions fo;
  fo.softmax_scale = o.softmax_scale;
  fo.causal = o.causal;
  fo.window_size = o.window_size;
  fo.softcap = o.softcap;
  fo.alibi_slopes = o.alibi_slopes;
  check_options(c, fo, p);
  c.require(o.num_splits >= 0, [&] { return "num_splits is " + str(o.num_splits) + ", expected >= 0 (0: heuristic)"; });
  fo.stream = o.stream;
  fo.workspace = o.workspace;
  fo.workspace_bytes = o.workspace_bytes;
  return fo;
}

// Outputs, then overlaps: nothing the call writes may alias what it reads.
void check_outputs(const ArgChecker& c, const KvCacheOutputs& outputs, const KvCacheOptions& o, const Problem& p,
                   const TensorView& q, const TensorView& k_cache, const TensorView& v_cache) {
  check_rows(c, outputs.out, "out", p, RowLayout::q, q.dtype, q.device, true);
  if (outputs.softmax_lse.present())
    check_rows(c, outputs.softmax_lse, "softmax_lse", p, RowLayout::lse, DType::f32, q.device, true);
  std::vector<NamedView> written{{outputs.out, "out"}, {outputs.softmax_lse, "softmax_lse"}};
  std::vector<NamedView> read{{q, "q"},
                              {o.k, "k"},
                              {o.v, "v"},
                              {o.rotary_cos, "rotary_cos"},
                              {o.rotary_sin, "rotary_sin"},
                              {o.cache_seqlens.lengths(), "cache_seqlens"},
                              {o.cache_batch_idx, "cache_batch_idx"},
                              {o.cache_leftpad, "cache_leftpad"},
                              {o.block_table, "block_table"},
                              {o.alibi_slopes, "alibi_slopes"}};
  std::vector<NamedView>& caches = o.k.present() ? written : read;
  caches.push_back({k_cache, "k_cache"});
  caches.push_back({v_cache, "v_cache"});
  c.separate(written, read);
}

}  // namespace

KvCacheCall::KvCacheCall(const TensorView& q, const TensorView& k_cache, const TensorView& v_cache,
                         const KvCacheOutputs& outputs, const KvCacheOptions& o)
    : q_(q), on_host_(q.device.type == DeviceType::cpu) {
  const ArgChecker c("flash_attn_with_kvcache");
  Problem p = check_q(c, q);
  const CacheShape cache = check_caches(c, q, k_cache, v_cache, o.block_table);
  p.heads_kv = cache.heads_kv;
  const std::int64_t seqlen_new = check_new_kv(c, o, q, p, k_cache, v_cache);
  check_lengths(c, o, cache, p.batch, seqlen_new);
  check_cache_rows(c, o, cache, p.batch, seqlen_new);
  const FlashAttnOptions fo = shared_options(c, o, p);
  const auto bounded = [&](std::int64_t w) { return w >= 0 && w < cache.capacity; };
  const bool rotate_q_per_row = o.causal || bounded(o.window_size.left) || bounded(o.window_size.right);  // as upstream
  check_rotary(c, o, q, p, seqlen_new, rotate_q_per_row);
  p.seqlen_k = key_bound(cache, seqlen_new);
  check_outputs(c, outputs, o, p, q, k_cache, v_cache);

  // Params of the attention over the updated cache.
  params_ = problem_params(p, q, k_cache, v_cache, nullptr, fo);
  set_forward_outputs(params_, p, FlashAttnOutputs{outputs.out, outputs.softmax_lse, {}}, fo);
  set_lengths(o, seqlen_new);
  if (cache.paged) {
    set_block_table(params_, o.block_table, cache.rows, cache.seqlen);
  } else {
    params_.bounds.kv_batches = cache.rows;
    params_.bounds.kv_seqlen = cache.seqlen;
  }
  params_.num_splits = o.num_splits;
  if (o.k.present()) {
    params_.k_new = o.k.data;
    params_.v_new = o.v.data;
    params_.k_new_stride = bshd_strides(o.k, false);
    params_.v_new_stride = bshd_strides(o.v, false);
  }
  if (o.rotary_cos.present()) set_rotary(o, p, rotate_q_per_row);
}

// Sequence lengths and cache rows: the checked host copies, or the device
// tensors themselves (read in place by the kernels, clamped to params.bounds).
void KvCacheCall::set_lengths(const KvCacheOptions& o, std::int64_t seqlen_new) {
  params_.seqlen_new = seqlen_new;
  const auto device_data = [](const TensorView& t) { return static_cast<const std::int32_t*>(t.data); };
  if (on_host_) {
    params_.cache_seqlens = cache_seqlens_.data();
    if (!batch_index_.empty()) params_.kv_batch_index = batch_index_.data();
    if (!leftpad_.empty()) params_.k_leftpad = leftpad_.data();
    return;
  }
  // An int (or no) cache_seqlens leaves params_.cache_seqlens null: every row ends at seqlen_k.
  if (!o.cache_seqlens.length() && o.cache_seqlens.present())
    params_.cache_seqlens = device_data(o.cache_seqlens.lengths());
  if (o.cache_batch_idx.present()) params_.kv_batch_index = device_data(o.cache_batch_idx);
  if (o.cache_leftpad.present()) params_.k_leftpad = device_data(o.cache_leftpad);
}

// Rotary tables; q rotated into a host copy (CPU) or by the forward kernel as it loads q (CUDA).
void KvCacheCall::set_rotary(const KvCacheOptions& o, const Problem& p, bool rotate_q_per_row) {
  AttentionParams::Rotary& r = params_.rotary;
  r.cos = o.rotary_cos.data;
  r.sin = o.rotary_sin.data;
  r.cos_stride = o.rotary_cos.stride[0];
  r.sin_stride = o.rotary_sin.stride[0];
  r.positions = o.rotary_cos.shape[0];
  r.dim = 2 * o.rotary_cos.shape[1];
  r.interleaved = o.rotary_interleaved;
  r.q_per_row = rotate_q_per_row;
  r.rotate_q = !on_host_;
  if (!on_host_) return;
  rotated_q_.resize(p.batch * p.seqlen_q * p.heads * p.head_dim * dtype_size(q_.dtype));
  params_.q = rotated_q_.data();
  params_.q_stride = {p.seqlen_q * p.heads * p.head_dim, p.heads * p.head_dim, p.head_dim};
}

// An upper bound of every sequence's key count: the exact largest one on the
// host; on a device, where each row ends when the lengths are host values
// (params_.cache_seqlens stays null) and the capacity when they are not.
std::int64_t KvCacheCall::key_bound(const CacheShape& cache, std::int64_t seqlen_new) const {
  if (cache_seqlens_.empty()) return cache.capacity;
  if (!on_host_) return cache_seqlens_[0] + seqlen_new;  // one length for every row
  std::int64_t longest = 0;
  for (std::size_t b = 0; b < cache_seqlens_.size(); ++b)
    longest = std::max<std::int64_t>(longest, cache_seqlens_[b] + seqlen_new - (leftpad_.empty() ? 0 : leftpad_[b]));
  return longest;
}

// cache_seqlens (absolute end of each row's cached keys), left padding, and
// room for the append; fills cache_seqlens_ and leftpad_ with what the host
// can read (device tensors: nothing, and only seqlen_new is checked).
void KvCacheCall::check_lengths(const ArgChecker& c, const KvCacheOptions& o, const CacheShape& cache,
                                std::int64_t batch, std::int64_t seqlen_new) {
  if (o.cache_seqlens.length()) {
    const std::int64_t n = *o.cache_seqlens.length();
    c.require(n >= 0 && n <= cache.capacity, [&] {
      return "cache_seqlens is " + str(n) + ", expected 0 to " + str(cache.capacity) +
             " (the cache's capacity: " + cache.capacity_source + ")";
    });
    cache_seqlens_.assign(batch, static_cast<std::int32_t>(n));  // capacity <= int32 max
  } else if (o.cache_seqlens.present()) {
    cache_seqlens_ = int32_per_batch(c, o.cache_seqlens.lengths(), "cache_seqlens", batch, q_.device);
  } else {
    cache_seqlens_.assign(batch, static_cast<std::int32_t>(cache.capacity));
  }
  if (o.cache_leftpad.present()) {
    c.require(!cache.paged,
              [&] { return "cache_leftpad is given with block_table, expected one or the other (as flash-attn)"; });
    leftpad_ = int32_per_batch(c, o.cache_leftpad, "cache_leftpad", batch, q_.device);
  }
  if (cache_seqlens_.empty()) {  // device lengths: where each append lands is the kernels' business
    c.require(seqlen_new <= cache.capacity, [&] {
      return "k has seqlen_new " + str(seqlen_new) + ", more than the cache's capacity of " + str(cache.capacity) +
             " positions (" + cache.capacity_source + ")";
    });
    return;
  }
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t pad = leftpad_.empty() ? 0 : leftpad_[b];
    if (cache_seqlens_[b] < 0) c.fail("cache_seqlens[" + str(b) + "] is " + str(cache_seqlens_[b]) + ", expected >= 0");
    if (pad < 0 || pad > cache_seqlens_[b]) {
      c.fail("cache_leftpad[" + str(b) + "] is " + str(pad) + ", expected 0 to cache_seqlens[" + str(b) +
             "] = " + str(cache_seqlens_[b]));
    }
    if (seqlen_new > cache.capacity - cache_seqlens_[b]) {  // cache_seqlens_[b] >= 0: no int64 overflow
      c.fail("cache_seqlens[" + str(b) + "] + seqlen_new = " + str(cache_seqlens_[b]) + " + " + str(seqlen_new) +
             " exceeds the cache's capacity of " + str(cache.capacity) + " positions (" + cache.capacity_source + ")");
    }
  }
}

// Which cache rows or pages each sequence uses: the block table, or
// cache_batch_idx, or rows 0..b-1.
void KvCacheCall::check_cache_rows(const ArgChecker& c, const KvCacheOptions& o, const CacheShape& cache,
                                   std::int64_t batch, std::int64_t seqlen_new) {
  const bool appending = o.k.present();
  if (cache.paged) {
    c.require(!o.cache_batch_idx.present(), [&] {
      return "cache_batch_idx is given with block_table, expected one or the other "
             "(the block table already maps sequences to pages)";
    });
    std::vector<std::int64_t> ends;  // read on the host only: a device table is clamped by the kernels
    for (std::int64_t b = 0; on_host_ && b < batch; ++b) ends.push_back(cache_seqlens_[b] + seqlen_new);
    check_block_table(c, o.block_table, batch, cache.rows, cache.seqlen, ends, "cache_seqlens + seqlen_new", q_.device);
    if (appending && on_host_) check_appends_private(c, o.block_table, cache.seqlen, cache_seqlens_, seqlen_new);
  } else if (o.cache_batch_idx.present()) {
    batch_index_ = int32_per_batch(c, o.cache_batch_idx, "cache_batch_idx", batch, q_.device);
    for (std::int64_t b = 0; on_host_ && b < batch; ++b) {
      if (batch_index_[b] < 0 || batch_index_[b] >= cache.rows) {
        c.fail("cache_batch_idx[" + str(b) + "] is " + str(batch_index_[b]) + ", expected a cache row in [0, " +
               str(cache.rows) + ")");
      }
      for (std::int64_t a = 0; appending && a < b; ++a) {
        if (batch_index_[a] == batch_index_[b]) {
          c.fail("cache_batch_idx[" + str(a) + "] and cache_batch_idx[" + str(b) + "] are both " +
                 str(batch_index_[b]) + ", expected distinct cache rows when appending k and v");
        }
      }
    }
  } else {
    c.require(cache.rows >= batch, [&] {
      return "k_cache has " + str(cache.rows) + " rows, expected at least q's batch size " + str(batch) +
             " (or a cache_batch_idx)";
    });
  }
}

// rotary_cos / rotary_sin: only with an append, q's dtype, long enough for
// every position the call rotates (when the host knows the lengths).
void KvCacheCall::check_rotary(const ArgChecker& c, const KvCacheOptions& o, const TensorView& q, const Problem& p,
                               std::int64_t seqlen_new, bool rotate_q_per_row) const {
  if (!o.rotary_cos.present() && !o.rotary_sin.present()) return;
  c.require(o.rotary_cos.present() && o.rotary_sin.present(), [&] {
    return std::string(o.rotary_cos.present() ? "rotary_cos is given without rotary_sin"
                                              : "rotary_sin is given without rotary_cos") +
           ", expected both or neither";
  });
  c.require(o.k.present(),
            [&] { return "rotary_cos is given without new k and v, expected rotary only with an append"; });
  for (const auto& [t, name] : {std::pair{&o.rotary_cos, "rotary_cos"}, std::pair{&o.rotary_sin, "rotary_sin"}}) {
    c.rows_tensor(*t, name, 2);
    c.dtype(*t, name, q.dtype);
    c.device(*t, name, q.device);
  }
  const std::int64_t half = o.rotary_cos.shape[1];
  c.require(half >= 1 && 2 * half <= p.head_dim, [&] {
    return "rotary_cos has " + str(half) +
           " columns (rotary_dim / 2), "
           "expected 1 to head_dim / 2 = " +
           str(p.head_dim / 2);
  });
  c.shape(o.rotary_sin, "rotary_sin", {o.rotary_cos.shape[0], half});
  if (cache_seqlens_.empty()) return;  // device lengths: positions past the tables are clamped to their last row
  std::int64_t positions = 0;          // largest position used + 1
  for (std::int64_t b = 0; b < p.batch; ++b)
    positions = std::max(positions, cache_seqlens_[b] + std::max(seqlen_new, rotate_q_per_row ? p.seqlen_q : 1));
  c.require(o.rotary_cos.shape[0] >= positions, [&] {
    return "rotary_cos has " + str(o.rotary_cos.shape[0]) + " rows (seqlen_ro), expected at least " + str(positions) +
           ": the call rotates up to position " + str(positions - 1);
  });
}

void KvCacheCall::append() {
  run_kvcache_append(params_);  // CPU: here and now; CUDA: a kernel on the call's stream
  if (!rotated_q_.empty()) rotate_q_copy();
}

// The CPU's rotated copy of q (the CUDA forward rotates q as it loads it).
void KvCacheCall::rotate_q_copy() {
  const AttentionParams& p = params_;
  const DType dtype = p.dtype;
  const std::int64_t bytes = dtype_size(dtype), d = p.head_dim, half = p.rotary.dim / 2;
  std::vector<float> row(d), cos(half), sin(half);  // (head_dim,), (rotary_dim / 2,)
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t i = 0; i < p.seqlen_q; ++i) {
      const std::int64_t position = core::rotary_position_of_q(p.rotary, core::cached_keys(p, b), i);
      core::load_floats(static_cast<const char*>(p.rotary.cos) + position * p.rotary.cos_stride * bytes, dtype, half,
                        cos.data());
      core::load_floats(static_cast<const char*>(p.rotary.sin) + position * p.rotary.sin_stride * bytes, dtype, half,
                        sin.data());
      for (std::int64_t h = 0; h < p.heads_q; ++h) {
        core::load_floats(element(q_, {b, i, h, 0}), dtype, d, row.data());
        core::rotate_row(row.data(), p.rotary.dim, cos.data(), sin.data(), p.rotary.interleaved);
        core::store_floats(row.data(), dtype, d, rotated_q_.data() + core::element_offset(p.q_stride, b, i, h) * bytes);
      }
    }
  }
}

}  // namespace frontend

void flash_attn_with_kvcache(const TensorView& q, const TensorView& k_cache, const TensorView& v_cache,
                             const KvCacheOutputs& outputs, const KvCacheOptions& options) {
  frontend::KvCacheCall call(q, k_cache, v_cache, outputs, options);
  call.append();
  run_forward(call.params());
}

std::int64_t flash_attn_with_kvcache_workspace_bytes(const TensorView& q, const TensorView& k_cache,
                                                     const TensorView& v_cache, const KvCacheOutputs& outputs,
                                                     const KvCacheOptions& options) {
  return forward_workspace_bytes(frontend::KvCacheCall(q, k_cache, v_cache, outputs, options).params());
}

}  // namespace flashattn
