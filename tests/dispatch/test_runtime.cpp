// Process-wide settings (flashattn/runtime.hpp): ISA, backend, threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <string>

#include "flashattn/flashattn.hpp"
#include "support/attention_problem.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

class Runtime : public ::testing::Test {
 protected:
  void TearDown() override {
    set_isa(supported_isas().back());
    set_backend(Backend::cpu);
    set_num_threads(0);
  }
};

TEST_F(Runtime, SupportedIsasAreCompiledAndStartWithScalar) {
  const std::vector<Isa> compiled = compiled_isas(), supported = supported_isas();
  ASSERT_FALSE(supported.empty());
  EXPECT_EQ(supported.front(), Isa::scalar);
  for (Isa isa : supported) EXPECT_NE(std::find(compiled.begin(), compiled.end(), isa), compiled.end());
  EXPECT_TRUE(std::is_sorted(supported.begin(), supported.end()));
}

TEST_F(Runtime, SetIsaThenActiveIsaMatches) {
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    EXPECT_EQ(active_isa(), isa);
  }
}

TEST_F(Runtime, UnsupportedIsaIsRejected) {
  const std::vector<Isa> supported = supported_isas();
  bool tested = false;
  for (Isa isa : compiled_isas()) {
    if (std::find(supported.begin(), supported.end(), isa) != supported.end()) continue;
    const Isa before = active_isa();
    EXPECT_THROW(set_isa(isa), Error) << isa_name(isa);
    EXPECT_EQ(active_isa(), before);
    tested = true;
  }
  if (!tested) {
    // This CPU runs every compiled ISA: check the other way of naming a bad one.
    EXPECT_THROW(parse_isa("nosuch"), Error);
  }
}

TEST_F(Runtime, NamesRoundTrip) {
  for (Isa isa : compiled_isas()) EXPECT_EQ(parse_isa(isa_name(isa)), isa);
  for (Backend b : {Backend::cpu, Backend::reference}) EXPECT_EQ(parse_backend(backend_name(b)), b);
  EXPECT_EQ(isa_name(Isa::avx512), "avx512");
  EXPECT_EQ(backend_name(Backend::reference), "reference");
  EXPECT_THROW(parse_isa("nosuch"), Error);
  EXPECT_THROW(parse_isa("AVX2"), Error);
  EXPECT_THROW(parse_isa(""), Error);
  EXPECT_THROW(parse_backend("cuda"), Error);
}

TEST_F(Runtime, ThreadCount) {
  EXPECT_THROW(set_num_threads(-1), Error);
  set_num_threads(3);
  EXPECT_EQ(num_threads(), 3);
  set_num_threads(0);
  EXPECT_GE(num_threads(), 1);
}

TEST_F(Runtime, VersionIsMajorMinorPatch) {
  const std::string v = version();
  EXPECT_EQ(std::count(v.begin(), v.end(), '.'), 2) << v;
}

// The reference backend writes what the CPU kernels write, within the
// oracle: both are checked against the same fp64 reference.
TEST_F(Runtime, ReferenceBackendAgreesWithCpu) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    auto rng = test_rng(static_cast<std::uint64_t>(dtype));
    AttentionProblem pr;
    pr.dtype = dtype;
    pr.batch = 2;
    pr.seqlen_q = 50;  // > seqlen_k: empty rows under causal
    pr.seqlen_k = 33;
    pr.heads_kv = 2;
    pr.head_dim = 24;
    pr.probs = true;
    pr.alibi = Alibi::per_head;
    pr.options.causal = true;
    pr.options.softcap = 3.0f;
    pr.options.dropout_p = 0.2f;
    pr.options.seed = 11;
    pr.allocate(rng);
    const ForwardOracle oracle(pr.params());
    for (Backend backend : {Backend::reference, Backend::cpu}) {
      SCOPED_TRACE(std::string(backend_name(backend)) + " " + std::string(dtype_name(dtype)));
      set_backend(backend);
      EXPECT_EQ(active_backend(), backend);
      pr.poison_outputs();
      pr.run();
      EXPECT_TRUE(oracle.check_out());
      EXPECT_TRUE(oracle.check_lse(std::numeric_limits<float>::infinity()));
      EXPECT_TRUE(oracle.check_probs());
    }
  }
}

}  // namespace
}  // namespace flashattn::testing
