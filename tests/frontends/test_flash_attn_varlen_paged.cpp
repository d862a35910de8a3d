// flash_attn_varlen with a block_table (prefill over a paged cache): the
// oracle rule on every ISA, and bitwise equality with the same keys stored
// contiguously, for page sizes 1, 3, 16 and 256.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "flashattn/error.hpp"
#include "flashattn/flashattn.hpp"
#include "frontends/flash_attn_params.hpp"
#include "support/attention_problem.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

constexpr float kPlusInf = std::numeric_limits<float>::infinity();

// The varlen k and v of `problem` scattered into pages of a shuffled pool,
// with the block table that finds them again.
struct PagedCopy {
  HostTensor k, v, block_table;

  PagedCopy(const AttentionProblem& problem, std::int64_t page_size, std::mt19937_64& rng) {
    const std::int64_t batch = problem.batch, hk = problem.heads_kv, d = problem.head_dim;
    std::int64_t max_pages = 1;
    for (const std::int32_t len : problem.lens_k) max_pages = std::max<std::int64_t>(max_pages, (len + page_size - 1) / page_size);
    const std::int64_t pool = batch * max_pages + 2;
    std::vector<std::int32_t> pages(pool);
    std::iota(pages.begin(), pages.end(), 0);
    std::shuffle(pages.begin(), pages.end(), rng);
    block_table = HostTensor(DType::i32, {batch, max_pages});
    for (std::int64_t i = 0; i < batch * max_pages; ++i) block_table.data<std::int32_t>()[i] = pages[i];
    k = HostTensor(problem.dtype, {pool, page_size, hk, d});
    v = HostTensor(problem.dtype, {pool, page_size, hk, d});
    k.randomize(rng);  // unused slots hold noise, not zeros
    v.randomize(rng);
    std::int64_t row = 0;  // varlen row of k / v
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t j = 0; j < problem.lens_k[b]; ++j, ++row) {
        const std::int64_t page = block_table.data<std::int32_t>()[b * max_pages + j / page_size];
        for (std::int64_t e = 0; e < hk * d; ++e) {
          k.set(((page * page_size + j % page_size) * hk) * d + e, problem.k.get(row * hk * d + e));
          v.set(((page * page_size + j % page_size) * hk) * d + e, problem.v.get(row * hk * d + e));
        }
      }
    }
  }
};

TEST(FlashAttnVarlenPaged, OracleRuleAndEqualToContiguous) {
  struct Case {
    DType dtype;
    std::vector<std::int32_t> lens_q, lens_k;
    bool causal;
    std::int64_t page_size;
  };
  const std::vector<Case> cases{
      {DType::f32, {5, 1, 17}, {40, 1, 300}, true, 1},
      {DType::bf16, {64, 3}, {64, 200}, true, 3},
      {DType::f16, {16, 0, 9}, {700, 5, 9}, false, 16},
      {DType::f32, {33, 7}, {513, 260}, true, 256},
  };
  std::uint64_t salt = 40;
  for (const Case& c : cases) {
    SCOPED_TRACE("page " + std::to_string(c.page_size));
    AttentionProblem problem;
    problem.dtype = c.dtype;
    problem.heads = 8;
    problem.heads_kv = 2;
    problem.head_dim = 40;
    problem.lens_q = c.lens_q;
    problem.lens_k = c.lens_k;
    problem.options.causal = c.causal;
    std::mt19937_64 rng = test_rng(++salt);
    problem.allocate(rng);
    const PagedCopy paged(problem, c.page_size, rng);
    problem.run();
    const HostTensor contiguous_out = problem.out.contiguous_copy(), contiguous_lse = problem.lse.contiguous_copy();

    const AttentionParams params = frontend::flash_attn_varlen_params(
        "test", problem.q, paged.k, paged.v, problem.cu_seqlens_q, problem.cu_seqlens_k, problem.seqlen_q,
        problem.seqlen_k, problem.outputs(), problem.opts(), {}, paged.block_table);
    const ForwardOracle oracle(params);
    for_each_isa([&](Isa isa) {
      SCOPED_TRACE(std::string(isa_name(isa)));
      problem.poison_outputs();
      flash_attn_varlen(problem.q, paged.k, paged.v, problem.cu_seqlens_q, problem.cu_seqlens_k, problem.seqlen_q,
                        problem.seqlen_k, problem.outputs(), problem.opts(), {}, paged.block_table);
      EXPECT_TRUE(oracle.check_out());
      EXPECT_TRUE(oracle.check_lse(kPlusInf));
      if (isa == supported_isas().back()) {  // the contiguous run used the best ISA
        EXPECT_TRUE(problem.out.same_bits(contiguous_out));
        EXPECT_TRUE(problem.lse.same_bits(contiguous_lse));
      }
    });
  }
}

// A block table entry the call would read outside the pool, or a sequence
// longer than its row of the table: Error naming block_table, out untouched.
TEST(FlashAttnVarlenPaged, BadBlockTableIsRejectedBeforeAnyWrite) {
  AttentionProblem problem;
  problem.heads = problem.heads_kv = 2;
  problem.head_dim = 8;
  problem.lens_q = {3, 2};
  problem.lens_k = {9, 4};
  std::mt19937_64 rng = test_rng(77);
  problem.allocate(rng);
  PagedCopy paged(problem, 4, rng);
  const HostTensor poisoned = problem.out.contiguous_copy();
  auto call = [&](const TensorView& table) {
    flash_attn_varlen(problem.q, paged.k, paged.v, problem.cu_seqlens_q, problem.cu_seqlens_k, problem.seqlen_q,
                      problem.seqlen_k, problem.outputs(), problem.opts(), {}, table);
  };
  auto expect_rejected = [&](const TensorView& table, const std::string& says) {
    try {
      call(table);
      ADD_FAILURE() << "no error; expected one saying " << says;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
    EXPECT_TRUE(problem.out.same_bits(poisoned));
  };
  std::int32_t* table = paged.block_table.data<std::int32_t>();
  const std::int64_t per_seq = paged.block_table.view().shape[1];
  const std::int32_t saved = table[per_seq + 0];
  table[per_seq + 0] = static_cast<std::int32_t>(paged.k.view().shape[0]);  // sequence 1, first page: used
  expect_rejected(paged.block_table, "block_table[1, 0] is");
  table[per_seq + 0] = -1;
  expect_rejected(paged.block_table, "block_table[1, 0] is -1");
  table[per_seq + 0] = saved;
  table[per_seq + per_seq - 1] = -5;  // sequence 1 needs one page of 4: its last entry is never read
  EXPECT_NO_THROW(call(paged.block_table));
  problem.poison_outputs();
  HostTensor narrow(DType::i32, {2, 2});  // sequence 0 needs 3 pages of 4
  expect_rejected(narrow, "expected at most 8");
}

}  // namespace
}  // namespace flashattn::testing
