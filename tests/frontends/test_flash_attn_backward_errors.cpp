// Bad input to every flash-attn backward entry point (and
// flash_attn_forward_backward): each case starts from a valid call, breaks
// one thing, and expects a flashattn::Error that starts with
// "<function>: <argument>" and says what was expected and what was given,
// with every buffer (inputs and gradients, poisoned with a sentinel)
// untouched. The checks shared with the forward (q, k, v, cu_seqlens,
// options) are exhaustive in test_flash_attn_errors.cpp; here a sample of
// them shows they run, and the backward's own arguments are exhaustive.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "flashattn/flash_attn.hpp"
#include "flashattn/flash_attn_backward.hpp"
#include "support/error_case.hpp"
#include "support/flash_attn_forms.hpp"
#include "support/host_tensor.hpp"
#include "support/oracle.hpp"

namespace flashattn::testing {
namespace {

// The six backward forms, then flash_attn_forward_backward (fixed, unpacked).
enum class Entry { fixed, kvpacked, qkvpacked, varlen, varlen_kvpacked, varlen_qkvpacked, forward_backward };

Form form_of(Entry e) { return e == Entry::forward_backward ? Form::fixed : static_cast<Form>(e); }
bool is_varlen(Entry e) { return is_varlen(form_of(e)); }
bool packs_kv(Entry e) { return packs_kv(form_of(e)); }
bool packs_qkv(Entry e) { return packs_qkv(form_of(e)); }

const char* function_name(Entry e) {
  constexpr const char* kNames[] = {
      "flash_attn_backward",        "flash_attn_kvpacked_backward",        "flash_attn_qkvpacked_backward",
      "flash_attn_varlen_backward", "flash_attn_varlen_kvpacked_backward", "flash_attn_varlen_qkvpacked_backward",
      "flash_attn_forward_backward"};
  return kNames[static_cast<int>(e)];
}

using Entries = std::vector<Entry>;
const Entries kBackward{Entry::fixed,  Entry::kvpacked,        Entry::qkvpacked,
                        Entry::varlen, Entry::varlen_kvpacked, Entry::varlen_qkvpacked};
const Entries kAll{Entry::fixed,           Entry::kvpacked,         Entry::qkvpacked,       Entry::varlen,
                   Entry::varlen_kvpacked, Entry::varlen_qkvpacked, Entry::forward_backward};
const Entries kVarlen{Entry::varlen, Entry::varlen_kvpacked, Entry::varlen_qkvpacked};
const Entries kUnpacked{Entry::fixed, Entry::varlen, Entry::forward_backward};  // dq, dk, dv separate tensors
const Entries kOwnK{Entry::fixed, Entry::kvpacked, Entry::varlen, Entry::varlen_kvpacked, Entry::forward_backward};
const Entries kOwnCuK{Entry::varlen, Entry::varlen_kvpacked};  // cu_seqlens_k and seqused_k

// Sizes of the valid problem.
struct Spec {
  DType dtype = DType::f32;
  std::int64_t batch = 2, seqlen_q = 5, seqlen_k = 7, heads = 4, heads_kv = 2, head_dim = 8;
  std::vector<std::int32_t> lens_q{5, 3}, lens_k{7, 4};  // varlen
  std::optional<DType> kv_dtype;                         // of k and v
};

// A valid call of one entry point with dropout, softcap, alibi and (varlen)
// seqused_k on. out, softmax_lse and dout are random (validation does not
// look at values); the gradients hold the sentinel. Owns every buffer.
class Case : public BufferPool {
 public:
  using EntryType = Entry;
  using SpecType = Spec;

