// The C ABI (flashattn/c_api.h) through the shared library libflashattn_c,
// as ctypes sees it: a call gives the same bits as the C++ API called on
// the same memory, a bad call returns a status and the flashattn::Error
// message (every byte of the outputs untouched), and the message buffer is
// never overrun. The library carries its own copy of flashattn; this test
// links the static one too, for the C++ side of each comparison.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "capi/c_api_from_c.h"
#include "flashattn/c_api.h"
#include "flashattn/error.hpp"
#include "flashattn/flash_attn.hpp"
#include "support/host_tensor.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

constexpr std::size_t kMessageBytes = 1024;

flashattn_tensor descriptor(const TensorView& t) {
  flashattn_tensor d{};
  d.data = t.data;
  d.dtype = static_cast<std::int32_t>(t.dtype);
  d.device_type = t.device.type == DeviceType::cuda ? FLASHATTN_DEVICE_CUDA : FLASHATTN_DEVICE_CPU;
  d.device_index = t.device.index;
  d.ndim = t.rank;
  for (int i = 0; i < t.rank; ++i) d.shape[i] = t.shape[i], d.stride[i] = t.stride[i];
  return d;
}

flashattn_flash_attn_options c_options(const FlashAttnOptions& o) {
  flashattn_flash_attn_options c = flashattn_flash_attn_default_options();
  c.has_softmax_scale = o.softmax_scale.has_value();
  c.softmax_scale = o.softmax_scale.value_or(0.0f);
  c.causal = o.causal;
  c.window_left = o.window_size.left;
  c.window_right = o.window_size.right;
  c.softcap = o.softcap;
  return c;
}

// Bad arguments need no data: the call fails before reading any.
flashattn_tensor bhsd(std::int64_t b, std::int64_t s, std::int64_t h, std::int64_t d) {
  return descriptor(TensorView::contiguous(nullptr, DType::f32, {b, s, h, d}));
}

struct Case {
  const char* name;
  DType dtype;
  FlashAttnOptions options;
  bool sdpa_layout = false;  // q, k, v viewed from (b, h, s, d) storage, as torch SDPA's inputs
};

class CApiMatchesCpp : public ::testing::TestWithParam<Case> {};

TEST_P(CApiMatchesCpp, BitForBit) {
  const Case& c = GetParam();
  auto rng = test_rng();
  FixedProblem p{
      .dtype = c.dtype, .batch = 2, .seqlen_q = 37, .seqlen_k = 53, .heads = 4, .heads_kv = 2, .head_dim = 40};
  p.allocate(rng);
  TensorView q = p.q, k = p.k, v = p.v;
  // (b, h, s, d) storage seen as (b, s, h, d): the strides torch hands over for q.transpose(1, 2).
  HostTensor q_bhsd(c.dtype, {2, 4, 37, 40}), k_bhsd(c.dtype, {2, 2, 53, 40}), v_bhsd(c.dtype, {2, 2, 53, 40});
  if (c.sdpa_layout) {
    auto as_bshd = [&](HostTensor& t) {
      t.randomize(rng);
      const TensorView& s = t.view();
      return TensorView::strided(s.data, s.dtype, {s.shape[0], s.shape[2], s.shape[1], s.shape[3]},
                                 {s.stride[0], s.stride[2], s.stride[1], s.stride[3]});
    };
    q = as_bshd(q_bhsd), k = as_bshd(k_bhsd), v = as_bshd(v_bhsd);
  }
  flash_attn(q, k, v, p.outputs(), c.options);
  const HostTensor cpp_out = p.out.contiguous_copy(), cpp_lse = p.lse.contiguous_copy();

  p.poison_outputs();
  const flashattn_tensor cq = descriptor(q), ck = descriptor(k), cv = descriptor(v), cout = descriptor(p.out),
                         clse = descriptor(p.lse);
  const flashattn_flash_attn_options options = c_options(c.options);
  char message[kMessageBytes] = "not cleared";
  ASSERT_EQ(flashattn_flash_attn(&cq, &ck, &cv, &cout, &clse, &options, message, sizeof message), FLASHATTN_OK)
      << message;
  EXPECT_STREQ(message, "");
  EXPECT_TRUE(p.out.same_bits(cpp_out));
  EXPECT_TRUE(p.lse.same_bits(cpp_lse));
}

