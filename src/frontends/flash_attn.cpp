// flash-attn front-end: checks flash_attn_func-style arguments and fills
// AttentionParams. Packed forms are views into the packed tensor.
#include "flashattn/flash_attn.hpp"

#include <cmath>
#include <limits>
#include <string>

#include "flashattn/params.hpp"
#include "frontends/flash_attn_params.hpp"
#include "frontends/tensor_checks.hpp"

namespace flashattn {
namespace {

using frontend::ArgChecker;
constexpr std::int64_t kMaxHeadDim = 256;

std::string str(std::int64_t x) { return std::to_string(x); }

// The view without dimension `dim`, at `index` along it (packed qkv / kv).
TensorView select(const TensorView& t, int dim, std::int64_t index) {
  TensorView r = t;
  r.data = static_cast<char*>(t.data) + index * t.stride[dim] * dtype_size(t.dtype);
  for (int d = dim; d + 1 < t.rank; ++d) {
    r.shape[d] = t.shape[d + 1];
    r.stride[d] = t.stride[d + 1];
  }
  r.rank = t.rank - 1;
  return r;
}

void check_packed(const ArgChecker& c, const TensorView& t, const std::string& name, int rank, int dim,
                  std::int64_t parts, const std::string& layout) {
  c.tensor(t, name, rank);
  c.require(t.shape[dim] == parts, name + " has shape " + t.shape_string() + ", expected " + layout);
}

// What the caller calls each argument. The packed forms pass views of one
// tensor as q, k and v, and varlen_qkvpacked one cu_seqlens for both sides:
// messages name the argument the caller actually gave.
struct ArgNames {
  std::string q = "q", k = "k", v = "v";
  std::string cu_seqlens_q = "cu_seqlens_q", cu_seqlens_k = "cu_seqlens_k";
  std::string max_seqlen_q = "max_seqlen_q", max_seqlen_k = "max_seqlen_k";
};

// Sizes deduced from q, k and v. Varlen tensors have no batch dimension.
struct Problem {
  bool varlen = false;
  std::int64_t batch = 0, seqlen_q = 0, seqlen_k = 0;
  std::int64_t rows_q = 0, rows_k = 0;  // varlen: total rows of q and of k/v
  std::int64_t heads = 0, heads_kv = 0, head_dim = 0;
};

void check_dtypes_and_devices(const ArgChecker& c, const ArgNames& n, const TensorView& q, const TensorView& k,
                              const TensorView& v) {
  c.require(q.dtype == DType::f32 || q.dtype == DType::f16 || q.dtype == DType::bf16,
            n.q + " has dtype " + std::string(dtype_name(q.dtype)) + ", expected f32, f16 or bf16");
  c.dtype(k, n.k, q.dtype);
  c.dtype(v, n.v, q.dtype);
  c.require(q.device.type == DeviceType::cpu, n.q + " is on " + frontend::device_string(q.device) +
                                                  ", expected cpu (this build has only the CPU backend)");
  c.device(k, n.k, q.device);
  c.device(v, n.v, q.device);
}

Problem check_qkv(const ArgChecker& c, const ArgNames& n, const TensorView& q, const TensorView& k, const TensorView& v,
                  bool varlen) {
  const int rank = varlen ? 3 : 4;
  c.rows_tensor(q, n.q, rank);
  c.rows_tensor(k, n.k, rank);
  c.rows_tensor(v, n.v, rank);
  check_dtypes_and_devices(c, n, q, k, v);

  Problem p;
  p.varlen = varlen;
  const int h = rank - 2, d = rank - 1;
  p.heads = q.shape[h];
  p.heads_kv = k.shape[h];
  p.head_dim = q.shape[d];
  c.require(p.head_dim >= 1 && p.head_dim <= kMaxHeadDim,
            n.q + " has head dim " + str(p.head_dim) + ", expected 1 to " + str(kMaxHeadDim));
  c.require(k.shape[d] == p.head_dim,
            n.k + " has head dim " + str(k.shape[d]) + ", expected " + n.q + "'s " + str(p.head_dim));
  c.require(v.shape[d] == p.head_dim,
            n.v + " has head dim " + str(v.shape[d]) + ", expected " + n.q + "'s " + str(p.head_dim));
  c.require(p.heads >= 1, n.q + " has " + str(p.heads) + " heads, expected at least 1");
  c.require(p.heads_kv >= 1, n.k + " has " + str(p.heads_kv) + " heads, expected at least 1");
  c.require(p.heads % p.heads_kv == 0,
            n.k + " has " + str(p.heads_kv) + " heads, which does not divide " + n.q + "'s " + str(p.heads) + " heads");
  c.require(v.shape[h] == p.heads_kv,
            n.v + " has " + str(v.shape[h]) + " heads, expected " + n.k + "'s " + str(p.heads_kv));
  if (varlen) {
    p.rows_q = q.shape[0];
    p.rows_k = k.shape[0];
    c.require(v.shape[0] == p.rows_k,
              n.v + " has " + str(v.shape[0]) + " rows, expected " + n.k + "'s " + str(p.rows_k));
    return p;
  }
  p.batch = q.shape[0];
  p.seqlen_q = q.shape[1];
  p.seqlen_k = k.shape[1];
  c.require(p.batch >= 1, n.q + " has batch size " + str(p.batch) + ", expected at least 1");
  c.require(k.shape[0] == p.batch,
            n.k + " has batch size " + str(k.shape[0]) + ", expected " + n.q + "'s " + str(p.batch));
  c.require(v.shape[0] == p.batch,
            n.v + " has batch size " + str(v.shape[0]) + ", expected " + n.q + "'s " + str(p.batch));
  c.require(p.seqlen_q >= 1, n.q + " has seqlen " + str(p.seqlen_q) + ", expected at least 1");
  c.require(p.seqlen_k >= 1, n.k + " has seqlen " + str(p.seqlen_k) + ", expected at least 1");
  c.require(v.shape[1] == p.seqlen_k,
            n.v + " has seqlen " + str(v.shape[1]) + ", expected " + n.k + "'s " + str(p.seqlen_k));
  return p;
}

// The kernels count (batch, head, query, key) quadruples in int64. Bounding
// the count also bounds seqlen_q + seqlen_k, which keeps the mask arithmetic
// (diagonal +- window) from overflowing on broadcast (stride 0) inputs.
void check_problem_size(const ArgChecker& c, const ArgNames& n, const Problem& p) {
  std::int64_t count = 0;
  if (p.varlen) {  // lengths are int32 (cu_seqlens); the work items are batch * heads * max_seqlen_q
    c.require(!__builtin_mul_overflow(p.batch, p.heads, &count) && !__builtin_mul_overflow(count, p.seqlen_q, &count),
              n.max_seqlen_q + " is " + str(p.seqlen_q) + ": batch * heads * " + n.max_seqlen_q + " = " + str(p.batch) +
                  " * " + str(p.heads) + " * " + str(p.seqlen_q) + " overflows int64");
    return;
  }
  c.require(!__builtin_mul_overflow(p.batch, p.heads, &count) && !__builtin_mul_overflow(count, p.seqlen_q, &count) &&
                !__builtin_mul_overflow(count, p.seqlen_k, &count),
            n.k + " has seqlen " + str(p.seqlen_k) + ": batch * heads * seqlen_q * seqlen_k = " + str(p.batch) + " * " +
                str(p.heads) + " * " + str(p.seqlen_q) + " * " + str(p.seqlen_k) + " overflows int64");
}

// cu_seqlens: int32 (batch + 1,) from 0, non-decreasing, within the `rows`
// of `rows_name`, every length <= max_seqlen.
void check_cu_seqlens(const ArgChecker& c, const TensorView& cu, const std::string& name, std::int64_t batch,
                      std::int64_t rows, const std::string& rows_name, std::int64_t max_seqlen,
                      const std::string& max_name) {
  c.tensor(cu, name, 1);
  c.dtype(cu, name, DType::i32);
  c.device(cu, name, Device{});
  c.require(cu.shape[0] == batch + 1,
            name + " has " + str(cu.shape[0]) + " entries, expected batch + 1 = " + str(batch + 1));
  c.require(cu.stride[0] == 1 || cu.shape[0] <= 1,
            name + " must be contiguous, expected stride 1, got " + str(cu.stride[0]));
  const auto* x = static_cast<const std::int32_t*>(cu.data);
  c.require(x[0] == 0, name + "[0] is " + str(x[0]) + ", expected 0");
  for (std::int64_t b = 0; b < batch; ++b) {  // messages built only on failure: this loop runs every call
    if (x[b + 1] < x[b]) {
      c.fail(name + " decreases at index " + str(b + 1) + ", expected non-decreasing offsets, got " + str(x[b]) +
             " -> " + str(x[b + 1]));
    }
    const std::int64_t length = std::int64_t{x[b + 1]} - x[b];
    if (length > max_seqlen) {
      c.fail(max_name + " is " + str(max_seqlen) + ", expected at least " + str(length) + ", the length of sequence " +
             str(b) + " in " + name);
    }
  }
  c.require(x[batch] <= rows, name + "[" + str(batch) + "] is " + str(x[batch]) + ", expected at most " + rows_name +
                                  "'s " + str(rows) + " rows");
}

void check_options(const ArgChecker& c, const FlashAttnOptions& o, const Problem& p) {
  c.require(o.dropout_p >= 0.0f && o.dropout_p < 1.0f,
            "dropout_p is " + std::to_string(o.dropout_p) + ", expected a value in [0, 1)");
  c.require(o.dropout_p == 0.0f || o.seed.has_value(), "seed is missing, required when dropout_p > 0");
  c.require(!o.softmax_scale || std::isfinite(*o.softmax_scale),
            "softmax_scale is " + std::to_string(o.softmax_scale.value_or(0)) + ", expected a finite value");
  c.require(std::isfinite(o.softcap) && o.softcap >= 0.0f,
            "softcap is " + std::to_string(o.softcap) + ", expected a finite value >= 0");
  c.require(o.window_size.left >= -1, "window_size.left is " + str(o.window_size.left) + ", expected >= -1");
  c.require(o.window_size.right >= -1, "window_size.right is " + str(o.window_size.right) + ", expected >= -1");
  if (o.alibi_slopes.present()) {
    const TensorView& a = o.alibi_slopes;
    c.require(a.rank == 1 || a.rank == 2, "alibi_slopes has rank " + str(a.rank) + ", expected (" + str(p.heads) +
                                              ",) or (" + str(p.batch) + ", " + str(p.heads) + ")");
    c.rows_tensor(a, "alibi_slopes", a.rank);
    c.dtype(a, "alibi_slopes", DType::f32);
    c.device(a, "alibi_slopes", Device{});
    if (a.rank == 1) {
      c.shape(a, "alibi_slopes", {p.heads});
    } else {
      c.shape(a, "alibi_slopes", {p.batch, p.heads});
    }
  }
}

void check_outputs(const ArgChecker& c, const FlashAttnOutputs& out, const FlashAttnOptions& o, const Problem& p,
                   const TensorView& q) {
  c.output_tensor(out.out, "out", q.rank);
  c.dtype(out.out, "out", q.dtype);
  c.device(out.out, "out", q.device);
  if (p.varlen) {
    c.shape(out.out, "out", {p.rows_q, p.heads, p.head_dim});
  } else {
    c.shape(out.out, "out", {p.batch, p.seqlen_q, p.heads, p.head_dim});
  }
  if (out.softmax_lse.present()) {
    const int rank = p.varlen ? 2 : 3;
    c.output_tensor(out.softmax_lse, "softmax_lse", rank);
    c.dtype(out.softmax_lse, "softmax_lse", DType::f32);
    c.device(out.softmax_lse, "softmax_lse", q.device);
    if (p.varlen) {
      c.shape(out.softmax_lse, "softmax_lse", {p.heads, p.rows_q});
    } else {
      c.shape(out.softmax_lse, "softmax_lse", {p.batch, p.heads, p.seqlen_q});
    }
  }
  c.require(!out.attn_probs.present() || o.return_attn_probs,
            "attn_probs is given, expected it only with return_attn_probs = true, got return_attn_probs = false");
  if (o.return_attn_probs) {
    c.require(out.attn_probs.present(), "attn_probs is missing, required by return_attn_probs");
    c.output_tensor(out.attn_probs, "attn_probs", 4);
    c.dtype(out.attn_probs, "attn_probs", DType::f32);
    c.device(out.attn_probs, "attn_probs", q.device);
    c.shape(out.attn_probs, "attn_probs", {p.batch, p.heads, p.seqlen_q, p.seqlen_k});
  }
}

BshdStrides bshd_strides(const TensorView& t, bool varlen) {
  return varlen ? BshdStrides{0, t.stride[0], t.stride[1]} : BshdStrides{t.stride[0], t.stride[1], t.stride[2]};
}

AttentionParams make_params(const Problem& p, const TensorView& q, const TensorView& k, const TensorView& v,
                            const FlashAttnOutputs& out, const FlashAttnOptions& o) {
  AttentionParams a;
  a.dtype = q.dtype;
  a.device = q.device;
  a.q = q.data;
  a.k = k.data;
  a.v = v.data;
  a.out = out.out.data;
  a.q_stride = bshd_strides(q, p.varlen);
  a.k_stride = bshd_strides(k, p.varlen);
  a.v_stride = bshd_strides(v, p.varlen);
  a.out_stride = bshd_strides(out.out, p.varlen);
  a.batch = p.batch;
  a.heads_q = p.heads;
  a.heads_kv = p.heads_kv;
  a.seqlen_q = p.seqlen_q;
  a.seqlen_k = p.seqlen_k;
  a.head_dim = a.head_dim_v = p.head_dim;
  a.softmax_scale = o.softmax_scale.value_or(1.0f / std::sqrt(static_cast<float>(p.head_dim)));
  a.softcap = o.softcap;
  // A window reaching past every sequence is unbounded (flash-attn's mha_fwd
  // does the same for left). Same mask, and the mask arithmetic stays small.
  const std::int64_t right = o.causal ? 0 : o.window_size.right;
  a.mask = MaskSpec{MaskAnchor::bottom_right, o.window_size.left >= p.seqlen_k ? -1 : o.window_size.left,
                    right >= p.seqlen_q ? -1 : right};
  if (o.alibi_slopes.present()) {
    a.alibi_slopes = static_cast<const float*>(o.alibi_slopes.data);
    a.alibi_batch_stride = o.alibi_slopes.rank == 2 ? o.alibi_slopes.stride[0] : 0;
  }
  a.dropout_p = o.dropout_p;
  a.seed = o.seed.value_or(0);
  a.offset = o.offset;
  if (out.softmax_lse.present()) {
    a.lse = static_cast<float*>(out.softmax_lse.data);
    a.lse_batch_stride = p.varlen ? 0 : out.softmax_lse.stride[0];
    a.lse_head_stride = out.softmax_lse.stride[p.varlen ? 0 : 1];
    a.lse_of_empty_row = std::numeric_limits<float>::infinity();  // flash-attn's convention
  }
  if (o.return_attn_probs) {
    a.probs = static_cast<float*>(out.attn_probs.data);
    a.probs_batch_stride = out.attn_probs.stride[0];
    a.probs_head_stride = out.attn_probs.stride[1];
    a.probs_row_stride = out.attn_probs.stride[2];
  }
  return a;
}

void check_seqused_k(const ArgChecker& c, const TensorView& seqused_k, const TensorView& cu_seqlens_k,
                     const std::string& cu_name, std::int64_t batch) {
  c.tensor(seqused_k, "seqused_k", 1);
  c.dtype(seqused_k, "seqused_k", DType::i32);
  c.device(seqused_k, "seqused_k", Device{});
  c.shape(seqused_k, "seqused_k", {batch});
  c.require(seqused_k.stride[0] == 1 || batch == 1,
            "seqused_k must be contiguous, expected stride 1, got " + str(seqused_k.stride[0]));
  const auto* used = static_cast<const std::int32_t*>(seqused_k.data);
  const auto* cu_k = static_cast<const std::int32_t*>(cu_seqlens_k.data);
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t length = std::int64_t{cu_k[b + 1]} - cu_k[b];
    if (used[b] < 0 || used[b] > length) {
      c.fail("seqused_k[" + str(b) + "] is " + str(used[b]) + ", expected 0 to " + str(length) +
             ", the length of sequence " + str(b) + " in " + cu_name);
    }
  }
}

AttentionParams fixed_params(const char* function, const ArgNames& n, const TensorView& q, const TensorView& k,
                             const TensorView& v, const FlashAttnOutputs& outputs, const FlashAttnOptions& options) {
  const ArgChecker c(function);
  const Problem p = check_qkv(c, n, q, k, v, false);
  check_problem_size(c, n, p);
  check_options(c, options, p);
  check_outputs(c, outputs, options, p, q);
  return make_params(p, q, k, v, outputs, options);
}

AttentionParams varlen_params(const char* function, const ArgNames& n, const TensorView& q, const TensorView& k,
                              const TensorView& v, const TensorView& cu_seqlens_q, const TensorView& cu_seqlens_k,
                              std::int64_t max_seqlen_q, std::int64_t max_seqlen_k, const FlashAttnOutputs& outputs,
                              const FlashAttnOptions& options, const TensorView& seqused_k) {
  const ArgChecker c(function);
  Problem p = check_qkv(c, n, q, k, v, true);
  constexpr std::int64_t kMaxSeqlen = std::numeric_limits<std::int32_t>::max();  // cu_seqlens are int32
  c.require(max_seqlen_q >= 0 && max_seqlen_q <= kMaxSeqlen,
            n.max_seqlen_q + " is " + str(max_seqlen_q) + ", expected 0 to " + str(kMaxSeqlen));
  c.require(max_seqlen_k >= 0 && max_seqlen_k <= kMaxSeqlen,
            n.max_seqlen_k + " is " + str(max_seqlen_k) + ", expected 0 to " + str(kMaxSeqlen));
  c.tensor(cu_seqlens_q, n.cu_seqlens_q, 1);
  p.batch = cu_seqlens_q.shape[0] - 1;
  c.require(p.batch >= 1, n.cu_seqlens_q + " has " + str(cu_seqlens_q.shape[0]) +
                              " entries, expected batch + 1 >= 2 (a leading 0 and one offset per sequence)");
  p.seqlen_q = max_seqlen_q;
  p.seqlen_k = max_seqlen_k;
  check_cu_seqlens(c, cu_seqlens_q, n.cu_seqlens_q, p.batch, p.rows_q, n.q, max_seqlen_q, n.max_seqlen_q);
  check_cu_seqlens(c, cu_seqlens_k, n.cu_seqlens_k, p.batch, p.rows_k, n.k, max_seqlen_k, n.max_seqlen_k);
  if (seqused_k.present()) check_seqused_k(c, seqused_k, cu_seqlens_k, n.cu_seqlens_k, p.batch);
  check_problem_size(c, n, p);
  check_options(c, options, p);
  check_outputs(c, outputs, options, p, q);
  AttentionParams a = make_params(p, q, k, v, outputs, options);
  a.cu_seqlens_q = static_cast<const std::int32_t*>(cu_seqlens_q.data);
  a.cu_seqlens_k = static_cast<const std::int32_t*>(cu_seqlens_k.data);
  if (seqused_k.present()) a.seqused_k = static_cast<const std::int32_t*>(seqused_k.data);
  return a;
}

}  // namespace