  Case(Entry entry, const Spec& s) : entry_(entry) {
    auto rng = test_rng(static_cast<std::uint64_t>(entry));
    const bool varlen = is_varlen(entry);
    const std::vector<std::int32_t> lens_k = packs_qkv(entry) ? s.lens_q : s.lens_k;
    const std::int64_t rows_q = cumulative(s.lens_q).back(), rows_k = cumulative(lens_k).back();
    const std::int64_t b = varlen ? static_cast<std::int64_t>(s.lens_q.size()) : s.batch;
    const std::int64_t sq = varlen ? *std::max_element(s.lens_q.begin(), s.lens_q.end()) : s.seqlen_q;
    std::int64_t sk = varlen ? *std::max_element(lens_k.begin(), lens_k.end()) : s.seqlen_k;
    std::int64_t hk = s.heads_kv;
    if (packs_qkv(entry)) sk = sq, hk = s.heads;
    auto rows = [&](std::int64_t seqlen, std::int64_t total, std::int64_t heads) {
      return varlen ? std::vector<std::int64_t>{total, heads, s.head_dim}
                    : std::vector<std::int64_t>{b, seqlen, heads, s.head_dim};
    };
    const DType kv_dtype = s.kv_dtype.value_or(s.dtype);
    HostTensor q_t(s.dtype, rows(sq, rows_q, s.heads)), k_t(kv_dtype, rows(sk, rows_k, hk)),
        v_t(kv_dtype, rows(sk, rows_k, hk));
    for (HostTensor* t : {&q_t, &k_t, &v_t}) t->randomize(rng);
    const int dim = varlen ? 1 : 2;  // the packing dimension
    if (packs_qkv(entry)) {
      qkv = add(stack({&q_t, &k_t, &v_t}, dim));
      dqkv = sentinel(qkv);
    } else {
      q = add(std::move(q_t));
      dq = sentinel(q);
    }
    if (packs_kv(entry)) {
      kv = add(stack({&k_t, &v_t}, dim));
      dkv = sentinel(kv);
    } else if (!packs_qkv(entry)) {
      k = add(std::move(k_t));
      v = add(std::move(v_t));
      dk = sentinel(k);
      dv = sentinel(v);
    }
    dout = add_random(s.dtype, rows(sq, rows_q, s.heads), rng);
    out = add_random(s.dtype, rows(sq, rows_q, s.heads), rng);
    softmax_lse = add_random(
        DType::f32, varlen ? std::vector<std::int64_t>{s.heads, rows_q} : std::vector<std::int64_t>{b, s.heads, sq},
        rng);
    if (entry == Entry::forward_backward) {  // outputs there
      out = sentinel(out);
      softmax_lse = sentinel(softmax_lse);
    }
    HostTensor slopes(DType::f32, {s.heads});
    for (std::int64_t h = 0; h < s.heads; ++h) slopes.set(h, 0.25 * (h + 1));
    options = {.dropout_p = 0.25f, .softcap = 20.0f, .alibi_slopes = add(std::move(slopes)), .seed = 1234};
    if (varlen) {
      cu_seqlens_q = add(int_tensor(cumulative(s.lens_q)));
      cu_seqlens_k = add(int_tensor(cumulative(lens_k)));
      max_seqlen_q = sq;
      max_seqlen_k = sk;
      std::vector<std::int32_t> used(lens_k);
      for (auto& n : used) n = std::max(0, n - 1);
      seqused_k = add(int_tensor(used));
    }
  }

  // The view the entry point receives for `arg` ("dk" is dkv for kvpacked...).
  TensorView& view(const std::string& arg) {
    const std::string name = arg_name(form_of(entry_), arg);
    for (auto& [n, t] :
         std::initializer_list<std::pair<const char*, TensorView*>>{{"dout", &dout},
                                                                    {"q", &q},
                                                                    {"k", &k},
                                                                    {"v", &v},
                                                                    {"kv", &kv},
                                                                    {"qkv", &qkv},
                                                                    {"out", &out},
                                                                    {"softmax_lse", &softmax_lse},
                                                                    {"dq", &dq},
                                                                    {"dk", &dk},
                                                                    {"dv", &dv},
                                                                    {"dkv", &dkv},
                                                                    {"dqkv", &dqkv},
                                                                    {"alibi_slopes", &options.alibi_slopes},
                                                                    {"cu_seqlens_k", &cu_seqlens_k},
                                                                    {"seqused_k", &seqused_k}}) {
      if (name == n) return *t;
    }
    if (name.starts_with("cu_seqlens")) return cu_seqlens_q;
    ADD_FAILURE() << "no argument " << arg;
    return q;
  }
  // Replaces `arg` by a new buffer of the given dtype and shape.
  void replace(const std::string& arg, DType dtype, std::vector<std::int64_t> shape) {
    view(arg) = add(HostTensor(dtype, std::move(shape), kSentinel));
  }
  // Replaces `arg` by a same-shaped view with the same values, padded in
  // every dimension (last_stride 2: the last dimension strided too).
  void make_padded(const std::string& arg, std::int64_t last_stride = 1) {
    const TensorView old = view(arg);
    std::vector<std::int64_t> storage = shape_of(old);
    for (auto& n : storage) n += 1;
    storage.back() = old.shape[old.rank - 1] * last_stride;
    HostTensor padded = HostTensor::padded(old.dtype, shape_of(old), storage, kSentinel);
    for (std::int64_t i = 0; i < padded.numel(); ++i) padded.set(i, owner(old)->get(i));
    view(arg) = add(std::move(padded));
    view(arg).stride[old.rank - 1] = last_stride;
  }
  // Replaces `arg` by a view of the same shape stored with dims d0 and d1 swapped.
  void transpose(const std::string& arg, int d0, int d1) { view(arg) = transposed(view(arg), d0, d1); }
  // `arg` moves to the memory of `other`, `elements` elements in.
  void alias(const std::string& arg, const std::string& other, std::int64_t elements = 0) {
    const TensorView& o = view(other);
    view(arg).data = static_cast<char*>(o.data) + elements * dtype_size(o.dtype);
  }
  void set_int(const std::string& arg, std::int64_t index, std::int32_t value) {
    static_cast<std::int32_t*>(view(arg).data)[index] = value;
  }

