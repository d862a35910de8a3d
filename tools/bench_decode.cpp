// `flashattn bench --mode decode` (see bench_decode.hpp).
//
// Each of `batch` sequences has a key/value cache of cache_seqlens[b] tokens
// (all --seqlen-k, or uniform in [--seqlen-k-min, --seqlen-k] from a fixed
// seed) and --seqlen-q new queries at its end: flash_attn_with_kvcache with
// causal = true, nothing appended. Paged caches (--page-size P) are a pool
// of exactly the pages the sequences use, placed by PagedKVCache (each
// sequence prefilled whole, in batch order: runs of adjacent pages), or with
// --shuffled-pages handed out in a shuffled order so that a sequence's pages
// are scattered over the pool, as an allocator that keeps no order leaves
// them. Memory traffic is counted as K and V read once; the
// ceiling is the DRAM read bandwidth measured in the same process with the
// same threads (bandwidth_probe.hpp), on the same kind of memory (the
// caches, like the probe's buffer, on transparent huge pages where the
// system grants them), and the caches are flushed before
// every timed call so K and V come from DRAM, as they would for a model
// whose layers' caches do not fit in L3 together.
#include "bench_decode.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "bandwidth_probe.hpp"
#include "bench_util.hpp"
#include "cli_args.hpp"
#include "core/mask.hpp"
#include "flashattn/flash_attn_kvcache.hpp"
#include "flashattn/paged_kv_cache.hpp"
#include "frontends/kvcache_call.hpp"
#include "sampled_oracle.hpp"

namespace flashattn::tools {
namespace {

constexpr std::uint64_t kInputSeed = 0x5eed;   // q and the caches (as the forward bench)
constexpr std::uint64_t kLengthSeed = 0x1e17;  // cache lengths in [seqlen_k_min, seqlen_k]
constexpr std::uint64_t kPageSeed = 0x9a6e;    // the order --shuffled-pages hands pages out
constexpr int kSampledRows = 16;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// The caches, queries and outputs of one decode step.
struct DecodeProblem {
  std::vector<std::int32_t> lengths;      // (batch,) cache_seqlens
  std::vector<std::int32_t> block_table;  // (batch, max_pages) when paged; unused entries 0
  std::int64_t max_pages = 0;             // pages per block-table row
  std::int64_t cache_rows = 0;            // batch (contiguous) or pages in the pool (paged)
  std::int64_t cache_seqlen = 0;          // seqlen_k (contiguous) or page_size (paged)
  Bytes q, out;                           // (batch, seqlen_q, heads, head_dim)
  Bytes k_cache, v_cache;                 // (cache_rows, cache_seqlen, heads_kv, head_dim)
  std::vector<float> lse;                 // (batch, heads, seqlen_q)
  TensorView q_view, out_view, lse_view, k_view, v_view, lengths_view, table_view;

