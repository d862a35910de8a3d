// Bad input to every flash-attn entry point: each case starts from a valid
// problem, breaks one thing, and expects a flashattn::Error that starts with
// "<function>: <argument>" and says what was expected and what was given,
// with every buffer (inputs and outputs, poisoned with a sentinel) untouched.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "flashattn/error.hpp"
#include "flashattn/flash_attn.hpp"
#include "support/error_case.hpp"
#include "support/flash_attn_forms.hpp"
#include "support/host_tensor.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

using Entry = Form;

const char* function_name(Entry e) {
  constexpr const char* kNames[] = {"flash_attn",        "flash_attn_kvpacked",        "flash_attn_qkvpacked",
                                    "flash_attn_varlen", "flash_attn_varlen_kvpacked", "flash_attn_varlen_qkvpacked"};
  return kNames[static_cast<int>(e)];
}

using Entries = std::vector<Entry>;
const Entries kAll{Entry::fixed,  Entry::kvpacked,        Entry::qkvpacked,
                   Entry::varlen, Entry::varlen_kvpacked, Entry::varlen_qkvpacked};
const Entries kFixed{Entry::fixed, Entry::kvpacked, Entry::qkvpacked};
const Entries kVarlen{Entry::varlen, Entry::varlen_kvpacked, Entry::varlen_qkvpacked};
const Entries kOwnK{Entry::fixed, Entry::kvpacked, Entry::varlen, Entry::varlen_kvpacked};  // k not taken from qkv
const Entries kOwnV{Entry::fixed, Entry::varlen};                                           // v a tensor of its own
const Entries kOwnCuK{Entry::varlen, Entry::varlen_kvpacked};  // cu_seqlens_k, max_seqlen_k and seqused_k

// Sizes of the valid problem; the optionals break one tensor only.
struct Spec {
  DType dtype = DType::f32;
  std::int64_t batch = 2, seqlen_q = 5, seqlen_k = 7, heads = 4, heads_kv = 2, head_dim = 8;
  std::vector<std::int32_t> lens_q{5, 3}, lens_k{7, 4};  // varlen
  std::optional<DType> k_dtype, v_dtype;
  std::optional<std::int64_t> k_batch, v_batch, v_len, v_heads, k_head_dim, v_head_dim;  // v_len: seqlen or rows
};

// A valid call of one entry point with every optional feature on (softmax_lse,
// attn_probs, alibi, dropout, softcap, seqused_k). Owns every buffer it points to.
class Case : public BufferPool {
 public:
  using EntryType = Entry;
  using SpecType = Spec;

  Case(Entry entry, const Spec& s) : entry_(entry) {
    auto rng = test_rng(static_cast<std::uint64_t>(entry));
    const bool varlen = is_varlen(entry);
    const std::int64_t rows_q = varlen ? cumulative(s.lens_q).back() : 0;
    const std::int64_t rows_k = varlen ? cumulative(s.lens_k).back() : 0;
    const std::int64_t b = varlen ? static_cast<std::int64_t>(s.lens_q.size()) : s.batch;
    const std::int64_t sq = varlen ? *std::max_element(s.lens_q.begin(), s.lens_q.end()) : s.seqlen_q;
    std::int64_t sk = varlen ? *std::max_element(s.lens_k.begin(), s.lens_k.end()) : s.seqlen_k;
    std::int64_t hk = s.heads_kv;
    if (packs_qkv(entry)) sk = sq, hk = s.heads;
    auto rows = [&](std::int64_t batch, std::int64_t seqlen, std::int64_t total, std::vector<std::int64_t> inner) {
      const std::vector<std::int64_t> outer = varlen ? std::vector<std::int64_t>{total} : std::vector{batch, seqlen};
      inner.insert(inner.begin(), outer.begin(), outer.end());
      return inner;
    };
    const DType k_dtype = s.k_dtype.value_or(s.dtype), v_dtype = s.v_dtype.value_or(s.dtype);
    const std::int64_t kd = s.k_head_dim.value_or(s.head_dim), kb = s.k_batch.value_or(b);
    if (packs_qkv(entry)) {
      qkv = add_random(s.dtype, rows(b, sq, rows_q, {3, s.heads, s.head_dim}), rng);
    } else {
      q = add_random(s.dtype, rows(b, sq, rows_q, {s.heads, s.head_dim}), rng);
    }
    if (packs_kv(entry)) kv = add_random(k_dtype, rows(kb, sk, rows_k, {2, hk, kd}), rng);
    if (entry == Entry::fixed || entry == Entry::varlen) {
      k = add_random(k_dtype, rows(kb, sk, rows_k, {hk, kd}), rng);
      const std::int64_t v_len = s.v_len.value_or(varlen ? rows_k : sk);
      v = add_random(
          v_dtype,
          rows(s.v_batch.value_or(b), v_len, v_len, {s.v_heads.value_or(hk), s.v_head_dim.value_or(s.head_dim)}), rng);
    }
    outputs.out = add(HostTensor(s.dtype, rows(b, sq, rows_q, {s.heads, s.head_dim}), kSentinel));
    outputs.softmax_lse = add(HostTensor(
        DType::f32, varlen ? std::vector<std::int64_t>{s.heads, rows_q} : std::vector<std::int64_t>{b, s.heads, sq},
        kSentinel));
    outputs.attn_probs = add(HostTensor(DType::f32, {b, s.heads, sq, sk}, kSentinel));
    HostTensor slopes(DType::f32, {s.heads});
    for (std::int64_t h = 0; h < s.heads; ++h) slopes.set(h, 0.25 * (h + 1));
    options = {.dropout_p = 0.25f,
               .softcap = 20.0f,
               .alibi_slopes = add(std::move(slopes)),
               .return_attn_probs = true,
               .seed = 1234};
    if (varlen) {
      cu_seqlens_q = add(int_tensor(cumulative(s.lens_q)));
      max_seqlen_q = sq;
      if (entry != Entry::varlen_qkvpacked) {
        cu_seqlens_k = add(int_tensor(cumulative(s.lens_k)));
        max_seqlen_k = sk;
        std::vector<std::int32_t> used(s.lens_k);
        for (auto& n : used) n = std::max(0, n - 1);
        seqused_k = add(int_tensor(used));
      }
    }
  }

