#include <gtest/gtest.h>

#include "flashattn/flashattn.hpp"
#include "frontends/flash_attn_params.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {

TEST(ForwardSmoke, MatchesReferenceOnEveryIsa) {
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    for (bool causal : {false, true}) {
      auto rng = test_rng();
      FixedProblem pr;
      pr.dtype = dtype;
      pr.batch = 2;
      pr.seqlen_q = 113;
      pr.seqlen_k = 203;
      pr.heads_kv = 2;
      pr.head_dim = 59;
      pr.allocate(rng);
      FlashAttnOptions opt{.causal = causal};
      const AttentionParams params = frontend::flash_attn_params("t", pr.q, pr.k, pr.v, pr.outputs(), opt);
      ForwardOracle oracle(params);
      for (Isa isa : supported_isas()) {
        SCOPED_TRACE(std::string(isa_name(isa)) + " " + std::string(dtype_name(dtype)) + (causal ? " causal" : ""));
        set_isa(isa);
        pr.poison_outputs();
        flash_attn(pr.q, pr.k, pr.v, pr.outputs(), opt);
        EXPECT_TRUE(oracle.check_out());
        EXPECT_TRUE(oracle.check_lse(std::numeric_limits<float>::infinity()));
        std::cout << isa_name(isa) << " " << dtype_name(dtype) << " " << oracle.check_out().message() << "\n";
      }
    }
  }
}

}  // namespace flashattn::testing
