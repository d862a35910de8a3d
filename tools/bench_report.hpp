// Output of `flashattn bench`: one BenchRow per configuration, printed as an
// aligned table or as one JSON object per line.
#pragma once

#include <cstdint>
#include <limits>
#include <ostream>
#include <span>
#include <string>
#include <string_view>

#include "sampled_backward_oracle.hpp"
#include "sampled_oracle.hpp"

namespace flashattn::tools {

constexpr double kMiB = 1024.0 * 1024.0;

// What a row times: the forward (flash_attn), the backward (run_backward) or
// decoding (flash_attn_with_kvcache).
enum class BenchMode { fwd, bwd, decode };

// "fwd" / "bwd" / "decode".
std::string_view bench_mode_name(BenchMode mode);

struct BenchRow {
  BenchMode mode = BenchMode::fwd;
  std::string backend, isa, dtype;
  std::int64_t batch = 0, heads = 0, heads_kv = 0, seqlen_q = 0, seqlen_k = 0, head_dim = 0;
  bool causal = false;
  // The band as run (AttentionParams::mask): causal makes window_right 0; -1 = unbounded.
  std::int64_t window_left = -1, window_right = -1;
  double softcap = 0, dropout_p = 0;
  bool alibi = false;
  bool deterministic = false;  // bwd: params.deterministic (the CPU backward is deterministic either way)
  int threads = 0, repeat = 0;
  double ms = 0;      // median of `repeat` runs
  double gflops = 0;  // kept (i, j) pairs only; bwd counts 2.5x the forward's FLOPs
  std::string path;   // "fma" / "bf16_dot": the instruction of the kernel's inner products
  double peak_gflops = 0;       // of `path` at this ISA and thread count, measured in-process
  double fraction_of_peak = 0;  // gflops / peak_gflops
  // The unfused baseline (unfused_baseline.hpp) on the same inputs: "openblas",
  // "own" (its GEMM) or "none" (skipped: times NaN, null in JSON).
  std::string baseline = "none";
  std::string baseline_note;  // "OpenBLAS <core>", "own <isa>", or why it was skipped
  double baseline_ms = std::numeric_limits<double>::quiet_NaN();          // median, like ms
  double speedup_vs_baseline = std::numeric_limits<double>::quiet_NaN();  // baseline_ms / ms
  // The library's scratch memory (forward_workspace_bytes / backward_workspace_bytes).
  std::int64_t workspace_bytes = 0;
  double peak_rss_mb = 0;  // the process's peak resident set after this row (and its baseline), MiB
  // q, k, v, out and lse (bwd: and dout, dq, dk, dv), MiB: peak_rss_mb minus this is the overhead.
  double tensor_mb = 0;
  // decode: cache lengths uniform in [seqlen_k_min, seqlen_k] (= seqlen_k: fixed),
  // page_size 0 = contiguous cache, num_splits as requested (0: heuristic).
  std::int64_t seqlen_k_min = 0, page_size = 0, num_splits = 0;
  std::string page_order;  // decode: "contiguous", "pool" (PagedKVCache's placement) or "shuffled"
  std::int64_t bytes = 0;             // decode: K and V bytes read once (sum of lengths x hk x d x 2 x dtype size)
  double gbps = 0;                    // decode: bytes / ms
  double bandwidth_gbps = 0;          // decode: DRAM read bandwidth, measured in-process (bandwidth_probe.hpp)
  double fraction_of_bandwidth = 0;   // gbps / bandwidth_gbps
  OracleVerdict verdict;         // fwd, decode: out and lse on sampled rows
  BackwardVerdict grad_verdict;  // bwd: dq, dk and dv on sampled rows and keys

  bool oracle_ok() const { return mode == BenchMode::bwd ? grad_verdict.ok : verdict.ok; }
};

// Header, one line per row, then one line per failed verdict saying why.
// The error columns are those of the first row's mode (a run has one mode).
void print_table(std::ostream& os, std::span<const BenchRow> rows);

// {"mode": "fwd", "backend": ..., "oracle_ok": true} on one line; bwd rows
// add "deterministic" and carry dq / dk / dv errors instead of out / lse;
// decode rows carry the cache layout and the bandwidth keys instead of the
// mask features, peak and baseline.
void print_json_line(std::ostream& os, const BenchRow& row);

}  // namespace flashattn::tools
