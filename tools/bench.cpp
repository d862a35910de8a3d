// `flashattn bench`: times flashattn::flash_attn (--mode fwd) or
// flashattn::run_backward (--mode bwd) on random normal inputs and checks
// samples of each result against the fp64 reference by the oracle rule
// (sampled_oracle.hpp, sampled_backward_oracle.hpp). One row per mask
// configuration, with the arithmetic peak of the path the kernel uses
// measured in the same process (peak_probe.hpp) and the unfused baseline
// (forward or backward) timed on the same inputs (unfused_baseline.hpp).
// --mode decode lives in bench_decode.cpp.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <vector>

#include "bench_decode.hpp"
#include "bench_options.hpp"
#include "bench_report.hpp"
#include "bench_util.hpp"
#include "cli_args.hpp"
#include "commands.hpp"
#include "core/mask.hpp"
#include "flashattn/flashattn.hpp"
#include "frontends/flash_attn_params.hpp"
#include "peak_probe.hpp"
#include "sampled_backward_oracle.hpp"
#include "sampled_oracle.hpp"
#include "unfused_baseline.hpp"

namespace flashattn::tools {
namespace {

using cli::CliError;

constexpr std::uint64_t kDropoutSeed = 0x1234;
constexpr std::uint64_t kInputSeed = 0x5eed;
constexpr int kSampledRows = 16;    // query rows: out and lse (fwd), dq (bwd)
constexpr int kSampledKvHeads = 2;  // bwd: (batch, kv head) pairs whose dk and dv are checked
constexpr int kSampledKeys = 8;     // bwd: keys of each

BenchMode parse_mode(std::string_view text) {
  for (BenchMode m : {BenchMode::fwd, BenchMode::bwd, BenchMode::decode})
    if (bench_mode_name(m) == text) return m;
  throw CliError("--mode expects fwd, bwd or decode, got '" + std::string(text) + "'");
}

DType parse_dtype(std::string_view text) {
  for (DType t : {DType::f32, DType::bf16, DType::f16})
    if (dtype_name(t) == text) return t;
  throw CliError("--dtype expects f32, bf16 or f16, got '" + std::string(text) + "'");
}

using Sv = std::string_view;

GemmBackend parse_gemm(Sv flag, Sv text) {
  for (GemmBackend g : {GemmBackend::openblas, GemmBackend::own})
    if (gemm_backend_name(g) == text) return g;
  throw CliError(std::string(flag) + " expects openblas or own, got '" + std::string(text) + "'");
}

std::int64_t parse_size(Sv flag, Sv text) { return cli::parse_int(flag, text, 1, std::int64_t{1} << 31); }

// "A,B,C": sizes, at least one.
std::vector<std::int64_t> parse_size_list(Sv flag, Sv text) {
  std::vector<std::int64_t> sizes;
  for (std::size_t start = 0;;) {
    const std::size_t comma = text.find(',', start);
    sizes.push_back(parse_size(flag, text.substr(start, comma == Sv::npos ? Sv::npos : comma - start)));
    if (comma == Sv::npos) return sizes;
    start = comma + 1;
  }
}

// cpu or reference: the library's backend; cuda: the CUDA forward (CUDA builds).
void parse_backend_flag(BenchOptions& o, Sv, Sv text) {
  if (text != "cuda") {
    o.backend = parse_backend(text);
    return;
  }
#ifndef FLASHATTN_WITH_CUDA
  throw CliError("--backend cuda: this build has no CUDA backend (configure with FLASHATTN_CUDA=ON)");
#endif
  o.cuda = true;
}

void parse_window(BenchOptions& o, Sv flag, Sv text) {
  const auto [left, right] = cli::parse_int_pair(flag, text, -1);
  o.window = {left, right};
  o.has_window = true;
}

// One bench flag: its name, whether a value follows, and what it sets.
struct Flag {
  Sv name;
  bool takes_value;
  void (*apply)(BenchOptions& o, Sv flag, Sv value);
};

// clang-format off
constexpr Flag kFlags[] = {
    {"--mode", true, [](BenchOptions& o, Sv, Sv v) { o.mode = parse_mode(v); }},
    {"--deterministic", false, [](BenchOptions& o, Sv, Sv) { o.deterministic = true; }},
    {"--batch", true, [](BenchOptions& o, Sv f, Sv v) { o.batch = parse_size(f, v); }},
    {"--heads", true, [](BenchOptions& o, Sv f, Sv v) { o.heads = parse_size(f, v); }},
    {"--heads-kv", true, [](BenchOptions& o, Sv f, Sv v) { o.heads_kv = parse_size(f, v); }},
    {"--seqlen-q", true, [](BenchOptions& o, Sv f, Sv v) { o.seqlen_q = parse_size(f, v); }},
    {"--seqlen-k", true, [](BenchOptions& o, Sv f, Sv v) { o.seqlen_k = parse_size(f, v); }},
    {"--seqlen", true, [](BenchOptions& o, Sv f, Sv v) { o.seqlen_q = o.seqlen_k = parse_size(f, v); }},
    {"--head-dim", true, [](BenchOptions& o, Sv f, Sv v) { o.head_dim = parse_size(f, v); }},
    {"--dtype", true, [](BenchOptions& o, Sv, Sv v) { o.dtype = parse_dtype(v); }},
    {"--causal", false, [](BenchOptions& o, Sv, Sv) { o.causal = true; }},
    {"--window", true, parse_window},
    {"--softcap", true, [](BenchOptions& o, Sv f, Sv v) { o.softcap = cli::parse_double(f, v); }},
    {"--alibi", false, [](BenchOptions& o, Sv, Sv) { o.alibi = true; }},
    {"--dropout", true, [](BenchOptions& o, Sv f, Sv v) { o.dropout_p = cli::parse_double(f, v); }},
    {"--threads", true, [](BenchOptions& o, Sv f, Sv v) { o.threads = int(cli::parse_int(f, v, 0, 4096)); }},
    {"--isa", true, [](BenchOptions& o, Sv, Sv v) { o.isa = parse_isa(v); }},
    {"--backend", true, parse_backend_flag},
    {"--repeat", true, [](BenchOptions& o, Sv f, Sv v) { o.repeat = cli::parse_int(f, v, 1, 1000000); }},
    {"--json", false, [](BenchOptions& o, Sv, Sv) { o.json = true; }},
    {"--no-baseline", false, [](BenchOptions& o, Sv, Sv) { o.baseline = false; }},
    {"--baseline-gemm", true, [](BenchOptions& o, Sv f, Sv v) { o.baseline_gemm = parse_gemm(f, v); }},
    {"--sweep", false, [](BenchOptions& o, Sv, Sv) { o.sweep = true; }},
    {"--sweep-seqlens", true, [](BenchOptions& o, Sv f, Sv v) { o.sweep_seqlens = parse_size_list(f, v); }},
    {"--page-size", true, [](BenchOptions& o, Sv f, Sv v) { o.page_size = cli::parse_int(f, v, 0, std::int64_t{1} << 31); }},
    {"--shuffled-pages", false, [](BenchOptions& o, Sv, Sv) { o.shuffled_pages = true; }},
    {"--seqlen-k-min", true, [](BenchOptions& o, Sv f, Sv v) { o.seqlen_k_min = parse_size(f, v); }},
    {"--num-splits", true, [](BenchOptions& o, Sv f, Sv v) { o.num_splits = cli::parse_int(f, v, 0, 1 << 16); }},
    {"--warm-cache", false, [](BenchOptions& o, Sv, Sv) { o.warm_cache = true; }},
    {"--paired-ceiling", false, [](BenchOptions& o, Sv, Sv) { o.paired_ceiling = true; }},
};

// Flags that --sweep sets itself.
constexpr Sv kSweptFlags[] = {"--seqlen", "--seqlen-q", "--seqlen-k", "--head-dim", "--causal", "--window"};

// Flags of --mode decode only, and flags it does not take (its mask is causal, it has no baseline).
constexpr Sv kDecodeFlags[] = {"--page-size",  "--shuffled-pages", "--seqlen-k-min",
                               "--num-splits", "--warm-cache",     "--paired-ceiling"};
constexpr Sv kNotDecodeFlags[] = {"--causal",       "--window",      "--softcap",       "--alibi",
                                  "--dropout",      "--seqlen",      "--no-baseline",   "--baseline-gemm",
                                  "--sweep",        "--sweep-seqlens", "--deterministic"};

// Flags that only make sense with another one.
void check_flag_combinations(const BenchOptions& o) {
  if (o.mode == BenchMode::decode) {
    for (Sv flag : kNotDecodeFlags) {
      if (o.given(flag)) throw CliError("bench: --mode decode does not take " + std::string(flag));
    }
  } else {
    for (Sv flag : kDecodeFlags) {
      if (o.given(flag)) throw CliError("bench: " + std::string(flag) + " needs --mode decode");
    }
  }
  if (o.given("--deterministic") && o.mode != BenchMode::bwd) throw CliError("bench: --deterministic needs --mode bwd");
  if (o.shuffled_pages && o.page_size == 0) throw CliError("bench: --shuffled-pages needs --page-size > 0");
  if (o.warm_cache && o.paired_ceiling) throw CliError("bench: --paired-ceiling times the flush that --warm-cache skips");
  if (o.cuda) {
    if (o.mode == BenchMode::bwd) throw CliError("bench: --backend cuda runs --mode fwd or decode (no CUDA backward yet)");
    if (o.mode == BenchMode::decode && o.given("--seqlen-q"))
      throw CliError("bench: --backend cuda --mode decode runs one query per sequence; drop --seqlen-q");
    for (Sv flag : {"--window", "--softcap", "--alibi", "--dropout", "--sweep", "--threads", "--isa", "--num-splits",
                    "--shuffled-pages", "--warm-cache", "--paired-ceiling", "--seqlen-k-min", "--baseline-gemm", "--no-baseline"}) {
      if (o.given(flag)) throw CliError("bench: --backend cuda does not take " + std::string(flag));
    }
  }
  if (o.given("--sweep-seqlens") && !o.sweep) throw CliError("bench: --sweep-seqlens needs --sweep");
  if (!o.sweep) return;
  for (Sv flag : kSweptFlags) {
    if (o.given(flag)) throw CliError("bench: --sweep sets seqlen, head dim and mask itself; drop " + std::string(flag));
  }
}
// clang-format on

BenchOptions parse_bench_options(std::span<const std::string_view> args) {
  BenchOptions o;
  cli::ArgCursor cursor(args);
  while (!cursor.done()) {
    const Sv flag = cursor.next_flag();
    const auto known =
        std::find_if(std::begin(kFlags), std::end(kFlags), [&](const Flag& f) { return f.name == flag; });
    if (known == std::end(kFlags))
      throw CliError("bench: unknown flag '" + std::string(flag) + "' (see flashattn --help)");
    known->apply(o, flag, known->takes_value ? cursor.value_of(flag) : Sv{});
    o.flags_given.push_back(known->name);
  }
  check_flag_combinations(o);
  if (o.heads_kv == 0) o.heads_kv = o.heads;
  if (o.mode == BenchMode::decode) {
    if (!o.given("--seqlen-q")) o.seqlen_q = 1;  // one new token per sequence
    o.causal = true;
    o.baseline = false;
    if (o.seqlen_k > std::numeric_limits<std::int32_t>::max()) {
      throw CliError("bench: --seqlen-k is " + std::to_string(o.seqlen_k) + ", expected at most " +
                     std::to_string(std::numeric_limits<std::int32_t>::max()) + " (cache_seqlens are int32)");
    }
    if (o.seqlen_k_min && *o.seqlen_k_min > o.seqlen_k) {
      throw CliError("bench: --seqlen-k-min is " + std::to_string(*o.seqlen_k_min) + ", expected at most --seqlen-k (" +
                     std::to_string(o.seqlen_k) + ")");
    }
  }
  if (o.baseline_gemm == GemmBackend::openblas && o.baseline && !openblas_available()) {
    throw CliError("--baseline-gemm openblas: libopenblas.so.0 does not load (install libopenblas0-pthread)");
  }
  return o;
}

// Applies --threads / --isa / --backend to the library (Error when the CPU lacks the ISA).
void apply_settings(const BenchOptions& o) {
  if (o.threads) set_num_threads(*o.threads);
  if (o.isa) set_isa(*o.isa);
  if (o.backend) set_backend(*o.backend);
}

// Tensors of one problem, reused by every configuration.
struct Problem {
  Bytes q, k, v, out;         // q, out (b, sq, h, d); k, v (b, sk, hk, d)
  std::vector<float> lse;     // (b, h, sq)
  std::vector<float> slopes;  // (h,) alibi slopes
  // bwd only (empty for fwd), contiguous like their forward counterparts:
  Bytes dout, dq;  // (b, sq, h, d)
  Bytes dk, dv;    // (b, sk, hk, d)
  TensorView q_view, k_view, v_view, out_view, lse_view, slopes_view;

