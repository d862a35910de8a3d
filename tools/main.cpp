// The `flashattn` command line: picks the subcommand, prints usage, and turns
// every error into one "flashattn: <message>" line on stderr.
//
// Exit status: 0 ok; 1 a bench oracle verdict failed (or an unexpected
// internal error); 2 bad usage or arguments rejected by the library.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <iostream>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "cli_args.hpp"
#include "commands.hpp"
#include "flashattn/error.hpp"

namespace {

constexpr const char* kUsage = R"(usage: flashattn <command> [flags]

commands:
  bench   time the forward or backward on random inputs and check it against
          the fp64 reference
  info    version, instruction sets, backend and threads

flashattn bench flags (defaults in brackets):
  --mode M           fwd (flash_attn), bwd (run_backward: dq, dk, dv) or
                     decode (flash_attn_with_kvcache, causal: SQ new queries per
                     sequence against a cache of SK keys; SQ defaults to 1) [fwd]
  --batch B          [1]
  --heads H          [16]
  --heads-kv HK      [= H]; must divide H
  --seqlen-q SQ      [2048]
  --seqlen-k SK      [2048]
  --seqlen S         sets both SQ and SK
  --head-dim D       [128]
  --dtype T          f32, bf16 or f16 [f32]
  --causal           bottom-right causal mask
  --window L,R       bottom-right band, -1 = unbounded side
                     (without --causal or --window: two rows, non-causal and causal)
  --softcap C        s = C * tanh(s / C)
  --alibi            slopes 2^(-8 (h + 1) / H)
  --dropout P        drop probability, fixed seed
  --deterministic    bwd only: ask for a deterministic backward (reported;
                     the CPU backward is always bitwise deterministic)
  --threads N        CPU threads (0 = default)
  --isa NAME         scalar, avx2, avx512 or avx512_bf16
  --backend NAME     cpu or reference; cuda (CUDA builds: --mode fwd or decode on the current device)
  --repeat R         timed runs after one warm-up [5]
  --json             one JSON object per line instead of the table
  --no-baseline      skip the unfused baseline
  --baseline-gemm G  the baseline's GEMM: openblas or own
                     [openblas when libopenblas.so.0 loads, else own]
  --sweep            one row per seqlen x head dim {64, 128} x {non-causal,
                     causal} (sets --seqlen, --head-dim and the mask; the
                     other flags apply to every row); progress on stderr
  --sweep-seqlens L  the sweep's seqlens, comma separated
                     [512,1024,2048,4096,8192,16384]
  --page-size P      decode: paged caches of P-token pages, placed by
                     PagedKVCache (0 = contiguous caches) [0]
  --shuffled-pages   decode: the pages scattered over the pool in a shuffled
                     order instead (the page column shows P/shuf)
  --seqlen-k-min LO  decode: each cache length uniform in [LO, SK] (fixed seed)
                     [every length SK]
  --num-splits N     decode: key chunks per sequence, merged (0 = heuristic) [0]
  --warm-cache       decode: no cache flush between calls (a cache that fits in L3)
  --paired-ceiling   decode: also time each call's flush (a streaming read of
                     2 x L3 just before it) and print, on stderr, the calls'
                     rates as fractions of these adjacent ceilings

Each row: median ms, GFLOP/s over kept (i, j) pairs (bwd: 2.5x the
forward's FLOPs), the arithmetic peak of the kernel's path (fma, or bf16_dot
for bf16 on avx512_bf16) measured in this process and the fraction of it,
the unfused baseline (S = QK^T materialised, softmax, PV; bwd: its
autograd backward, dV = P^T dO, dP = dO V^T, dS, dQ = dS K, dK = dS^T Q;
skipped with softcap, alibi, dropout or a > 1 GiB S per head) and the
speedup over it, the library's workspace, the size of the tensors (q, k, v, out, lse;
bwd: and dout, dq, dk, dv) and the process's peak RSS (MiB), the max abs
error vs the fp64 reference and the oracle verdict. fwd: out on 16 sampled
rows, error <= 2 x naive-in-dtype error + one ulp of max |ref|. bwd (after
one untimed forward, random dout): dq on 16 sampled rows, dk and dv on 8
keys of 2 (batch, kv head) pairs (fewer for long sequences, to bound the
check's cost), each error <= 3 x naive-in-dtype error + one ulp.
decode: median ms with the caches flushed before each call (not with
--warm-cache), the K and V
bytes read once, GB/s, the DRAM read bandwidth measured in this process
with the same threads and the fraction of it, out and lse checked on 16
sampled rows as for fwd (no baseline, no peak).
Exit status: 0 ok, 1 an oracle verdict failed, 2 bad arguments.
)";

bool is_help_flag(std::string_view arg) { return arg == "--help" || arg == "-h"; }

// Messages are printed on one line whatever they contain.
int fail(std::string_view message, int status) {
  std::string line(message);
  std::replace(line.begin(), line.end(), '\n', ' ');
  std::cerr << "flashattn: " << line << '\n';
  return status;
}

int dispatch(const std::vector<std::string_view>& args) {
  if (args.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  const std::span<const std::string_view> rest(args.begin() + 1, args.end());
  if (args[0] == "help" || is_help_flag(args[0]) || std::any_of(rest.begin(), rest.end(), is_help_flag)) {
    std::cout << kUsage;
    return 0;
  }
  if (args[0] == "bench") return flashattn::tools::run_bench(rest);
  if (args[0] == "info") return flashattn::tools::run_info(rest);
  throw flashattn::cli::CliError("unknown command '" + std::string(args[0]) + "' (commands: bench, info; see --help)");
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  try {
    return dispatch(args);
  } catch (const flashattn::cli::CliError& e) {
    return fail(e.what(), 2);
  } catch (const flashattn::Error& e) {
    return fail(e.what(), 2);
  } catch (const std::bad_alloc&) {
    return fail("out of memory", 2);
  } catch (const std::exception& e) {
    return fail(e.what(), 1);
  }
}
