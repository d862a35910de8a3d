// The CUDA forward and merge kernels, compiled for the host and run on the
// emulator (emu_runtime.hpp, cuda/mma.cuh here: PTX semantics written from
// the PTX ISA), against the fp64 reference by the oracle rule. This checks
// the kernels' index math, masks, hooks, pipeline order, varlen, paging,
// packing, dropout and split-KV on any machine; timing, the real
// instructions' numerics and races are left to scripts/gpu-check on a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "emulated_launch.hpp"
#include "support/attention_problem.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

using namespace flashattn::cuda;

// k and v of a fixed-length problem moved into shuffled pages of a pool
// (unused slots NaN), and params that read them through a block table.
struct PagedKv {
  HostTensor k_pool, v_pool, table;
  std::int64_t pages_per_seq = 0;

  PagedKv(const AttentionProblem& pr, std::int64_t page_size, std::mt19937_64& rng) {
    pages_per_seq = (pr.seqlen_k + page_size - 1) / page_size;
    const std::int64_t pages = pr.batch * pages_per_seq + 3, hk = pr.heads_kv, d = pr.head_dim;
    k_pool = HostTensor(pr.dtype, {pages, page_size, hk, d}, std::numeric_limits<double>::quiet_NaN());
    v_pool = HostTensor(pr.dtype, {pages, page_size, hk, d}, std::numeric_limits<double>::quiet_NaN());
    std::vector<std::int32_t> order(pages);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    table = HostTensor(DType::i32, {pr.batch, pages_per_seq});
    for (std::int64_t i = 0; i < pr.batch * pages_per_seq; ++i) table.data<std::int32_t>()[i] = order[i];
    for (std::int64_t b = 0; b < pr.batch; ++b)
      for (std::int64_t j = 0; j < pr.seqlen_k; ++j) {
        const std::int64_t page = order[b * pages_per_seq + j / page_size], slot = j % page_size;
        for (std::int64_t x = 0; x < hk * d; ++x) {
          k_pool.set((page * page_size + slot) * hk * d + x, pr.k.get((b * pr.seqlen_k + j) * hk * d + x));
          v_pool.set((page * page_size + slot) * hk * d + x, pr.v.get((b * pr.seqlen_k + j) * hk * d + x));
        }
      }
  }

  AttentionParams params(AttentionParams a) const {
    const TensorView& k = k_pool.view();
    a.k = k.data;
    a.v = v_pool.view().data;
    a.k_stride = a.v_stride = {k.stride[0], k.stride[1], k.stride[2]};
    a.block_table = table.data<std::int32_t>();
    a.block_table_stride = pages_per_seq;
    a.page_size = k.shape[1];
    a.bounds.num_pages = k.shape[0];
    a.bounds.pages_per_seq = pages_per_seq;
    return a;
  }
};

struct Case {
  std::string name;
  DType dtype = DType::bf16;
  std::int64_t head_dim = 64, seqlen_q = 16, seqlen_k = 16, heads = 4, heads_kv = 4;
  std::vector<std::int32_t> lens_q, lens_k, seqused_k;  // varlen when lens_q is set
  bool causal = false;
  WindowSize window{};
  float softcap = 0.0f;
  Alibi alibi = Alibi::none;
  float dropout_p = 0.0f;
  bool strided = false;
  std::int64_t num_splits = 1;                      // 0: the heuristic (132 multiprocessors)
  std::int64_t page_size = 0;                       // > 0: k and v read through a block table
  std::int64_t expect_pack = 0, expect_splits = 0;  // > 0: the plan must say so (the case tests that path)
};

void run_case(const Case& c, std::uint64_t salt) {
  SCOPED_TRACE(c.name);
  AttentionProblem pr;
  pr.dtype = c.dtype;
  pr.batch = 2, pr.seqlen_q = c.seqlen_q, pr.seqlen_k = c.seqlen_k;
  pr.heads = c.heads, pr.heads_kv = c.heads_kv, pr.head_dim = c.head_dim;
  pr.lens_q = c.lens_q, pr.lens_k = c.lens_k, pr.seqused_k = c.seqused_k;
  pr.strided = c.strided;
  pr.alibi = c.alibi;
  pr.options.causal = c.causal;
  pr.options.window_size = c.window;
  pr.options.softcap = c.softcap;
  if (c.dropout_p > 0) pr.options.dropout_p = c.dropout_p, pr.options.seed = 1234 + salt, pr.options.offset = 77;
  std::mt19937_64 rng = test_rng(salt);
  pr.allocate(rng);

  AttentionParams params = pr.params();
  params.num_splits = c.num_splits;
  std::unique_ptr<PagedKv> paged;
  if (c.page_size > 0) {
    paged = std::make_unique<PagedKv>(pr, c.page_size, rng);
    params = paged->params(params);
  }
  const ForwardPlan plan = emulated_forward(params);
  if (c.expect_pack > 0) EXPECT_EQ(plan.pack, c.expect_pack);
  if (c.expect_splits > 0) EXPECT_EQ(plan.splits, c.expect_splits);

  const ForwardOracle oracle(pr.params());
  EXPECT_TRUE(oracle.check_out());
  EXPECT_TRUE(oracle.check_lse(std::numeric_limits<float>::infinity()));
  EXPECT_TRUE(pr.outputs_stay_in_view());
}