  // Bytes of the tensors the caller of the library owns.
  std::int64_t tensor_bytes() const {
    std::size_t bytes = lse.size() * sizeof(float);
    for (const Bytes* t : {&q, &k, &v, &out, &dout, &dq, &dk, &dv}) bytes += t->size();
    return static_cast<std::int64_t>(bytes);
  }
};

// Refuses sizes this machine cannot hold before touching any memory.
void check_problem_fits(const BenchOptions& o) {
  const std::int64_t q_numel = checked_numel({o.batch, o.seqlen_q, o.heads, o.head_dim});
  const std::int64_t kv_numel = checked_numel({o.batch, o.seqlen_k, o.heads_kv, o.head_dim});
  const std::int64_t lse_numel = checked_numel({o.batch, o.heads, o.seqlen_q});
  const double copies = o.mode == BenchMode::bwd ? 4.0 : 2.0;  // q, out (+ dout, dq); k, v (+ dk, dv)
  check_fits_in_memory(copies * (q_numel + kv_numel) * dtype_size(o.dtype) + 4.0 * lse_numel);
}

// Allocated (zero) tensors; prepare_problem fills q, k, v and dout.
Problem make_problem(const BenchOptions& o) {
  check_problem_fits(o);
  const DType t = o.dtype;
  Problem p;
  p.q.resize(checked_numel({o.batch, o.seqlen_q, o.heads, o.head_dim}) * dtype_size(t));
  p.k.resize(checked_numel({o.batch, o.seqlen_k, o.heads_kv, o.head_dim}) * dtype_size(t));
  p.v.resize(p.k.size());
  p.out.resize(p.q.size());
  p.lse.resize(checked_numel({o.batch, o.heads, o.seqlen_q}));
  if (o.mode == BenchMode::bwd) {
    p.dout.resize(p.q.size());
    p.dq.resize(p.q.size());
    p.dk.resize(p.k.size());
    p.dv.resize(p.v.size());
  }
  for (std::int64_t h = 0; h < o.heads; ++h) p.slopes.push_back(std::exp2(-8.0 * (h + 1) / o.heads));
  p.q_view = TensorView::contiguous(p.q.data(), t, {o.batch, o.seqlen_q, o.heads, o.head_dim});
  p.k_view = TensorView::contiguous(p.k.data(), t, {o.batch, o.seqlen_k, o.heads_kv, o.head_dim});
  p.v_view = TensorView::contiguous(p.v.data(), t, {o.batch, o.seqlen_k, o.heads_kv, o.head_dim});
  p.out_view = TensorView::contiguous(p.out.data(), t, {o.batch, o.seqlen_q, o.heads, o.head_dim});
  p.lse_view = TensorView::contiguous(p.lse.data(), DType::f32, {o.batch, o.heads, o.seqlen_q});
  p.slopes_view = TensorView::contiguous(p.slopes.data(), DType::f32, {o.heads});
  return p;
}

// The flash-attn options of one row: no mask flags given means two rows,
// non-causal and causal.
std::vector<FlashAttnOptions> configurations(const BenchOptions& o, const Problem& p) {
  FlashAttnOptions base;
  base.dropout_p = static_cast<float>(o.dropout_p);
  base.seed = kDropoutSeed;
  base.softcap = static_cast<float>(o.softcap);
  base.window_size = o.window;
  base.causal = o.causal;
  if (o.alibi) base.alibi_slopes = p.slopes_view;
  if (o.causal || o.has_window) return {base};
  FlashAttnOptions causal = base;
  causal.causal = true;
  return {base, causal};
}

// The arithmetic ceiling of every row: one path per process (dtype, ISA and
// threads are fixed), measured once before the first row.
struct Ceiling {
  MathPath path = MathPath::fma;
  double peak_gflops = 0;
};

// The backward takes its path by the forward's rule (math_path_of), so both modes share this.
Ceiling measure_ceiling(const BenchOptions& o) {
  const MathPath path = math_path_of(active_isa(), o.dtype);
  return {path, peak_gflops(active_isa(), path, num_threads())};
}

// Times the unfused baseline on `params` like the kernel, or says why not.
void run_baseline(const BenchOptions& o, const AttentionParams& params, BenchRow& row) {
  const std::string skipped = o.baseline ? unfused_unsupported_reason(params) : "--no-baseline";
  if (!skipped.empty()) {
    row.baseline_note = skipped;
    return;  // baseline "none", baseline_ms and speedup NaN (null in JSON)
  }
  // Only now: loading OpenBLAS costs memory that a skipped baseline should not add.
  const GemmBackend gemm = o.baseline_gemm.value_or(default_gemm_backend());
  const UnfusedPass pass = o.mode == BenchMode::bwd ? UnfusedPass::backward : UnfusedPass::forward;
  UnfusedAttention baseline(params, gemm, active_isa(), num_threads(), pass);
  row.baseline = gemm_backend_name(gemm);
  row.baseline_note = gemm == GemmBackend::openblas ? "OpenBLAS " + openblas_core_name() : "own " + row.isa;
  row.baseline_ms = median_ms(o.repeat, [&] { baseline.run(); });
  row.speedup_vs_baseline = row.baseline_ms / row.ms;
}

// --mode fwd: times flash_attn, checks out and lse on sampled rows. Returns the FLOPs of one call.
double time_forward(const BenchOptions& o, Problem& p, const AttentionParams& params, const FlashAttnOptions& options,
                    BenchRow& row) {
  const FlashAttnOutputs outputs{.out = p.out_view, .softmax_lse = p.lse_view};
  poison(p.out);
  std::fill(p.lse.begin(), p.lse.end(), std::numeric_limits<float>::quiet_NaN());
  row.ms = median_ms(o.repeat, [&] { flash_attn(p.q_view, p.k_view, p.v_view, outputs, options); });
  row.workspace_bytes = forward_workspace_bytes(params);
  row.verdict = check_rows(params, sample_rows(params, kSampledRows, kInputSeed));
  return forward_flops(params);
}

// The forward's params plus the backward's tensors: dout, dq, dk and dv are
// contiguous with the shapes of out, q, k and v.
AttentionParams with_gradients(const BenchOptions& o, Problem& p, AttentionParams params) {
  params.dout = p.dout.data(), params.dout_stride = params.out_stride;
  params.dq = p.dq.data(), params.dq_stride = params.q_stride;
  params.dk = p.dk.data(), params.dk_stride = params.k_stride;
  params.dv = p.dv.data(), params.dv_stride = params.v_stride;
  params.deterministic = o.deterministic;
  return params;
}

// --mode bwd: runs the forward once (untimed) for out and lse, then times
// run_backward on random dout and checks dq, dk and dv on a sample. Returns
// the FLOPs of one call: 2.5x the forward's (DESIGN.md).
double time_backward(const BenchOptions& o, Problem& p, const AttentionParams& params, const FlashAttnOptions& options,
                     BenchRow& row) {
  flash_attn(p.q_view, p.k_view, p.v_view, {.out = p.out_view, .softmax_lse = p.lse_view}, options);
  for (Bytes* grad : {&p.dq, &p.dk, &p.dv}) poison(*grad);
  row.ms = median_ms(o.repeat, [&] { run_backward(params); });
  row.workspace_bytes = backward_workspace_bytes(params);
  row.grad_verdict =
      check_backward(params, sample_backward(params, kSampledRows, kSampledKvHeads, kSampledKeys, kInputSeed));
  return 2.5 * forward_flops(params);
}

BenchRow run_configuration(const BenchOptions& o, Problem& p, const FlashAttnOptions& options, const Ceiling& ceiling) {
  // Validates everything, and is exactly what flash_attn runs.
  AttentionParams params = frontend::flash_attn_params("flash_attn", p.q_view, p.k_view, p.v_view,
                                                       {.out = p.out_view, .softmax_lse = p.lse_view}, options);
  if (o.mode == BenchMode::bwd) params = with_gradients(o, p, params);
  BenchRow row;
  row.mode = o.mode;
  row.backend = backend_name(active_backend());
  row.isa = isa_name(active_isa());
  row.dtype = dtype_name(o.dtype);
  row.batch = o.batch, row.heads = o.heads, row.heads_kv = o.heads_kv;
  row.seqlen_q = o.seqlen_q, row.seqlen_k = o.seqlen_k, row.head_dim = o.head_dim;
  row.causal = options.causal;
  row.window_left = params.mask.left, row.window_right = params.mask.right;
  row.softcap = o.softcap, row.dropout_p = o.dropout_p, row.alibi = o.alibi;
  row.deterministic = o.deterministic;
  row.threads = num_threads();
  row.repeat = static_cast<int>(o.repeat);
  const double flops =
      o.mode == BenchMode::fwd ? time_forward(o, p, params, options, row) : time_backward(o, p, params, options, row);
  row.gflops = flops / (row.ms * 1e-3) / 1e9;
  row.path = math_path_name(ceiling.path);
  row.peak_gflops = ceiling.peak_gflops;
  row.fraction_of_peak = row.gflops / ceiling.peak_gflops;
  row.tensor_mb = static_cast<double>(p.tensor_bytes()) / kMiB;
  run_baseline(o, params, row);
  row.peak_rss_mb = peak_rss_mb();
  return row;
}

// The problems to run: `o` itself, or with --sweep one per (seqlen, head
// dim), each giving two rows (non-causal and causal).
std::vector<BenchOptions> problems_of(const BenchOptions& o) {
  if (!o.sweep) return {o};
  std::vector<BenchOptions> points;
  for (std::int64_t seqlen : o.sweep_seqlens) {
    for (std::int64_t head_dim : {64, 128}) {
      BenchOptions point = o;
      point.seqlen_q = point.seqlen_k = seqlen;
      point.head_dim = head_dim;
      points.push_back(point);
    }
  }
  return points;
}

// Allocates and fills the problem, after rejecting bad sizes and options.
Problem prepare_problem(const BenchOptions& o, std::vector<FlashAttnOptions>& configs) {
  Problem problem = make_problem(o);
  configs = configurations(o, problem);
  for (const FlashAttnOptions& options : configs) {
    frontend::flash_attn_params("flash_attn", problem.q_view, problem.k_view, problem.v_view,
                                {.out = problem.out_view, .softmax_lse = problem.lse_view}, options);
  }
  std::mt19937_64 rng(kInputSeed);
  for (Bytes* input : {&problem.q, &problem.k, &problem.v, &problem.dout}) {
    randomize(*input, o.dtype, rng);  // dout is empty for fwd
  }
  return problem;
}

// "sweep 3/24: seqlen=1024 d=64 causal" on stderr.
void print_progress(const BenchOptions& point, const FlashAttnOptions& options, std::size_t done, std::size_t total) {
  std::cerr << "sweep " << done << '/' << total << ": seqlen=" << point.seqlen_q << " d=" << point.head_dim
            << (options.causal ? " causal" : " non-causal") << std::endl;
}

}  // namespace

int run_bench(std::span<const std::string_view> args) {
  const BenchOptions o = parse_bench_options(args);
  apply_settings(o);
#ifdef FLASHATTN_WITH_CUDA
  if (o.cuda) return run_cuda_bench(o);
#endif
  if (o.mode == BenchMode::decode) return run_decode_bench(o);
  const std::vector<BenchOptions> points = problems_of(o);
  for (const BenchOptions& point : points) check_problem_fits(point);  // before the slow work
  std::vector<FlashAttnOptions> configs;
  std::optional<Problem> problem = prepare_problem(points.front(), configs);  // validates the shared flags
  const Ceiling ceiling = measure_ceiling(o);
  const std::size_t total_rows = points.size() * configs.size();
  std::vector<BenchRow> rows;
  for (std::size_t at = 0; at < points.size(); ++at) {
    if (at > 0) {
      problem.reset();  // one problem in memory at a time
      problem = prepare_problem(points[at], configs);
    }
    for (const FlashAttnOptions& options : configs) {
      if (o.sweep) print_progress(points[at], options, rows.size() + 1, total_rows);
      rows.push_back(run_configuration(points[at], *problem, options, ceiling));
      if (o.json) print_json_line(std::cout, rows.back());
    }
  }
  if (!o.json) print_table(std::cout, rows);
  const bool all_ok = std::all_of(rows.begin(), rows.end(), [](const BenchRow& r) { return r.oracle_ok(); });
  return all_ok ? 0 : 1;
}

}  // namespace flashattn::tools