  std::int64_t tensor_bytes() const {
    return static_cast<std::int64_t>(q.size() + out.size() + k_cache.size() + v_cache.size() +
                                     sizeof(float) * lse.size() +
                                     sizeof(std::int32_t) * (lengths.size() + block_table.size()));
  }
};

std::vector<std::int32_t> cache_lengths(const BenchOptions& o) {
  std::vector<std::int32_t> lengths(o.batch, static_cast<std::int32_t>(o.seqlen_k));
  if (!o.seqlen_k_min) return lengths;
  std::mt19937_64 rng(kLengthSeed);
  std::uniform_int_distribution<std::int64_t> length(*o.seqlen_k_min, o.seqlen_k);
  for (std::int32_t& n : lengths) n = static_cast<std::int32_t>(length(rng));
  return lengths;
}

// Sequence b's pages: where PagedKVCache places them in a pool of exactly
// `pages` (block ids only: a pool of 1 x 1 elements per token), or the next
// ceil(lengths[b] / page_size) of a shuffled permutation of the pool.
void fill_block_table(const BenchOptions& o, DecodeProblem& p) {
  p.max_pages = ceil_div(o.seqlen_k, o.page_size);
  std::int64_t pages = 0;
  for (std::int32_t n : p.lengths) pages += ceil_div(n, o.page_size);
  if (pages > std::numeric_limits<std::int32_t>::max()) throw cli::CliError("bench: more pages than int32 can index");
  p.block_table.assign(checked_numel({o.batch, p.max_pages}), 0);
  if (o.shuffled_pages) {
    std::vector<std::int32_t> order(pages);
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(kPageSeed);
    std::shuffle(order.begin(), order.end(), rng);
    std::int64_t next = 0;
    for (std::int64_t b = 0; b < o.batch; ++b)
      for (std::int64_t page = 0; page < ceil_div(p.lengths[b], o.page_size); ++page)
        p.block_table[b * p.max_pages + page] = order[next++];
  } else {
    PagedKVCache pool({.num_blocks = pages, .block_size = o.page_size, .heads_kv = 1, .head_dim = 1});
    for (std::int64_t b = 0; b < o.batch; ++b) {
      const SequenceId s = pool.add_sequence();
      pool.reserve({s}, p.lengths[b]).commit();
      const std::vector<std::int32_t> ids = pool.block_ids(s);
      std::copy(ids.begin(), ids.end(), p.block_table.begin() + b * p.max_pages);
    }
  }
  p.cache_rows = pages;
  p.cache_seqlen = o.page_size;
}

// Allocated (zero) tensors and the index tensors; randomize() fills q and the caches.
DecodeProblem make_problem(const BenchOptions& o) {
  DecodeProblem p;
  p.lengths = cache_lengths(o);
  if (o.page_size > 0) {
    fill_block_table(o, p);
  } else {
    p.cache_rows = o.batch;
    p.cache_seqlen = o.seqlen_k;
  }
  const DType t = o.dtype;
  const std::int64_t q_numel = checked_numel({o.batch, o.seqlen_q, o.heads, o.head_dim});
  const std::int64_t cache_numel = checked_numel({p.cache_rows, p.cache_seqlen, o.heads_kv, o.head_dim});
  check_fits_in_memory(2.0 * static_cast<double>(q_numel + cache_numel) * dtype_size(t));
  p.q.resize(q_numel * dtype_size(t));
  p.out.resize(p.q.size());
  resize_on_huge_pages(p.k_cache, cache_numel * dtype_size(t));
  resize_on_huge_pages(p.v_cache, p.k_cache.size());
  p.lse.resize(checked_numel({o.batch, o.heads, o.seqlen_q}));
  p.q_view = TensorView::contiguous(p.q.data(), t, {o.batch, o.seqlen_q, o.heads, o.head_dim});
  p.out_view = TensorView::contiguous(p.out.data(), t, {o.batch, o.seqlen_q, o.heads, o.head_dim});
  p.lse_view = TensorView::contiguous(p.lse.data(), DType::f32, {o.batch, o.heads, o.seqlen_q});
  p.k_view = TensorView::contiguous(p.k_cache.data(), t, {p.cache_rows, p.cache_seqlen, o.heads_kv, o.head_dim});
  p.v_view = TensorView::contiguous(p.v_cache.data(), t, {p.cache_rows, p.cache_seqlen, o.heads_kv, o.head_dim});
  p.lengths_view = TensorView::contiguous(p.lengths.data(), DType::i32, {o.batch});
  if (o.page_size > 0) p.table_view = TensorView::contiguous(p.block_table.data(), DType::i32, {o.batch, p.max_pages});
  return p;
}

KvCacheOptions call_options(const BenchOptions& o, const DecodeProblem& p) {
  KvCacheOptions options;
  options.cache_seqlens = CacheSeqlens(p.lengths_view);
  options.block_table = p.table_view;
  options.causal = true;
  options.num_splits = o.num_splits;
  return options;
}

// K and V bytes the call must read at least once: every cached token of every kv head.
std::int64_t kv_bytes(const BenchOptions& o, const DecodeProblem& p) {
  std::int64_t tokens = 0;
  for (std::int32_t n : p.lengths) tokens += n;
  return tokens * o.heads_kv * o.head_dim * 2 * dtype_size(o.dtype);
}

// 4 D FLOPs (q.k and p.v) per kept (i, j) pair, each sequence over its own length.
double decode_flops(const AttentionParams& params, const std::vector<std::int32_t>& lengths) {
  std::int64_t pairs = 0;
  for (std::int32_t n : lengths) {
    for (std::int64_t i = 0; i < params.seqlen_q; ++i) {
      const core::KeyRange keys = core::kept_keys(params.mask, i, params.seqlen_q, n);
      pairs += std::max<std::int64_t>(keys.end - keys.begin, 0);
    }
  }
  return 2.0 * static_cast<double>(params.head_dim + params.head_dim_v) * static_cast<double>(pairs) *
         static_cast<double>(params.heads_q);
}

BenchRow describe(const BenchOptions& o) {
  BenchRow row;
  row.mode = BenchMode::decode;
  row.backend = backend_name(active_backend());
  row.isa = isa_name(active_isa());
  row.dtype = dtype_name(o.dtype);
  row.batch = o.batch, row.heads = o.heads, row.heads_kv = o.heads_kv;
  row.seqlen_q = o.seqlen_q, row.seqlen_k = o.seqlen_k, row.head_dim = o.head_dim;
  row.seqlen_k_min = o.seqlen_k_min.value_or(o.seqlen_k);
  row.page_size = o.page_size, row.num_splits = o.num_splits;
  row.page_order = o.page_size == 0 ? "contiguous" : o.shuffled_pages ? "shuffled" : "pool";
  row.causal = true, row.window_left = -1, row.window_right = 0;
  row.threads = num_threads();
  row.repeat = static_cast<int>(o.repeat);
  return row;
}

// --paired-ceiling: call i read kv_bytes in call_ms[i], its flush
// flush_bytes in flush_ms[i]. The ratios of the calls whose flush ran within
// 10% of the run's fastest flush are the fractions of a quiet machine's
// bandwidth, however the rest of the run went.
void report_paired_ceiling(const std::vector<double>& flush_ms, const std::vector<double>& call_ms, double flush_bytes,
                           double kv_bytes) {
  std::vector<double> flush_gbps, call_gbps, ratio, fast_ratio;
  for (std::size_t i = 0; i < call_ms.size(); ++i) {
    flush_gbps.push_back(flush_bytes / flush_ms[i] / 1e6);
    call_gbps.push_back(kv_bytes / call_ms[i] / 1e6);
    ratio.push_back(call_gbps[i] / flush_gbps[i]);
  }
  const double best_flush = *std::max_element(flush_gbps.begin(), flush_gbps.end());
  for (std::size_t i = 0; i < ratio.size(); ++i)
    if (flush_gbps[i] >= 0.9 * best_flush) fast_ratio.push_back(ratio[i]);
  std::fprintf(stderr,
               "paired ceiling: %zu calls, flush median %.1f GB/s (best %.1f), call median %.1f GB/s, call/flush "
               "median %.3f; the %zu calls with a flush >= 0.9 x best: call/flush median %.3f\n",
               call_ms.size(), median(flush_gbps), best_flush, median(call_gbps), median(ratio), fast_ratio.size(),
               median(fast_ratio));
}

}  // namespace

int run_decode_bench(const BenchOptions& o) {
  DecodeProblem p = make_problem(o);
  const KvCacheOutputs outputs{.out = p.out_view, .softmax_lse = p.lse_view};
  const KvCacheOptions options = call_options(o, p);
  // Validates everything before the slow work; its params are exactly what the call runs.
  const frontend::KvCacheCall call(p.q_view, p.k_view, p.v_view, outputs, options);
  std::mt19937_64 rng(kInputSeed);
  for (Bytes* input : {&p.q, &p.k_cache, &p.v_cache}) randomize(*input, o.dtype, rng);

  BenchRow row = describe(o);
  const BandwidthMeasurement bandwidth = read_bandwidth(active_isa(), row.threads);
  const CacheFlusher flusher(active_isa(), row.threads);
  poison(p.out);
  std::fill(p.lse.begin(), p.lse.end(), std::numeric_limits<float>::quiet_NaN());
  std::vector<double> flush_ms, call_ms;  // --paired-ceiling: per call (flush_ms: the warm-up's first)
  row.ms = median_ms(
      o.repeat, [&] { flash_attn_with_kvcache(p.q_view, p.k_view, p.v_view, outputs, options); },
      [&] {
        if (o.warm_cache) return;
        const auto start = std::chrono::steady_clock::now();
        flusher.flush();
        flush_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
      },
      &call_ms);

  const AttentionParams& params = call.params();
  row.bytes = kv_bytes(o, p);
  row.gbps = static_cast<double>(row.bytes) / (row.ms * 1e-3) / 1e9;
  row.bandwidth_gbps = bandwidth.gbps;
  row.fraction_of_bandwidth = row.gbps / bandwidth.gbps;
  row.gflops = decode_flops(params, p.lengths) / (row.ms * 1e-3) / 1e9;
  row.workspace_bytes = forward_workspace_bytes(params);
  row.tensor_mb = static_cast<double>(p.tensor_bytes()) / kMiB;
  row.verdict = check_rows(params, sample_rows(params, kSampledRows, kInputSeed));
  row.peak_rss_mb = peak_rss_mb();

  if (o.json) {
    print_json_line(std::cout, row);
  } else {
    print_table(std::cout, std::span<const BenchRow>(&row, 1));
  }
  if (o.paired_ceiling) {
    std::cout.flush();
    flush_ms.erase(flush_ms.begin());  // the warm-up call's flush
    report_paired_ceiling(flush_ms, call_ms, static_cast<double>(flusher.bytes()), static_cast<double>(row.bytes));
  }
  return row.oracle_ok() ? 0 : 1;
}

}  // namespace flashattn::tools