  // The view the entry point receives for `arg` ("q" is qkv for qkvpacked...).
  TensorView& view(const std::string& arg) {
    const std::string name = arg_name(entry_, arg);
    if (name == "q") return q;
    if (name == "k") return k;
    if (name == "v") return v;
    if (name == "kv") return kv;
    if (name == "qkv") return qkv;
    if (name == "out") return outputs.out;
    if (name == "softmax_lse") return outputs.softmax_lse;
    if (name == "attn_probs") return outputs.attn_probs;
    if (name == "alibi_slopes") return options.alibi_slopes;
    if (name == "cu_seqlens_k") return cu_seqlens_k;
    if (name == "seqused_k") return seqused_k;
    if (name.starts_with("cu_seqlens")) return cu_seqlens_q;
    ADD_FAILURE() << "no argument " << arg;
    return q;
  }
  std::int64_t& max_seqlen(const std::string& arg) {
    return arg == "max_seqlen_k" && entry_ != Entry::varlen_qkvpacked ? max_seqlen_k : max_seqlen_q;
  }
  // Replaces `arg` by a new (poisoned) buffer of the given dtype and shape.
  void replace(const std::string& arg, DType dtype, std::vector<std::int64_t> shape) {
    view(arg) = add(HostTensor(dtype, std::move(shape), kSentinel));
  }
  // Replaces `arg` by a same-shaped view whose last dimension has stride 2.
  void make_last_dim_strided(const std::string& arg) {
    TensorView& t = view(arg);
    std::vector<std::int64_t> shape(t.shape.begin(), t.shape.begin() + t.rank), storage = shape;
    storage.back() *= 2;
    view(arg) = add(HostTensor::padded(t.dtype, shape, storage, kSentinel));
    view(arg).stride[t.rank - 1] = 2;
  }
  // Replaces `arg` by a view of the same shape stored with dims d0 and d1 swapped.
  void transpose(const std::string& arg, int d0, int d1) { view(arg) = transposed(view(arg), d0, d1); }
  void set_int(const std::string& arg, std::int64_t index, std::int32_t value) {
    static_cast<std::int32_t*>(view(arg).data)[index] = value;
  }

  std::string prefix(const std::string& argument) const {
    return std::string(function_name(entry_)) + ": " + arg_name(entry_, argument);
  }

