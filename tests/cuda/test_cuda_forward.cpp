// The CUDA forward against the fp64 reference by the oracle rule
// (DESIGN.md), over the fixed-length grid of the CPU forward tests: dtypes,
// head dims of every tile, GQA, causal and windowed masks, softcap, alibi,
// strided views, lengths that cut tiles. Needs a GPU: labelled `gpu`, left
// out of `make test` and run by scripts/gpu-check.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "cuda/check.hpp"
#include "device_copy.hpp"
#include "support/attention_problem.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

struct Case {
  DType dtype;
  std::int64_t head_dim, seqlen_q, seqlen_k, heads, heads_kv;
  bool causal = false;
  WindowSize window{};
  float softcap = 0.0f;
  Alibi alibi = Alibi::none;
  bool strided = false;
  float dropout_p = 0.0f;  // the reference draws the CPU's Philox mask: a match means the same mask
  bool workspace = false;  // pass the workspace the call asks for: split-KV where the heuristic splits
  bool graph = false;      // capture the call into a CUDA graph and replay it (twice, out poisoned between)
};

std::string describe(const Case& c) {
  return std::string(dtype_name(c.dtype)) + " d" + std::to_string(c.head_dim) + " sq" + std::to_string(c.seqlen_q) +
         " sk" + std::to_string(c.seqlen_k) + " h" + std::to_string(c.heads) + "/" + std::to_string(c.heads_kv) +
         (c.causal ? " causal" : "") + " window(" + std::to_string(c.window.left) + "," +
         std::to_string(c.window.right) + ")" + (c.softcap > 0 ? " softcap" : "") +
         (c.alibi != Alibi::none ? " alibi" : "") + (c.strided ? " strided" : "") +
         (c.dropout_p > 0 ? " dropout" : "") + (c.workspace ? " workspace" : "") + (c.graph ? " graph" : "");
}

void run_case(const Case& c, std::uint64_t salt) {
  SCOPED_TRACE(describe(c));
  AttentionProblem pr;
  pr.dtype = c.dtype;
  pr.batch = 2, pr.seqlen_q = c.seqlen_q, pr.seqlen_k = c.seqlen_k;
  pr.heads = c.heads, pr.heads_kv = c.heads_kv, pr.head_dim = c.head_dim;
  pr.strided = c.strided;
  pr.column_pad = 8;  // rows of 16-byte chunks: the CUDA kernels' alignment
  pr.alibi = c.alibi;
  pr.options.causal = c.causal;
  pr.options.window_size = c.window;
  pr.options.softcap = c.softcap;
  if (c.dropout_p > 0) pr.options.dropout_p = c.dropout_p, pr.options.seed = salt, pr.options.offset = 3;
  std::mt19937_64 rng = test_rng(salt);
  pr.allocate(rng);

  const DeviceCopy q(pr.q), k(pr.k), v(pr.v), out(pr.out), lse(pr.lse);
  FlashAttnOptions options = pr.opts();
  std::unique_ptr<DeviceCopy> slopes;
  if (c.alibi != Alibi::none) {
    slopes = std::make_unique<DeviceCopy>(pr.alibi_slopes);
    options.alibi_slopes = slopes->view();
  }
  cudaStream_t stream;
  FLASHATTN_CUDA_CHECK(cudaStreamCreate(&stream));
  options.stream = stream;
  const FlashAttnOutputs outputs{.out = out.view(), .softmax_lse = lse.view()};
  void* workspace = nullptr;
  if (c.workspace) {
    options.workspace_bytes = flash_attn_workspace_bytes(q.view(), k.view(), v.view(), outputs, options);
    EXPECT_GT(options.workspace_bytes, 0) << "the case should split";
    FLASHATTN_CUDA_CHECK(cudaMalloc(&workspace, options.workspace_bytes));
    options.workspace = workspace;
  }
  if (c.graph) {
    // Global mode, the strictest (torch's default): the call must not
    // synchronise, allocate or read device memory on the host.
    cudaGraph_t graph;
    cudaGraphExec_t replay;
    FLASHATTN_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    flash_attn(q.view(), k.view(), v.view(), outputs, options);
    FLASHATTN_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    FLASHATTN_CUDA_CHECK(cudaGraphInstantiate(&replay, graph, 0));
    FLASHATTN_CUDA_CHECK(cudaGraphLaunch(replay, stream));
    // The second replay must write every output again.
    FLASHATTN_CUDA_CHECK(cudaMemsetAsync(out.data(), 0xFF, out.bytes(), stream));
    FLASHATTN_CUDA_CHECK(cudaMemsetAsync(lse.data(), 0xFF, lse.bytes(), stream));
    FLASHATTN_CUDA_CHECK(cudaGraphLaunch(replay, stream));
    FLASHATTN_CUDA_CHECK(cudaStreamSynchronize(stream));
    FLASHATTN_CUDA_CHECK(cudaGraphExecDestroy(replay));
    FLASHATTN_CUDA_CHECK(cudaGraphDestroy(graph));
  } else {
    flash_attn(q.view(), k.view(), v.view(), outputs, options);
    FLASHATTN_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  cudaFree(workspace);
  FLASHATTN_CUDA_CHECK(cudaStreamDestroy(stream));
  out.copy_back();
  lse.copy_back();

  const ForwardOracle oracle(pr.params());
  EXPECT_TRUE(oracle.check_out());
  EXPECT_TRUE(oracle.check_lse(std::numeric_limits<float>::infinity()));
  EXPECT_TRUE(pr.outputs_stay_in_view());
}

TEST(CudaForward, OracleOverTheGrid) {
  std::uint64_t salt = 0;
  for (DType dtype : {DType::bf16, DType::f16}) {
    for (std::int64_t d : {32, 64, 96, 128, 160, 192, 256}) {
      for (auto [sq, sk] :
           std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 1}, {17, 100}, {128, 128}, {200, 77}, {513, 1030}}) {
        run_case({.dtype = dtype, .head_dim = d, .seqlen_q = sq, .seqlen_k = sk, .heads = 4, .heads_kv = 4}, ++salt);
        run_case(
            {.dtype = dtype, .head_dim = d, .seqlen_q = sq, .seqlen_k = sk, .heads = 8, .heads_kv = 2, .causal = true},
            ++salt);
      }
    }
  }
}