  std::string prefix(const std::string& argument) const {
    return std::string(function_name(entry_)) + ": " + arg_name(form_of(entry_), argument);
  }

  void call() const {
    const FlashAttnGrads grads{dq, dk, dv};
    switch (entry_) {
      case Entry::fixed:
        return flash_attn_backward(dout, q, k, v, out, softmax_lse, grads, options);
      case Entry::kvpacked:
        return flash_attn_kvpacked_backward(dout, q, kv, out, softmax_lse, dq, dkv, options);
      case Entry::qkvpacked:
        return flash_attn_qkvpacked_backward(dout, qkv, out, softmax_lse, dqkv, options);
      case Entry::varlen:
        return flash_attn_varlen_backward(dout, q, k, v, out, softmax_lse, grads, cu_seqlens_q, cu_seqlens_k,
                                          max_seqlen_q, max_seqlen_k, options, seqused_k);
      case Entry::varlen_kvpacked:
        return flash_attn_varlen_kvpacked_backward(dout, q, kv, out, softmax_lse, dq, dkv, cu_seqlens_q, cu_seqlens_k,
                                                   max_seqlen_q, max_seqlen_k, options, seqused_k);
      case Entry::varlen_qkvpacked:
        return flash_attn_varlen_qkvpacked_backward(dout, qkv, out, softmax_lse, dqkv, cu_seqlens_q, max_seqlen_q,
                                                    options);
      case Entry::forward_backward:
        return flash_attn_forward_backward(q, k, v, dout, {out, softmax_lse, {}}, grads, options);
    }
  }

  // The tensors the call writes, by the caller's names.
  std::vector<std::string> outputs() const {
    if (packs_qkv(entry_)) return {"dqkv"};
    if (packs_kv(entry_)) return {"dq", "dkv"};
    if (entry_ == Entry::forward_backward) return {"out", "softmax_lse", "dq", "dk", "dv"};
    return {"dq", "dk", "dv"};
  }

  TensorView dout, q, k, v, kv, qkv, out, softmax_lse, dq, dk, dv, dkv, dqkv;
  TensorView cu_seqlens_q, cu_seqlens_k, seqused_k;
  std::int64_t max_seqlen_q = 0, max_seqlen_k = 0;
  FlashAttnOptions options;

 private:
  // A new buffer shaped like `like`, every element the sentinel.
  TensorView sentinel(const TensorView& like) { return add(HostTensor(like.dtype, shape_of(like), kSentinel)); }