  void call() const {
    switch (entry_) {
      case Entry::fixed:
        return flash_attn(q, k, v, outputs, options);
      case Entry::kvpacked:
        return flash_attn_kvpacked(q, kv, outputs, options);
      case Entry::qkvpacked:
        return flash_attn_qkvpacked(qkv, outputs, options);
      case Entry::varlen:
        return flash_attn_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, outputs, options,
                                 seqused_k);
      case Entry::varlen_kvpacked:
        return flash_attn_varlen_kvpacked(q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, outputs,
                                          options, seqused_k);
      case Entry::varlen_qkvpacked:
        return flash_attn_varlen_qkvpacked(qkv, cu_seqlens_q, max_seqlen_q, outputs, options);
    }
  }

  TensorView q, k, v, kv, qkv, cu_seqlens_q, cu_seqlens_k, seqused_k;
  std::int64_t max_seqlen_q = 0, max_seqlen_k = 0;
  FlashAttnOutputs outputs;
  FlashAttnOptions options;

 private:
  Entry entry_;
};

using Mutation = std::function<void(Case&)>;

Mutation replaced(const std::string& arg, DType dtype, std::vector<std::int64_t> shape) {
  return [=](Case& c) { c.replace(arg, dtype, shape); };
}
Mutation int_set(const std::string& arg, std::int64_t index, std::int32_t value) {
  return [=](Case& c) { c.set_int(arg, index, value); };
}
Mutation max_seqlen_is(const std::string& arg, std::int64_t value) {
  return [=](Case& c) { c.max_seqlen(arg) = value; };
}

// One bad-input case: TEST(FlashAttnErrors, name) running reject<Case>(...) (error_case.hpp).
#define REJECT(name, ...) \
  TEST(FlashAttnErrors, name) { reject<Case>(__VA_ARGS__); }

void accept(Entry e) {
  Case c(e, Spec{});
  ASSERT_NO_THROW(c.call());
  EXPECT_TRUE(c.written(c.outputs.out));
  EXPECT_TRUE(c.written(c.outputs.softmax_lse));
  EXPECT_TRUE(c.written(c.outputs.attn_probs));
}

// ---------------------------------------------------------------- controls
TEST(FlashAttnErrors, ValidProblemIsAcceptedByFlashAttn) { accept(Entry::fixed); }
TEST(FlashAttnErrors, ValidProblemIsAcceptedByFlashAttnKvpacked) { accept(Entry::kvpacked); }
TEST(FlashAttnErrors, ValidProblemIsAcceptedByFlashAttnQkvpacked) { accept(Entry::qkvpacked); }
TEST(FlashAttnErrors, ValidProblemIsAcceptedByFlashAttnVarlen) { accept(Entry::varlen); }
TEST(FlashAttnErrors, ValidProblemIsAcceptedByFlashAttnVarlenKvpacked) { accept(Entry::varlen_kvpacked); }
TEST(FlashAttnErrors, ValidProblemIsAcceptedByFlashAttnVarlenQkvpacked) { accept(Entry::varlen_qkvpacked); }

TEST(FlashAttnErrors, StridedViewsOutsideTheLastDimAreAccepted) {
  for (Entry e : kAll) {
    SCOPED_TRACE(function_name(e));
    Case c(e, Spec{});
    for (const char* arg : {"q", "k", "v", "out", "softmax_lse", "attn_probs"}) {
      const TensorView old = c.view(arg);
      std::vector<std::int64_t> storage = shape_of(old);
      storage[0] += 1, storage[old.rank - 1] += 3;
      c.view(arg) = c.add(HostTensor::padded(old.dtype, shape_of(old), storage, 0.5));
      ASSERT_NO_THROW(c.call()) << arg;
      c.view(arg) = old;
    }
  }
}

// Permuted outputs do not overlap: accepted, and every element written.
TEST(FlashAttnErrors, TransposedOutputsAreAccepted) {
  for (Entry e : kAll) {
    SCOPED_TRACE(function_name(e));
    Case c(e, Spec{});
    c.transpose("out", 0, 1);
    c.transpose("attn_probs", 1, 2);
    ASSERT_NO_THROW(c.call());
    EXPECT_TRUE(c.written(c.outputs.out));
    EXPECT_TRUE(c.written(c.outputs.attn_probs));
  }
}

// Windows wider than every sequence mean "unbounded", with no int64 overflow
// in the mask arithmetic (UBSan checks that).
TEST(FlashAttnErrors, HugeWindowBehavesAsUnbounded) {
  for (Entry e : kAll) {
    SCOPED_TRACE(function_name(e));
    Case c(e, Spec{});
    c.call();
    const auto unbounded = c.snapshot();
    c.options.window_size = {kInt64Max, kInt64Max};
    c.call();
    EXPECT_TRUE(c.snapshot() == unbounded);
  }
}