TEST(CudaForward, MasksAndHooks) {
  std::uint64_t salt = 1000;
  for (DType dtype : {DType::bf16, DType::f16}) {
    for (std::int64_t d : {64, 128}) {
      run_case({.dtype = dtype,
                .head_dim = d,
                .seqlen_q = 300,
                .seqlen_k = 700,
                .heads = 4,
                .heads_kv = 1,
                .window = {64, 16}},
               ++salt);
      run_case(
          {.dtype = dtype, .head_dim = d, .seqlen_q = 700, .seqlen_k = 300, .heads = 4, .heads_kv = 4, .causal = true},
          ++salt);  // rows with nothing kept: lse +inf, out 0
      run_case({.dtype = dtype,
                .head_dim = d,
                .seqlen_q = 129,
                .seqlen_k = 257,
                .heads = 2,
                .heads_kv = 2,
                .softcap = 30.0f},
               ++salt);
      run_case({.dtype = dtype,
                .head_dim = d,
                .seqlen_q = 129,
                .seqlen_k = 257,
                .heads = 6,
                .heads_kv = 3,
                .causal = true,
                .alibi = Alibi::per_batch_head},
               ++salt);
      run_case(
          {.dtype = dtype, .head_dim = d, .seqlen_q = 100, .seqlen_k = 100, .heads = 4, .heads_kv = 2, .strided = true},
          ++salt);
    }
  }
}

// GPU dropout mask == CPU dropout mask: the reference applies the CPU's
// Philox mask, and one differing decision moves out past the oracle bound.
TEST(CudaForward, DropoutDrawsTheCpuMask) {
  std::uint64_t salt = 2000;
  for (DType dtype : {DType::bf16, DType::f16}) {
    for (std::int64_t d : {64, 128, 256}) {
      run_case({.dtype = dtype,
                .head_dim = d,
                .seqlen_q = 130,
                .seqlen_k = 250,
                .heads = 4,
                .heads_kv = 2,
                .dropout_p = 0.2f},
               ++salt);
      run_case({.dtype = dtype,
                .head_dim = d,
                .seqlen_q = 77,
                .seqlen_k = 77,
                .heads = 2,
                .heads_kv = 2,
                .causal = true,
                .dropout_p = 0.5f},
               ++salt);
    }
  }
}

// Decoding shapes with the workspace: split-KV and its merge against the reference.
TEST(CudaForward, SplitKvWithTheWorkspace) {
  std::uint64_t salt = 3000;
  for (std::int64_t d : {64, 128}) {
    for (std::int64_t sk : {1000, 20000}) {
      run_case({.dtype = DType::bf16,
                .head_dim = d,
                .seqlen_q = 1,
                .seqlen_k = sk,
                .heads = 8,
                .heads_kv = 2,
                .causal = true,
                .workspace = true},
               ++salt);
    }
  }
}

// The call captured into a CUDA graph (issue 6: no sync, no allocation, no
// host read of device memory) and replayed: a prefill, and a decode whose
// split-KV merge runs in the graph too.
TEST(CudaForward, ReplaysFromACudaGraph) {
  run_case({.dtype = DType::bf16,
            .head_dim = 128,
            .seqlen_q = 300,
            .seqlen_k = 500,
            .heads = 4,
            .heads_kv = 2,
            .causal = true,
            .graph = true},
           5001);
  run_case({.dtype = DType::bf16,
            .head_dim = 128,
            .seqlen_q = 1,
            .seqlen_k = 20000,
            .heads = 8,
            .heads_kv = 2,
            .causal = true,
            .workspace = true,
            .graph = true},
           5002);
}

// Head dims off the 16-byte grid and unaligned rows: element loads and stores.
TEST(CudaForward, AnyHeadDimAndUnalignedRows) {
  std::uint64_t salt = 4000;
  for (std::int64_t d : {7, 20, 40, 100, 250}) {
    run_case({.dtype = DType::bf16,
              .head_dim = d,
              .seqlen_q = 100,
              .seqlen_k = 150,
              .heads = 4,
              .heads_kv = 2,
              .causal = true},
             ++salt);
  }
}

}  // namespace
}  // namespace flashattn::testing
