// The options of `flashattn bench`, parsed in bench.cpp and read by every
// mode (bench.cpp: fwd and bwd; bench_decode.cpp: decode).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "bench_report.hpp"
#include "flashattn/flash_attn.hpp"
#include "flashattn/runtime.hpp"
#include "unfused_baseline.hpp"

namespace flashattn::tools {

struct BenchOptions {
  BenchMode mode = BenchMode::fwd;
  bool deterministic = false;  // bwd: params.deterministic
  std::int64_t batch = 1, heads = 16, seqlen_q = 2048, seqlen_k = 2048, head_dim = 128;
  std::int64_t heads_kv = 0;  // 0: = heads
  DType dtype = DType::f32;
  bool causal = false;
  bool has_window = false;
  WindowSize window{};
  double softcap = 0, dropout_p = 0;
  bool alibi = false, json = false;
  std::int64_t repeat = 5;
  bool baseline = true;                     // --no-baseline: false
  std::optional<GemmBackend> baseline_gemm;  // unset: openblas when it loads, else own
  // --sweep: every seqlen x head dim {64, 128}, non-causal and causal.
  bool sweep = false;
  std::vector<std::int64_t> sweep_seqlens{512, 1024, 2048, 4096, 8192, 16384};
  // decode: seqlen_q new queries against caches of seqlen_k keys (each
  // sequence's length uniform in [seqlen_k_min, seqlen_k] when given), paged
  // with page_size > 0, split into num_splits key chunks (0: heuristic).
  std::int64_t page_size = 0;
  // decode, paged: each sequence's pages where PagedKVCache's placement puts
  // them (runs of adjacent pages), or with this flag scattered over the
  // pool in a shuffled order (block tables from an allocator that keeps no
  // order, as a long-lived free list gives).
  bool shuffled_pages = false;
  std::optional<std::int64_t> seqlen_k_min;
  std::int64_t num_splits = 0;
  // decode: keep the caches warm between timed calls (no L3 flush): the
  // rate of a cache that fits in L3, against the DRAM-bound default.
  bool warm_cache = false;
  // decode: time every flush too (a streaming read of the flush buffer with
  // the same threads, just before the call) and report the calls' rates
  // against these adjacent ceilings (stderr): on a shared machine whose
  // bandwidth changes from second to second, the one-off probe and the
  // median call can land in different states.
  bool paired_ceiling = false;
  std::vector<std::string_view> flags_given;
  // Library settings; unset: leave the library's (environment) choice.
  std::optional<int> threads;
  std::optional<Isa> isa;
  std::optional<Backend> backend;
  bool cuda = false;  // --backend cuda: the CUDA forward on the current device (bench_cuda.cpp)

  bool given(std::string_view flag) const {
    for (std::string_view f : flags_given)
      if (f == flag) return true;
    return false;
  }
};

}  // namespace flashattn::tools