// ------------------------------------------------------------------ dtypes
REJECT(QDtypeF64IsRejected, kAll, {.dtype = DType::f64}, "q", {"dtype f64", "expected f32, f16 or bf16"})
REJECT(QDtypeI32IsRejected, kAll, {.dtype = DType::i32}, "q", {"dtype i32", "expected f32, f16 or bf16"})
REJECT(KDtypeMustMatchQ, kOwnK, {.k_dtype = DType::f16}, "k", {"dtype f16", "expected f32"})
REJECT(VDtypeMustMatchQ, kOwnV, {.v_dtype = DType::bf16}, "v", {"dtype bf16", "expected f32"})
REJECT(OutDtypeMustMatchQ, kAll, [](Case& c) { c.replace("out", DType::bf16, shape_of(c.view("out"))); }, "out",
       {"dtype bf16", "expected f32"})
REJECT(SoftmaxLseMustBeF32, kAll,
       [](Case& c) { c.replace("softmax_lse", DType::f16, shape_of(c.view("softmax_lse"))); }, "softmax_lse",
       {"dtype f16", "expected f32"})
REJECT(AttnProbsMustBeF32, kAll, [](Case& c) { c.replace("attn_probs", DType::f64, shape_of(c.view("attn_probs"))); },
       "attn_probs", {"dtype f64", "expected f32"})
REJECT(AlibiSlopesMustBeF32, kAll, replaced("alibi_slopes", DType::bf16, {4}), "alibi_slopes",
       {"dtype bf16", "expected f32"})
REJECT(CuSeqlensQMustBeI32, kVarlen, replaced("cu_seqlens_q", DType::f32, {3}), "cu_seqlens_q",
       {"dtype f32", "expected i32"})
REJECT(CuSeqlensKMustBeI32, kOwnCuK, replaced("cu_seqlens_k", DType::f32, {3}), "cu_seqlens_k",
       {"dtype f32", "expected i32"})
REJECT(SequsedKMustBeI32, kOwnCuK, replaced("seqused_k", DType::f32, {2}), "seqused_k", {"dtype f32", "expected i32"})

// ----------------------------------------------------------------- devices
Mutation on_cuda(const std::string& arg) {
  return [arg](Case& c) { c.view(arg).device = {DeviceType::cuda, 0}; };
}
#ifndef FLASHATTN_WITH_CUDA  // a CUDA build takes CUDA tensors: tests/cuda/test_cuda_dispatch.cpp
REJECT(CudaQIsRejectedByTheCpuBuild, kAll, on_cuda("q"), "q", {"cuda:0", "expected cpu", "only the CPU backend"})
#endif
REJECT(KDeviceMustMatchQ, kOwnK, on_cuda("k"), "k", {"cuda:0", "expected cpu"})
REJECT(VDeviceMustMatchQ, kOwnV, on_cuda("v"), "v", {"cuda:0", "expected cpu"})
REJECT(OutDeviceMustMatchQ, kAll, on_cuda("out"), "out", {"cuda:0", "expected cpu"})
REJECT(SoftmaxLseDeviceMustMatchQ, kAll, on_cuda("softmax_lse"), "softmax_lse", {"cuda:0", "expected cpu"})
REJECT(AttnProbsDeviceMustMatchQ, kAll, on_cuda("attn_probs"), "attn_probs", {"cuda:0", "expected cpu"})
REJECT(AlibiSlopesDeviceMustBeCpu, kAll, on_cuda("alibi_slopes"), "alibi_slopes", {"cuda:0", "expected cpu"})
REJECT(CuSeqlensQDeviceMustBeCpu, kVarlen, on_cuda("cu_seqlens_q"), "cu_seqlens_q", {"cuda:0", "expected cpu"})
REJECT(CuSeqlensKDeviceMustBeCpu, kOwnCuK, on_cuda("cu_seqlens_k"), "cu_seqlens_k", {"cuda:0", "expected cpu"})
REJECT(SequsedKDeviceMustBeCpu, kOwnCuK, on_cuda("seqused_k"), "seqused_k", {"cuda:0", "expected cpu"})

// ------------------------------------------------------------------- ranks
Mutation one_rank_less(const std::string& arg) {
  return [arg](Case& c) { merge_leading_dims(c.view(arg)); };
}
REJECT(QRankIsChecked, kAll, one_rank_less("q"), "q", {"has rank", "expected"})
REJECT(KRankIsChecked, kOwnK, one_rank_less("k"), "k", {"has rank", "expected"})
REJECT(VRankIsChecked, kOwnV, one_rank_less("v"), "v", {"has rank", "expected"})
REJECT(OutRankIsChecked, kAll, one_rank_less("out"), "out", {"has rank", "expected"})
REJECT(SoftmaxLseRankIsChecked, kAll, one_rank_less("softmax_lse"), "softmax_lse", {"has rank", "expected"})
REJECT(AttnProbsRankIsChecked, kAll, one_rank_less("attn_probs"), "attn_probs", {"has rank 3", "expected 4"})
REJECT(AlibiSlopesRankMustBe1Or2, kAll, replaced("alibi_slopes", DType::f32, {1, 1, 4}), "alibi_slopes",
       {"rank 3", "expected (4,) or (2, 4)"})