  Entry entry_;
};

using Mutation = std::function<void(Case&)>;

// One bad-input case: TEST(FlashAttnBackwardErrors, name) running reject<Case>(...) (error_case.hpp).
#define REJECT(name, ...) \
  TEST(FlashAttnBackwardErrors, name) { reject<Case>(__VA_ARGS__); }

Mutation replaced(const std::string& arg, DType dtype, std::vector<std::int64_t> shape) {
  return [=](Case& c) { c.replace(arg, dtype, shape); };
}
Mutation retyped(const std::string& arg, DType dtype) {
  return [=](Case& c) { c.replace(arg, dtype, shape_of(c.view(arg))); };
}
Mutation one_longer(const std::string& arg, int dim) {
  return [arg, dim](Case& c) {
    std::vector<std::int64_t> shape = shape_of(c.view(arg));
    ++shape[dim];
    c.replace(arg, c.view(arg).dtype, shape);
  };
}
Mutation one_rank_less(const std::string& arg) {
  return [arg](Case& c) { merge_leading_dims(c.view(arg)); };
}
Mutation missing(const std::string& arg) {
  return [arg](Case& c) { c.view(arg) = {}; };
}
Mutation null_data(const std::string& arg) {
  return [arg](Case& c) { c.view(arg).data = nullptr; };
}
Mutation on_cuda(const std::string& arg) {
  return [arg](Case& c) { c.view(arg).device = {DeviceType::cuda, 0}; };
}
Mutation strided_last_dim(const std::string& arg) {
  return [arg](Case& c) { c.make_padded(arg, 2); };
}
Mutation aliased(const std::string& arg, const std::string& other, std::int64_t elements = 0) {
  return [=](Case& c) { c.alias(arg, other, elements); };
}
Mutation with(std::function<void(FlashAttnOptions&)> set) {
  return [set](Case& c) { set(c.options); };
}
Mutation int_set(const std::string& arg, std::int64_t index, std::int32_t value) {
  return [=](Case& c) { c.set_int(arg, index, value); };
}

void accept(Entry e, const Mutation& mutate = nullptr) {
  Case c(e, Spec{});
  if (mutate) mutate(c);
  ASSERT_NO_THROW(c.call());
  for (const std::string& name : c.outputs()) EXPECT_TRUE(c.written(c.view(name))) << name << " not written";
}

// ---------------------------------------------------------------- controls
TEST(FlashAttnBackwardErrors, ValidCallsAreAccepted) {
  for (Entry e : kAll) {
    SCOPED_TRACE(function_name(e));
    accept(e);
  }
}

TEST(FlashAttnBackwardErrors, StridedViewsOutsideTheLastDimAreAccepted) {
  for (Entry e : kAll) {
    SCOPED_TRACE(function_name(e));
    accept(e, [e](Case& c) {
      for (const char* arg : {"dout", "out", "softmax_lse", "dq", "dk", "dv"})
        if (!(packs_qkv(e) && std::string(arg) == "dk")) c.make_padded(arg);  // dk, dv: one dqkv
    });
  }
}

// Permuted gradients do not overlap: accepted, and every element written.
TEST(FlashAttnBackwardErrors, TransposedGradientsAreAccepted) {
  for (Entry e : kUnpacked) {
    SCOPED_TRACE(function_name(e));
    accept(e, [](Case& c) {
      c.transpose("dq", 0, 1);
      c.transpose("dv", 0, 1);
    });
  }
}

// ------------------------------------------------------------------- dout
REJECT(DoutIsRequired, kAll, missing("dout"), "dout", {"is missing"})
REJECT(NullDoutIsRejected, kAll, null_data("dout"), "dout", {"null data pointer"})
REJECT(DoutDtypeMustMatchQ, kAll, retyped("dout", DType::bf16), "dout", {"dtype bf16", "expected f32"})
REJECT(DoutShapeMustMatchOut, kAll, one_longer("dout", 1), "dout", {"has shape", "expected ("})
REJECT(DoutRankIsChecked, kAll, one_rank_less("dout"), "dout", {"has rank", "expected"})
REJECT(DoutLastDimMustBeContiguous, kAll, strided_last_dim("dout"), "dout",
       {"contiguous in its last dimension", "got 2"})
REJECT(DoutDeviceMustMatchQ, kAll, on_cuda("dout"), "dout", {"cuda:0", "expected cpu"})

// -------------------------------------------------------------------- out
REJECT(OutIsRequired, kAll, missing("out"), "out", {"is missing"})
REJECT(OutDtypeMustMatchQ, kAll, retyped("out", DType::f16), "out", {"dtype f16", "expected f32"})
REJECT(OutOfAnotherProblemSizeIsRejected, kAll, one_longer("out", 0), "out", {"has shape", "expected ("})
REJECT(OutLastDimMustBeContiguous, kAll, strided_last_dim("out"), "out", {"contiguous in its last dimension"})

// ------------------------------------------------------------ softmax_lse
REJECT(SoftmaxLseIsRequired, kBackward, missing("softmax_lse"), "softmax_lse", {"is missing"})
REJECT(SoftmaxLseMustBeF32, kAll, retyped("softmax_lse", DType::bf16), "softmax_lse", {"dtype bf16", "expected f32"})
REJECT(SoftmaxLseOfLongerSequencesIsRejected, {Entry::fixed, Entry::kvpacked, Entry::qkvpacked},
       one_longer("softmax_lse", 2), "softmax_lse", {"has shape (2, 4, 6)", "expected (2, 4, 5)"})
REJECT(SoftmaxLseOfOtherHeadsIsRejected, kAll, one_longer("softmax_lse", 0), "softmax_lse", {"has shape", "expected ("})
REJECT(VarlenSoftmaxLseOfMoreRowsIsRejected, kVarlen, one_longer("softmax_lse", 1), "softmax_lse",
       {"has shape (4, 9)", "expected (4, 8)"})
REJECT(VarlenSoftmaxLseInTheFixedLayoutIsRejected, kVarlen, replaced("softmax_lse", DType::f32, {2, 4, 5}),
       "softmax_lse", {"has rank 3", "expected 2"})
REJECT(SoftmaxLseLastDimMustBeContiguous, kAll, strided_last_dim("softmax_lse"), "softmax_lse",
       {"contiguous in its last dimension", "got 2"})
REJECT(SoftmaxLseDeviceMustMatchQ, kAll, on_cuda("softmax_lse"), "softmax_lse", {"cuda:0", "expected cpu"})

// -------------------------------------------------------------- gradients
REJECT(DqIsRequired, kAll, missing("dq"), "dq", {"is missing"})
REJECT(DkIsRequired, kAll, missing("dk"), "dk", {"is missing"})
REJECT(DvIsRequired, kUnpacked, missing("dv"), "dv", {"is missing"})
REJECT(NullDqIsRejected, kAll, null_data("dq"), "dq", {"null data pointer"})
REJECT(DqDtypeMustMatchQ, kAll, retyped("dq", DType::bf16), "dq", {"dtype bf16", "expected f32"})
REJECT(DkDtypeMustMatchK, kAll, retyped("dk", DType::f16), "dk", {"dtype f16", "expected f32"})
REJECT(DvDtypeMustMatchV, kUnpacked, retyped("dv", DType::f64), "dv", {"dtype f64", "expected f32"})
REJECT(DqShapeMustMatchQ, kAll, one_longer("dq", 1), "dq", {"has shape", "'s shape ("})
REJECT(DkShapeMustMatchK, kAll, one_longer("dk", 0), "dk", {"has shape", "expected"})
REJECT(DvShapeMustMatchV, kUnpacked, one_longer("dv", 2), "dv", {"has shape", "expected v's shape ("})
REJECT(DqRankIsChecked, kAll, one_rank_less("dq"), "dq", {"has rank", "expected"})
REJECT(DkLastDimMustBeContiguous, kAll, strided_last_dim("dk"), "dk", {"contiguous in its last dimension"})
REJECT(DvDeviceMustMatchV, kUnpacked, on_cuda("dv"), "dv", {"cuda:0", "expected cpu"})
// Threads would race on elements that share an address.
REJECT(DqWithZeroStrideIsRejected, kAll, [](Case& c) { c.view("dq").stride[1] = 0; }, "dq",
       {"overlapping elements", "expected every element at its own address"})

// ----------------------------------------------------------------- overlap
// The aliased view always stays inside the buffer it moves into, so the
// first overlap the checks meet is the one named.
REJECT(DqOverlappingQIsRejected, kAll, aliased("dq", "q"), "dq", {"overlaps", "in memory", "is read"})
REJECT(DkOverlappingKIsRejected, kOwnK, aliased("dk", "k"), "dk", {"overlaps", "expected separate memory"})
REJECT(DvOverlappingDoutIsRejected, kUnpacked, aliased("dv", "dout", 5), "dv",
       {"overlaps dout in memory", "dv is written while dout is read"})
REJECT(DqOverlappingOutIsRejected, kBackward, aliased("out", "dq"), "dq", {"overlaps out in memory"})
REJECT(DqOverlappingSoftmaxLseIsRejected, kBackward, aliased("softmax_lse", "dq", 1), "dq",
       {"overlaps softmax_lse in memory"})
REJECT(DkOverlappingAlibiSlopesIsRejected, kAll, aliased("alibi_slopes", "dk", 7), "dk",
       {"overlaps alibi_slopes in memory"})
// cu_seqlens_k moves into dv's buffer with its values (the checks read them).
REJECT(DvOverlappingCuSeqlensKIsRejected, {Entry::varlen},
       [](Case& c) {
         const auto* cu = static_cast<const std::int32_t*>(c.view("cu_seqlens_k").data);
         auto* in_dv = static_cast<std::int32_t*>(c.view("dv").data) + 4;
         std::copy(cu, cu + c.view("cu_seqlens_k").shape[0], in_dv);
         c.view("cu_seqlens_k").data = in_dv;
       },
       "dv", {"overlaps cu_seqlens_k in memory"})
REJECT(DkOverlappingDqIsRejected, kUnpacked, aliased("dk", "dq", 16), "dk",
       {"overlaps dq in memory", "both are written"})
REJECT(DkvOverlappingDqIsRejected, {Entry::kvpacked, Entry::varlen_kvpacked}, aliased("dq", "dk"), "dkv",
       {"overlaps dq in memory", "both are written"})
// forward_backward writes out and softmax_lse too.
REJECT(OutOverlappingQIsRejectedByForwardBackward, {Entry::forward_backward}, aliased("out", "q"), "out",
       {"overlaps q in memory", "out is written while q is read"})
REJECT(DqOverlappingOutIsRejectedByForwardBackward, {Entry::forward_backward}, aliased("out", "dq"), "dq",
       {"overlaps out in memory", "both are written"})
REJECT(SoftmaxLseOverlappingDoutIsRejectedByForwardBackward, {Entry::forward_backward},
       aliased("softmax_lse", "dout", 2), "softmax_lse", {"overlaps dout in memory"})

// ----------------------------------------------------------------- options
REJECT(ReturnAttnProbsIsRejectedByTheBackward, kBackward, with([](auto& o) { o.return_attn_probs = true; }),
       "return_attn_probs", {"is true", "expected false"})
REJECT(DropoutWithoutSeedIsRejected, kAll, with([](auto& o) { o.seed.reset(); }), "seed", {"missing", "dropout_p > 0"})
REJECT(DropoutOfOneIsRejected, kAll, with([](auto& o) { o.dropout_p = 1.0f; }), "dropout_p",
       {"expected a value in [0, 1)"})
REJECT(NegativeSoftcapIsRejected, kAll, with([](auto& o) { o.softcap = -1.0f; }), "softcap", {"expected a finite"})
REJECT(AlibiSlopesWithWrongHeadsIsRejected, kAll, replaced("alibi_slopes", DType::f32, {3}), "alibi_slopes",
       {"(3,)", "expected (4,)"})

// ------------------------------------------- q, k, v and varlen (shared checks)
REJECT(HeadDimAbove256IsRejected, kAll, Spec{.head_dim = 264}, "q", {"head dim 264", "expected 1 to 256"})
REJECT(KHeadsMustDivideQHeads, kOwnK, Spec{.heads_kv = 3}, "k", {"3 heads", "does not divide", "4 heads"})
REJECT(KDtypeMustMatchQ, kOwnK, Spec{.kv_dtype = DType::bf16}, "k", {"dtype bf16", "expected f32"})
REJECT(QDtypeF64IsRejected, kAll, Spec{.dtype = DType::f64}, "q", {"dtype f64", "expected f32, f16 or bf16"})
REJECT(QRankIsChecked, kAll, one_rank_less("q"), "q", {"has rank", "expected"})
REJECT(CuSeqlensQMustNotDecrease, kVarlen, int_set("cu_seqlens_q", 2, 4), "cu_seqlens_q",
       {"decreases at index 2", "5 -> 4"})
REJECT(SequsedKLargerThanItsSequenceIsRejected, kOwnCuK, int_set("seqused_k", 1, 5), "seqused_k",
       {"[1] is 5", "expected 0 to 4"})
REJECT(SequenceLongerThanMaxSeqlenQIsRejected, kVarlen, [](Case& c) { c.max_seqlen_q = 4; }, "max_seqlen_q",
       {"is 4", "expected at least 5"})

}  // namespace
}  // namespace flashattn::testing