namespace frontend {

AttentionParams flash_attn_params(const char* function, const TensorView& q, const TensorView& k, const TensorView& v,
                                  const FlashAttnOutputs& outputs, const FlashAttnOptions& options) {
  return fixed_params(function, ArgNames{}, q, k, v, outputs, options);
}

AttentionParams flash_attn_varlen_params(const char* function, const TensorView& q, const TensorView& k,
                                         const TensorView& v, const TensorView& cu_seqlens_q,
                                         const TensorView& cu_seqlens_k, std::int64_t max_seqlen_q,
                                         std::int64_t max_seqlen_k, const FlashAttnOutputs& outputs,
                                         const FlashAttnOptions& options, const TensorView& seqused_k) {
  return varlen_params(function, ArgNames{}, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, outputs,
                       options, seqused_k);
}

}  // namespace frontend

void flash_attn(const TensorView& q, const TensorView& k, const TensorView& v, const FlashAttnOutputs& outputs,
                const FlashAttnOptions& options) {
  run_forward(frontend::flash_attn_params("flash_attn", q, k, v, outputs, options));
}

void flash_attn_kvpacked(const TensorView& q, const TensorView& kv, const FlashAttnOutputs& outputs,
                         const FlashAttnOptions& options) {
  const char* function = "flash_attn_kvpacked";
  check_packed(ArgChecker(function), kv, "kv", 5, 2, 2, "(b, sk, 2, hk, d)");
  const ArgNames names{.k = "kv", .v = "kv"};
  run_forward(fixed_params(function, names, q, select(kv, 2, 0), select(kv, 2, 1), outputs, options));
}