REJECT(CuSeqlensQRankMustBe1, kVarlen, replaced("cu_seqlens_q", DType::i32, {1, 3}), "cu_seqlens_q",
       {"rank 2", "expected 1"})
REJECT(RankAboveTheMaximumIsRejected, kAll, [](Case& c) { c.view("q").rank = 9; }, "q", {"rank 9", "expected"})
REJECT(NegativeRankIsRejected, kAll, [](Case& c) { c.view("out").rank = -2; }, "out", {"rank -2", "expected"})

// ---------------------------------------------------------- heads and dims
REJECT(HeadDimAbove256IsRejected, kAll, {.head_dim = 264}, "q", {"head dim 264", "expected 1 to 256"})
REJECT(HeadDimZeroIsRejected, kAll, {.head_dim = 0}, "q", {"head dim 0", "expected 1 to 256"})
REJECT(KHeadDimMustMatchQ, kOwnK, {.k_head_dim = 16}, "k", {"head dim 16", "expected q's 8"})
REJECT(VHeadDimMustMatchQ, kOwnV, {.v_head_dim = 4}, "v", {"head dim 4", "expected q's 8"})
REJECT(KHeadsMustDivideQHeads, kOwnK, {.heads_kv = 3}, "k", {"3 heads", "does not divide", "4 heads"})
REJECT(VHeadsMustMatchK, kOwnV, {.v_heads = 1}, "v", {"1 heads", "expected k's 2"})
REJECT(ZeroQHeadsIsRejected, kAll, {.heads = 0}, "q", {"0 heads", "expected at least 1"})
REJECT(ZeroKHeadsIsRejected, kOwnK, {.heads_kv = 0}, "k", {"0 heads", "expected at least 1"})

// ------------------------------------------------------------- contiguity
Mutation strided_last_dim(const std::string& arg) {
  return [arg](Case& c) { c.make_last_dim_strided(arg); };
}
REJECT(QLastDimMustBeContiguous, kAll, strided_last_dim("q"), "q",
       {"contiguous in its last dimension", "expected stride 1, got 2"})
REJECT(KLastDimMustBeContiguous, kOwnK, strided_last_dim("k"), "k", {"contiguous in its last dimension", "got 2"})
REJECT(VLastDimMustBeContiguous, kOwnV, strided_last_dim("v"), "v", {"contiguous in its last dimension", "got 2"})
REJECT(OutLastDimMustBeContiguous, kAll, strided_last_dim("out"), "out", {"contiguous in its last dimension", "got 2"})
REJECT(SoftmaxLseLastDimMustBeContiguous, kAll, strided_last_dim("softmax_lse"), "softmax_lse",
       {"contiguous in its last dimension", "got 2"})
REJECT(AttnProbsLastDimMustBeContiguous, kAll, strided_last_dim("attn_probs"), "attn_probs",
       {"contiguous in its last dimension", "got 2"})
REJECT(AlibiSlopesMustBeContiguous, kAll, strided_last_dim("alibi_slopes"), "alibi_slopes", {"contiguous", "got 2"})
REJECT(CuSeqlensQMustBeContiguous, kVarlen, strided_last_dim("cu_seqlens_q"), "cu_seqlens_q",
       {"contiguous", "expected stride 1, got 2"})
REJECT(CuSeqlensKMustBeContiguous, kOwnCuK, strided_last_dim("cu_seqlens_k"), "cu_seqlens_k",
       {"contiguous", "expected stride 1, got 2"})
REJECT(SequsedKMustBeContiguous, kOwnCuK, strided_last_dim("seqused_k"), "seqused_k",
       {"contiguous", "expected stride 1, got 2"})
// Outputs whose elements share addresses would have threads race on them.
REJECT(OutWithZeroStrideIsRejected, kAll, [](Case& c) { c.view("out").stride[0] = 0; }, "out",
       {"overlapping elements", "strides (0, "})