INSTANTIATE_TEST_SUITE_P(
    Options, CApiMatchesCpp,
    ::testing::Values(
        Case{"f32_defaults", DType::f32, {}}, Case{"bf16_causal", DType::bf16, {.causal = true}},
        Case{"f16_window_softcap", DType::f16, {.window_size = {9, 4}, .softcap = 3.0f}},
        Case{"bf16_scale_causal_window", DType::bf16, {.softmax_scale = 0.3f, .causal = true, .window_size = {17, -1}}},
        Case{"bf16_sdpa_layout", DType::bf16, {.causal = true}, true}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(CApi, NullOptionsAreTheDefaults) {
  const flashattn_flash_attn_options d = flashattn_flash_attn_default_options();
  EXPECT_EQ(d.has_softmax_scale, 0);
  EXPECT_EQ(d.causal, 0);
  EXPECT_EQ(d.window_left, -1);
  EXPECT_EQ(d.window_right, -1);
  EXPECT_EQ(d.softcap, 0.0f);
  EXPECT_EQ(d.stream, nullptr);
  EXPECT_EQ(d.workspace, nullptr);
  EXPECT_EQ(d.workspace_bytes, 0);
  EXPECT_EQ(flashattn_c_api_version(), FLASHATTN_C_API_VERSION);

  auto rng = test_rng();
  FixedProblem p{.dtype = DType::bf16, .seqlen_q = 20, .seqlen_k = 33, .heads = 2, .heads_kv = 2, .head_dim = 24};
  p.allocate(rng);
  flash_attn(p.q, p.k, p.v, p.outputs());
  const HostTensor cpp_out = p.out.contiguous_copy();
  p.poison_outputs();
  const flashattn_tensor q = descriptor(p.q), k = descriptor(p.k), v = descriptor(p.v), out = descriptor(p.out);
  ASSERT_EQ(flashattn_flash_attn(&q, &k, &v, &out, nullptr, nullptr, nullptr, 0), FLASHATTN_OK);
  EXPECT_TRUE(p.out.same_bits(cpp_out));
}

TEST(CApi, WorkspaceBytesMatchCpp) {
  auto rng = test_rng();
  FixedProblem p{.seqlen_q = 1, .seqlen_k = 300, .heads = 2, .heads_kv = 1, .head_dim = 16};
  p.allocate(rng);
  const flashattn_tensor q = descriptor(p.q), k = descriptor(p.k), v = descriptor(p.v), out = descriptor(p.out);
  std::int64_t bytes = -7;
  char message[kMessageBytes];
  ASSERT_EQ(flashattn_flash_attn_workspace_bytes(&q, &k, &v, &out, nullptr, nullptr, &bytes, message, sizeof message),
            FLASHATTN_OK)
      << message;
  EXPECT_EQ(bytes, flash_attn_workspace_bytes(p.q, p.k, p.v, p.outputs()));

  EXPECT_EQ(flashattn_flash_attn_workspace_bytes(&q, &k, &v, &out, nullptr, nullptr, nullptr, message, sizeof message),
            FLASHATTN_ERROR);
  EXPECT_STREQ(message, "flashattn_flash_attn_workspace_bytes: workspace_bytes is NULL, expected a pointer");
}

// The C++ API's message for the same bad call, bit for bit.
std::string cpp_message(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out) {
  try {
    flash_attn(q, k, v, {.out = out});
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(CApi, BadCallReturnsTheErrorMessageAndWritesNothing) {
  auto rng = test_rng();
  FixedProblem p{.seqlen_q = 5, .seqlen_k = 7, .heads = 4, .heads_kv = 3, .head_dim = 8};  // 3 does not divide 4
  p.allocate(rng);
  const std::vector<unsigned char> out_before = p.out.bytes();
  const flashattn_tensor q = descriptor(p.q), k = descriptor(p.k), v = descriptor(p.v), out = descriptor(p.out);
  char message[kMessageBytes];
  ASSERT_EQ(flashattn_flash_attn(&q, &k, &v, &out, nullptr, nullptr, message, sizeof message), FLASHATTN_ERROR);
  EXPECT_EQ(std::string(message), cpp_message(p.q, p.k, p.v, p.out));
  EXPECT_NE(std::string(message).find("flash_attn: k has 3 heads"), std::string::npos) << message;
  EXPECT_EQ(p.out.bytes(), out_before);
}

TEST(CApi, NullTensorIsAbsent) {
  const TensorView q = TensorView::contiguous(nullptr, DType::f32, {1, 4, 2, 8});
  const flashattn_tensor cq = descriptor(q);
  char message[kMessageBytes];
  ASSERT_EQ(flashattn_flash_attn(&cq, nullptr, &cq, &cq, nullptr, nullptr, message, sizeof message), FLASHATTN_ERROR);
  EXPECT_EQ(std::string(message), cpp_message(q, {}, q, q));
}

TEST(CApi, DescriptorsTheCppTypesCannotHoldAreErrors) {
  char message[kMessageBytes];
  const flashattn_tensor good = bhsd(1, 4, 2, 8);
  flashattn_tensor bad = good;
  bad.ndim = 5;
  EXPECT_EQ(flashattn_flash_attn(&bad, &good, &good, &good, nullptr, nullptr, message, sizeof message),
            FLASHATTN_ERROR);
  EXPECT_STREQ(message, "flashattn_flash_attn: q.ndim is 5, expected 0 to 4");
  bad = good, bad.ndim = -1;
  EXPECT_EQ(flashattn_flash_attn(&good, &good, &good, &bad, nullptr, nullptr, message, sizeof message),
            FLASHATTN_ERROR);
  EXPECT_STREQ(message, "flashattn_flash_attn: out.ndim is -1, expected 0 to 4");
  bad = good, bad.dtype = 3;  // f64: a DType, but not one the C ABI takes
  EXPECT_EQ(flashattn_flash_attn(&good, &bad, &good, &good, nullptr, nullptr, message, sizeof message),
            FLASHATTN_ERROR);
  EXPECT_STREQ(message, "flashattn_flash_attn: k.dtype is 3, expected FLASHATTN_DTYPE_F32, _F16 or _BF16");
  bad = good, bad.device_type = 2;
  EXPECT_EQ(flashattn_flash_attn(&good, &good, &good, &good, &bad, nullptr, message, sizeof message), FLASHATTN_ERROR);
  EXPECT_STREQ(message, "flashattn_flash_attn: softmax_lse.device_type is 2, expected FLASHATTN_DEVICE_CPU or _CUDA");
}

TEST(CApi, ShortMessageBufferIsTruncatedAndTerminated) {
  const flashattn_tensor q = bhsd(1, 4, 2, 8), k = bhsd(1, 4, 3, 8);  // 3 does not divide 2
  std::string full(kMessageBytes, '\0');
  ASSERT_EQ(flashattn_flash_attn(&q, &k, &k, &q, nullptr, nullptr, full.data(), full.size()), FLASHATTN_ERROR);
  full.resize(std::strlen(full.c_str()));
  ASSERT_GT(full.size(), 10u);

  char buffer[16];
  for (std::size_t bytes : {std::size_t{1}, std::size_t{2}, std::size_t{8}}) {
    std::memset(buffer, '#', sizeof buffer);
    EXPECT_EQ(flashattn_flash_attn(&q, &k, &k, &q, nullptr, nullptr, buffer, bytes), FLASHATTN_ERROR);
    EXPECT_EQ(std::string(buffer), full.substr(0, bytes - 1)) << bytes << " bytes";
    for (std::size_t i = bytes; i < sizeof buffer; ++i) EXPECT_EQ(buffer[i], '#') << "byte " << i << " overwritten";
  }
  std::memset(buffer, '#', sizeof buffer);
  EXPECT_EQ(flashattn_flash_attn(&q, &k, &k, &q, nullptr, nullptr, buffer, 0), FLASHATTN_ERROR);
  EXPECT_EQ(buffer[0], '#');
  EXPECT_EQ(flashattn_flash_attn(&q, &k, &k, &q, nullptr, nullptr, nullptr, 0), FLASHATTN_ERROR);
}

TEST(CApi, UsableFromC) {
  char message[kMessageBytes];
  EXPECT_EQ(c_causal_first_row_is_v0(message, sizeof message), FLASHATTN_OK) << message;
  EXPECT_EQ(c_bad_heads(message, sizeof message), FLASHATTN_ERROR);
  EXPECT_NE(std::string(message).find("flash_attn: k has 3 heads"), std::string::npos) << message;
}

}  // namespace
}  // namespace flashattn::testing