std::vector<Case> cases() {
  return {
      {.name = "bf16 d64 70x90", .seqlen_q = 70, .seqlen_k = 90},
      {.name = "f16 d128 130x200 gqa causal",
       .dtype = DType::f16,
       .head_dim = 128,
       .seqlen_q = 130,
       .seqlen_k = 200,
       .heads = 4,
       .heads_kv = 2,
       .causal = true,
       .expect_pack = 1},
      {.name = "bf16 d32 decode, 4 heads packed per block",
       .head_dim = 32,
       .seqlen_q = 1,
       .seqlen_k = 300,
       .heads = 8,
       .heads_kv = 2,
       .expect_pack = 4},
      {.name = "bf16 d256 40x100 window, packed",
       .head_dim = 256,
       .seqlen_q = 40,
       .seqlen_k = 100,
       .heads = 2,
       .heads_kv = 1,
       .window = {20, 5},
       .expect_pack = 2},
      {.name = "f16 d192 33x65 softcap",
       .dtype = DType::f16,
       .head_dim = 192,
       .seqlen_q = 33,
       .seqlen_k = 65,
       .heads = 2,
       .heads_kv = 2,
       .softcap = 20.0f},
      {.name = "bf16 d96 65x129 causal alibi",
       .head_dim = 96,
       .seqlen_q = 65,
       .seqlen_k = 129,
       .heads = 6,
       .heads_kv = 3,
       .causal = true,
       .alibi = Alibi::per_batch_head},
      {.name = "bf16 d20 element loads", .head_dim = 20, .seqlen_q = 17, .seqlen_k = 50, .heads = 2, .heads_kv = 2},
      {.name = "f16 d7 causal, element stores",
       .dtype = DType::f16,
       .head_dim = 7,
       .seqlen_q = 9,
       .seqlen_k = 31,
       .heads = 3,
       .heads_kv = 1,
       .causal = true},
      {.name = "bf16 d64 strided rows off 16 bytes",
       .seqlen_q = 30,
       .seqlen_k = 40,
       .heads = 4,
       .heads_kv = 2,
       .strided = true},
      {.name = "bf16 d64 100x30 causal: rows with no key", .seqlen_q = 100, .seqlen_k = 30, .causal = true},
      {.name = "varlen causal seqused_k",
       .heads = 4,
       .heads_kv = 2,
       .lens_q = {5, 70, 1},
       .lens_k = {90, 64, 200},
       .seqused_k = {80, 64, 150},
       .causal = true},
      {.name = "varlen with an empty sequence", .lens_q = {0, 3, 40}, .lens_k = {10, 0, 77}},
      {.name = "bf16 d64 dropout", .seqlen_q = 40, .seqlen_k = 100, .dropout_p = 0.2f},
      {.name = "f16 d128 dropout causal gqa",
       .dtype = DType::f16,
       .head_dim = 128,
       .seqlen_q = 70,
       .seqlen_k = 70,
       .heads = 4,
       .heads_kv = 2,
       .causal = true,
       .dropout_p = 0.3f},
      {.name = "split-KV 5 chunks, decode",
       .head_dim = 128,
       .seqlen_q = 1,
       .seqlen_k = 1000,
       .heads = 8,
       .heads_kv = 2,
       .num_splits = 5,
       .expect_splits = 5},
      {.name = "split-KV by the heuristic",
       .seqlen_q = 1,
       .seqlen_k = 2000,
       .heads = 4,
       .heads_kv = 1,
       .num_splits = 0,
       .expect_splits = core::choose_num_splits(2, 2000 / 64 + 1, kH100Multiprocessors)},
      {.name = "split-KV varlen causal, more chunks than some rows' keys",
       .heads = 2,
       .heads_kv = 2,
       .lens_q = {3, 1},
       .lens_k = {500, 300},
       .causal = true,
       .num_splits = 7,
       .expect_splits = 7},
      {.name = "split-KV with dropout and alibi",
       .seqlen_q = 3,
       .seqlen_k = 400,
       .alibi = Alibi::per_head,
       .dropout_p = 0.1f,
       .num_splits = 3},
      {.name = "paged, page 1", .seqlen_q = 5, .seqlen_k = 150, .heads = 4, .heads_kv = 2, .page_size = 1},
      {.name = "paged, page 3, causal",
       .seqlen_q = 20,
       .seqlen_k = 150,
       .heads = 4,
       .heads_kv = 2,
       .causal = true,
       .page_size = 3},
      {.name = "paged, page 16, split",
       .seqlen_q = 1,
       .seqlen_k = 333,
       .heads = 8,
       .heads_kv = 2,
       .num_splits = 4,
       .page_size = 16},
      {.name = "paged, page 64, d128 f16",
       .dtype = DType::f16,
       .head_dim = 128,
       .seqlen_q = 65,
       .seqlen_k = 200,
       .page_size = 64},
  };
}

TEST(EmulatedCudaForward, MatchesTheReference) {
  std::uint64_t salt = 0;
  for (const Case& c : cases()) run_case(c, ++salt);
}

}  // namespace
}  // namespace flashattn::testing