REJECT(SoftmaxLseWithOverlappingRowsIsRejected, kAll, [](Case& c) { c.view("softmax_lse").stride[0] = 1; },
       "softmax_lse", {"overlapping elements"})
REJECT(AttnProbsWithOverlappingRowsIsRejected, kAll, [](Case& c) { c.view("attn_probs").stride[2] = 3; }, "attn_probs",
       {"overlapping elements"})

// ---------------------------------------------------------- null / missing
Mutation null_data(const std::string& arg) {
  return [arg](Case& c) { c.view(arg).data = nullptr; };
}
REJECT(NullQIsRejected, kAll, null_data("q"), "q", {"null data pointer"})
REJECT(NullKIsRejected, kOwnK, null_data("k"), "k", {"null data pointer"})
REJECT(NullVIsRejected, kOwnV, null_data("v"), "v", {"null data pointer"})
REJECT(NullOutIsRejected, kAll, null_data("out"), "out", {"null data pointer"})
REJECT(MissingOutIsRejected, kAll, [](Case& c) { c.view("out") = {}; }, "out", {"is missing"})
REJECT(NullSoftmaxLseIsRejected, kAll, null_data("softmax_lse"), "softmax_lse", {"null data pointer"})
REJECT(NullAttnProbsIsRejected, kAll, null_data("attn_probs"), "attn_probs", {"null data pointer"})
REJECT(NullAlibiSlopesIsRejected, kAll, null_data("alibi_slopes"), "alibi_slopes", {"null data pointer"})
REJECT(NullCuSeqlensQIsRejected, kVarlen, null_data("cu_seqlens_q"), "cu_seqlens_q", {"null data pointer"})
REJECT(NullCuSeqlensKIsRejected, kOwnCuK, null_data("cu_seqlens_k"), "cu_seqlens_k", {"null data pointer"})
REJECT(MissingCuSeqlensKIsRejected, kOwnCuK, [](Case& c) { c.view("cu_seqlens_k") = {}; }, "cu_seqlens_k",
       {"is missing"})
REJECT(NullSequsedKIsRejected, kOwnCuK, null_data("seqused_k"), "seqused_k", {"null data pointer"})

// ------------------------------------------------------- sizes and batches
REJECT(BatchZeroIsRejected, kFixed, {.batch = 0}, "q", {"batch size 0", "at least 1"})
REJECT(VarlenBatchZeroIsRejected, kVarlen, [](Case& c) { c.view("cu_seqlens_q").shape[0] = 1; }, "cu_seqlens_q",
       {"1 entries", "expected batch + 1 >= 2"})
REJECT(SeqlenQZeroIsRejected, kFixed, {.seqlen_q = 0}, "q", {"seqlen 0", "at least 1"})
REJECT(SeqlenKZeroIsRejected, {Entry::fixed, Entry::kvpacked}, {.seqlen_k = 0}, "k", {"seqlen 0", "at least 1"})
REJECT(NegativeSizeIsRejected, kAll, [](Case& c) { c.view("q").shape[1] = -3; }, "q",
       {"size -3 in dimension 1", "expected a size >= 0"})
REJECT(NegativeStrideIsRejected, kAll, [](Case& c) { c.view("q").stride[0] = -1; }, "q",
       {"stride -1 in dimension 0", "expected"})
REJECT(KBatchMustMatchQ, {Entry::fixed, Entry::kvpacked}, {.k_batch = 3}, "k", {"batch size 3", "expected q's 2"})
REJECT(VBatchMustMatchQ, {Entry::fixed}, {.v_batch = 1}, "v", {"batch size 1", "q's 2"})
REJECT(VSeqlenMustMatchK, {Entry::fixed}, {.v_len = 6}, "v", {"seqlen 6", "k's 7"})
REJECT(VRowsMustMatchK, {Entry::varlen}, {.v_len = 10}, "v", {"10 rows", "k's 11"})

// ----------------------------------------------------------- int64 limits
REJECT(HugeStrideIsRejected, kAll, [](Case& c) { c.view("q").stride[0] = kInt64Max / 2; }, "q", {"int64"})
REJECT(HugeShapeIsRejected, kAll, [](Case& c) { c.view("q").shape[0] = std::int64_t{1} << 62; }, "q", {"int64"})
// The last element at offset INT64_MAX: one past it does not fit.
REJECT(SpanEndingAtInt64MaxIsRejected, kAll,
       [](Case& c) {
         TensorView& q = c.view("q");
         std::int64_t inner = 0;
         for (int d = 1; d < q.rank; ++d) inner += (q.shape[d] - 1) * q.stride[d];
         q.shape[0] = 2;
         q.stride[0] = kInt64Max - inner;
       },
       "q", {"spans more bytes than int64 can index"})