void flash_attn_qkvpacked(const TensorView& qkv, const FlashAttnOutputs& outputs, const FlashAttnOptions& options) {
  const char* function = "flash_attn_qkvpacked";
  check_packed(ArgChecker(function), qkv, "qkv", 5, 2, 3, "(b, s, 3, h, d)");
  const ArgNames names{.q = "qkv", .k = "qkv", .v = "qkv"};
  run_forward(fixed_params(function, names, select(qkv, 2, 0), select(qkv, 2, 1), select(qkv, 2, 2), outputs, options));
}

void flash_attn_varlen(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& cu_seqlens_q,
                       const TensorView& cu_seqlens_k, std::int64_t max_seqlen_q, std::int64_t max_seqlen_k,
                       const FlashAttnOutputs& outputs, const FlashAttnOptions& options, const TensorView& seqused_k) {
  run_forward(frontend::flash_attn_varlen_params("flash_attn_varlen", q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                                 max_seqlen_k, outputs, options, seqused_k));
}

void flash_attn_varlen_kvpacked(const TensorView& q, const TensorView& kv, const TensorView& cu_seqlens_q,
                                const TensorView& cu_seqlens_k, std::int64_t max_seqlen_q, std::int64_t max_seqlen_k,
                                const FlashAttnOutputs& outputs, const FlashAttnOptions& options,
                                const TensorView& seqused_k) {
  const char* function = "flash_attn_varlen_kvpacked";
  check_packed(ArgChecker(function), kv, "kv", 4, 1, 2, "(total_k, 2, hk, d)");
  const ArgNames names{.k = "kv", .v = "kv"};
  run_forward(varlen_params(function, names, q, select(kv, 1, 0), select(kv, 1, 1), cu_seqlens_q, cu_seqlens_k,
                            max_seqlen_q, max_seqlen_k, outputs, options, seqused_k));
}

void flash_attn_varlen_qkvpacked(const TensorView& qkv, const TensorView& cu_seqlens, std::int64_t max_seqlen,
                                 const FlashAttnOutputs& outputs, const FlashAttnOptions& options) {
  const char* function = "flash_attn_varlen_qkvpacked";
  check_packed(ArgChecker(function), qkv, "qkv", 4, 1, 3, "(total, 3, h, d)");
  const ArgNames names{.q = "qkv",
                       .k = "qkv",
                       .v = "qkv",
                       .cu_seqlens_q = "cu_seqlens",
                       .cu_seqlens_k = "cu_seqlens",
                       .max_seqlen_q = "max_seqlen",
                       .max_seqlen_k = "max_seqlen"};
  run_forward(varlen_params(function, names, select(qkv, 1, 0), select(qkv, 1, 1), select(qkv, 1, 2), cu_seqlens,
                            cu_seqlens, max_seqlen, max_seqlen, outputs, options, {}));
}

}  // namespace flashattn