// Broadcast (stride 0) views take no memory but still count their elements.
REJECT(ElementCountOverflowIsRejected, kAll,
       [](Case& c) {
         TensorView& q = c.view("q");
         q.shape[0] = q.shape[1] = std::int64_t{1} << 32;
         q.stride[0] = q.stride[1] = 0;
       },
       "q", {"more elements than int64 can count"})
// batch * heads * seqlen_q * seqlen_k overflows although each tensor fits.
REJECT(ScorePairCountOverflowIsRejected, {Entry::fixed},
       [](Case& c) {
         for (const char* arg : {"k", "v"}) {
           TensorView& t = c.view(arg);
           t.shape[1] = 250'000'000'000'000'000;
           t.stride[0] = t.stride[1] = 0;
         }
       },
       "k", {"seqlen 250000000000000000", "overflows int64"})
REJECT(MaxSeqlenAboveInt32IsRejected, kVarlen, max_seqlen_is("max_seqlen_q", std::int64_t{1} << 31), "max_seqlen_q",
       {"2147483648", "expected 0 to 2147483647"})

// ------------------------------------------------------ cu_seqlens, max_seqlen
REJECT(NegativeMaxSeqlenQIsRejected, kVarlen, max_seqlen_is("max_seqlen_q", -1), "max_seqlen_q",
       {"is -1", "expected 0 to"})
REJECT(NegativeMaxSeqlenKIsRejected, kOwnCuK, max_seqlen_is("max_seqlen_k", -5), "max_seqlen_k",
       {"is -5", "expected 0 to"})
REJECT(SequenceLongerThanMaxSeqlenQIsRejected, kVarlen, max_seqlen_is("max_seqlen_q", 4), "max_seqlen_q",
       {"is 4", "expected at least 5", "sequence 0"})
REJECT(SequenceLongerThanMaxSeqlenKIsRejected, kOwnCuK, max_seqlen_is("max_seqlen_k", 6), "max_seqlen_k",
       {"is 6", "expected at least 7", "sequence 0"})
REJECT(CuSeqlensQMustStartAtZero, kVarlen, int_set("cu_seqlens_q", 0, 1), "cu_seqlens_q", {"[0] is 1", "expected 0"})
REJECT(CuSeqlensKMustStartAtZero, kOwnCuK, int_set("cu_seqlens_k", 0, -2), "cu_seqlens_k", {"[0] is -2", "expected 0"})
REJECT(CuSeqlensQMustNotDecrease, kVarlen, int_set("cu_seqlens_q", 2, 4), "cu_seqlens_q",
       {"decreases at index 2", "expected non-decreasing", "5 -> 4"})
REJECT(CuSeqlensKMustNotDecrease, kOwnCuK, int_set("cu_seqlens_k", 1, -1), "cu_seqlens_k",
       {"decreases at index 1", "0 -> -1"})
REJECT(CuSeqlensQPastTheTensorIsRejected, kVarlen, int_set("cu_seqlens_q", 2, 9), "cu_seqlens_q",
       {"[2] is 9", "expected at most", "8 rows"})
REJECT(CuSeqlensKPastTheTensorIsRejected, kOwnCuK, int_set("cu_seqlens_k", 2, 12), "cu_seqlens_k",
       {"[2] is 12", "expected at most", "11 rows"})
REJECT(CuSeqlensKOfWrongLengthIsRejected, kOwnCuK,
       [](Case& c) {
         c.view("cu_seqlens_k") = c.add(int_tensor({0, 3, 6, 9}));
       },
       "cu_seqlens_k", {"4 entries", "expected batch + 1 = 3"})

// --------------------------------------------------------------- seqused_k
REJECT(SequsedKLargerThanItsSequenceIsRejected, kOwnCuK, int_set("seqused_k", 1, 5), "seqused_k",
       {"[1] is 5", "expected 0 to 4"})
REJECT(NegativeSequsedKIsRejected, kOwnCuK, int_set("seqused_k", 0, -1), "seqused_k", {"[0] is -1", "expected 0 to 7"})
REJECT(SequsedKOfWrongShapeIsRejected, kOwnCuK, replaced("seqused_k", DType::i32, {3}), "seqused_k",
       {"(3,)", "expected (2,)"})

// -------------------------------------------------------------------- alibi
REJECT(AlibiSlopesWithWrongHeadsIsRejected, kAll, replaced("alibi_slopes", DType::f32, {3}), "alibi_slopes",
       {"(3,)", "expected (4,)"})
REJECT(AlibiSlopesWithWrongBatchIsRejected, kAll, replaced("alibi_slopes", DType::f32, {3, 4}), "alibi_slopes",
       {"(3, 4)", "expected (2, 4)"})

// ------------------------------------------------------------------ options
Mutation with(std::function<void(FlashAttnOptions&)> set) {
  return [set](Case& c) { set(c.options); };
}
REJECT(NegativeDropoutIsRejected, kAll, with([](auto& o) { o.dropout_p = -0.1f; }), "dropout_p",
       {"-0.1", "expected a value in [0, 1)"})
REJECT(DropoutOfOneIsRejected, kAll, with([](auto& o) { o.dropout_p = 1.0f; }), "dropout_p",
       {"1.0", "expected a value in [0, 1)"})
REJECT(NanDropoutIsRejected, kAll, with([](auto& o) { o.dropout_p = std::nanf(""); }), "dropout_p", {"nan", "[0, 1)"})
REJECT(DropoutWithoutSeedIsRejected, kAll, with([](auto& o) { o.seed.reset(); }), "seed", {"missing", "dropout_p > 0"})
REJECT(NanSoftmaxScaleIsRejected, kAll, with([](auto& o) { o.softmax_scale = std::nanf(""); }), "softmax_scale",
       {"nan", "expected a finite"})
REJECT(InfiniteSoftmaxScaleIsRejected, kAll, with([](auto& o) { o.softmax_scale = -INFINITY; }), "softmax_scale",
       {"-inf", "expected a finite"})
REJECT(NegativeSoftcapIsRejected, kAll, with([](auto& o) { o.softcap = -1.0f; }), "softcap",
       {"-1.0", "expected a finite value >= 0"})
REJECT(InfiniteSoftcapIsRejected, kAll, with([](auto& o) { o.softcap = INFINITY; }), "softcap",
       {"inf", "expected a finite value >= 0"})
REJECT(WindowLeftBelowMinusOneIsRejected, kAll, with([](auto& o) { o.window_size.left = -2; }), "window_size.left",
       {"-2", "expected >= -1"})
REJECT(WindowRightBelowMinusOneIsRejected, kAll, with([](auto& o) { o.window_size.right = -7; }), "window_size.right",
       {"-7", "expected >= -1"})

// ------------------------------------------------------------------ outputs
Mutation one_longer(const std::string& arg, int dim) {
  return [arg, dim](Case& c) {
    std::vector<std::int64_t> shape = shape_of(c.view(arg));
    ++shape[dim];
    c.replace(arg, c.view(arg).dtype, shape);
  };
}
REJECT(OutOfWrongShapeIsRejected, kAll, one_longer("out", 1), "out", {"has shape", "expected ("})
REJECT(SoftmaxLseOfWrongShapeIsRejected, kAll, one_longer("softmax_lse", 1), "softmax_lse", {"has shape", "expected ("})
REJECT(AttnProbsOfWrongShapeIsRejected, kAll, one_longer("attn_probs", 3), "attn_probs", {"has shape", "expected ("})
REJECT(AttnProbsWithoutReturnAttnProbsIsRejected, kAll, with([](auto& o) { o.return_attn_probs = false; }),
       "attn_probs", {"return_attn_probs = true", "got return_attn_probs = false"})
REJECT(ReturnAttnProbsWithoutAttnProbsIsRejected, kAll, [](Case& c) { c.view("attn_probs") = {}; }, "attn_probs",
       {"missing", "return_attn_probs"})

// ------------------------------------------------------------------- packing
Mutation packed_parts(const std::string& arg, std::int64_t parts) {
  return [arg, parts](Case& c) {
    std::vector<std::int64_t> shape = shape_of(c.view(arg));
    shape[shape.size() - 3] = parts;  // (..., parts, heads, head_dim)
    c.replace(arg, c.view(arg).dtype, shape);
  };
}
REJECT(KvPackedDimensionMustBeTwo, {Entry::kvpacked, Entry::varlen_kvpacked}, packed_parts("kv", 3), "kv",
       {"has shape", ", 3, 2, 8)", "expected", ", 2, hk, d)"})
REJECT(QkvPackedDimensionMustBeThree, {Entry::qkvpacked, Entry::varlen_qkvpacked}, packed_parts("qkv", 2), "qkv",
       {"has shape", ", 2, 4, 8)", "expected", ", 3, h, d)"})

}  // namespace
}  // namespace flashattn::testing
