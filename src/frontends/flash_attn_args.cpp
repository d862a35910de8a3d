// Checks and params filling shared by the flash-attn forward and backward.
#include "frontends/flash_attn_args.hpp"

#include <cmath>
#include <limits>
#include <string>

#include "frontends/paged_checks.hpp"

namespace flashattn::frontend {
namespace {

std::string str(std::int64_t x) { return std::to_string(x); }

void check_dtypes_and_devices(const ArgChecker& c, const ArgNames& n, const TensorView& q, const TensorView& k,
                              const TensorView& v) {
  c.require(q.dtype == DType::f32 || q.dtype == DType::f16 || q.dtype == DType::bf16,
            [&] { return n.q + " has dtype " + std::string(dtype_name(q.dtype)) + ", expected f32, f16 or bf16"; });
  c.dtype(k, n.k, q.dtype);
  c.dtype(v, n.v, q.dtype);
#ifndef FLASHATTN_WITH_CUDA  // a CUDA build takes CUDA tensors; the dispatcher says what it cannot run
  c.require(q.device.type == DeviceType::cpu,
            [&] { return n.q + " is on " + device_string(q.device) + ", expected cpu (" + cpu_only_reason("this call") + ")"; });
#endif
  c.device(k, n.k, q.device);
  c.device(v, n.v, q.device);
}

// Varlen over a paged cache: k and v are pages (num_blocks, page_size, hk, d).
Problem check_qkv(const ArgChecker& c, const ArgNames& n, const TensorView& q, const TensorView& k, const TensorView& v,
                  bool varlen, bool paged) {
  const int rank = varlen ? 3 : 4, k_rank = paged ? 4 : rank;
  c.rows_tensor(q, n.q, rank);
  c.rows_tensor(k, n.k, k_rank);
  c.rows_tensor(v, n.v, k_rank);
  check_dtypes_and_devices(c, n, q, k, v);

  Problem p;
  p.varlen = varlen;
  p.device = q.device;
  const int h = rank - 2, d = rank - 1, kh = k_rank - 2;
  p.heads = q.shape[h];
  p.heads_kv = k.shape[kh];
  p.head_dim = q.shape[d];
  if (paged) {
    c.require(k.shape[1] >= 1, [&] {
      return n.k + " has page size " + str(k.shape[1]) +
             ", expected at least 1 (paged layout (num_blocks, page_size, hk, d))";
    });
    c.shape(v, n.v, {k.shape[0], k.shape[1], k.shape[2], k.shape[3]});
  }
  c.require(k.shape[k_rank - 1] == p.head_dim, [&] {
    return n.k + " has head dim " + str(k.shape[k_rank - 1]) + ", expected " + n.q + "'s " + str(p.head_dim);
  });
  c.require(p.head_dim >= 1 && p.head_dim <= kMaxHeadDim,
            [&] { return n.q + " has head dim " + str(p.head_dim) + ", expected 1 to " + str(kMaxHeadDim); });
  c.require(v.shape[k_rank - 1] == p.head_dim,
            [&] { return n.v + " has head dim " + str(v.shape[d]) + ", expected " + n.q + "'s " + str(p.head_dim); });
  c.require(p.heads >= 1, [&] { return n.q + " has " + str(p.heads) + " heads, expected at least 1"; });
  c.require(p.heads_kv >= 1, [&] { return n.k + " has " + str(p.heads_kv) + " heads, expected at least 1"; });
  c.require(p.heads % p.heads_kv == 0, [&] {
    return n.k + " has " + str(p.heads_kv) + " heads, which does not divide " + n.q + "'s " + str(p.heads) + " heads";
  });
  c.require(v.shape[kh] == p.heads_kv,
            [&] { return n.v + " has " + str(v.shape[kh]) + " heads, expected " + n.k + "'s " + str(p.heads_kv); });
  if (varlen) {
    p.rows_q = q.shape[0];
    p.rows_k = paged ? std::numeric_limits<std::int32_t>::max() : k.shape[0];  // paged: bounded by the table
    c.require(paged || v.shape[0] == p.rows_k,
              [&] { return n.v + " has " + str(v.shape[0]) + " rows, expected " + n.k + "'s " + str(p.rows_k); });
    return p;
  }
  p.batch = q.shape[0];
  p.seqlen_q = q.shape[1];
  p.seqlen_k = k.shape[1];
  c.require(p.batch >= 1, [&] { return n.q + " has batch size " + str(p.batch) + ", expected at least 1"; });
  c.require(k.shape[0] == p.batch,
            [&] { return n.k + " has batch size " + str(k.shape[0]) + ", expected " + n.q + "'s " + str(p.batch); });
  c.require(v.shape[0] == p.batch,
            [&] { return n.v + " has batch size " + str(v.shape[0]) + ", expected " + n.q + "'s " + str(p.batch); });
  c.require(p.seqlen_q >= 1, [&] { return n.q + " has seqlen " + str(p.seqlen_q) + ", expected at least 1"; });
  c.require(p.seqlen_k >= 1, [&] { return n.k + " has seqlen " + str(p.seqlen_k) + ", expected at least 1"; });
  c.require(v.shape[1] == p.seqlen_k,
            [&] { return n.v + " has seqlen " + str(v.shape[1]) + ", expected " + n.k + "'s " + str(p.seqlen_k); });
  return p;
}

// The kernels count (batch, head, query, key) quadruples in int64. Bounding
// the count also bounds seqlen_q + seqlen_k, which keeps the mask arithmetic
// (diagonal +- window) from overflowing on broadcast (stride 0) inputs.
void check_problem_size(const ArgChecker& c, const ArgNames& n, const Problem& p) {
  std::int64_t count = 0;
  if (p.varlen) {  // lengths are int32 (cu_seqlens); the work items are batch * heads * max_seqlen_q
    c.require(!__builtin_mul_overflow(p.batch, p.heads, &count) && !__builtin_mul_overflow(count, p.seqlen_q, &count),
              [&] {
                return n.max_seqlen_q + " is " + str(p.seqlen_q) + ": batch * heads * " + n.max_seqlen_q + " = " +
                       str(p.batch) + " * " + str(p.heads) + " * " + str(p.seqlen_q) + " overflows int64";
              });
    return;
  }
  c.require(!__builtin_mul_overflow(p.batch, p.heads, &count) && !__builtin_mul_overflow(count, p.seqlen_q, &count) &&
                !__builtin_mul_overflow(count, p.seqlen_k, &count),
            [&] {
              return n.k + " has seqlen " + str(p.seqlen_k) +
                     ": batch * heads * seqlen_q * seqlen_k = " + str(p.batch) + " * " + str(p.heads) + " * " +
                     str(p.seqlen_q) + " * " + str(p.seqlen_k) + " overflows int64";
            });
}

// cu_seqlens: int32 (batch + 1,) from 0, non-decreasing, within the `rows`
// of `rows_name`, every length <= max_seqlen.
// On a device, only the shape: the contents are clamped by the kernels (params.bounds).
void check_cu_seqlens(const ArgChecker& c, const TensorView& cu, const std::string& name, std::int64_t batch,
                      std::int64_t rows, const std::string& rows_name, std::int64_t max_seqlen,
                      const std::string& max_name, const Device& device) {
  c.tensor(cu, name, 1);
  c.dtype(cu, name, DType::i32);
  c.device(cu, name, device);
  c.require(cu.shape[0] == batch + 1,
            [&] { return name + " has " + str(cu.shape[0]) + " entries, expected batch + 1 = " + str(batch + 1); });
  c.require(cu.stride[0] == 1 || cu.shape[0] <= 1,
            [&] { return name + " must be contiguous, expected stride 1, got " + str(cu.stride[0]); });
  if (device.type != DeviceType::cpu) return;
  const auto* x = static_cast<const std::int32_t*>(cu.data);
  c.require(x[0] == 0, [&] { return name + "[0] is " + str(x[0]) + ", expected 0"; });
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
  c.require(x[batch] <= rows, [&] {
    return name + "[" + str(batch) + "] is " + str(x[batch]) + ", expected at most " + rows_name + "'s " + str(rows) +
           " rows";
  });
}

void check_seqused_k(const ArgChecker& c, const TensorView& seqused_k, const TensorView& cu_seqlens_k,
                     const std::string& cu_name, std::int64_t batch, const Device& device) {
  c.tensor(seqused_k, "seqused_k", 1);
  c.dtype(seqused_k, "seqused_k", DType::i32);
  c.device(seqused_k, "seqused_k", device);
  c.shape(seqused_k, "seqused_k", {batch});
  c.require(seqused_k.stride[0] == 1 || batch == 1,
            [&] { return "seqused_k must be contiguous, expected stride 1, got " + str(seqused_k.stride[0]); });
  if (device.type != DeviceType::cpu) return;
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

// Varlen: the batch comes from cu_seqlens_q, the sequence lengths from max_seqlen.
void check_varlen(const ArgChecker& c, const ArgNames& n, const VarlenArgs& a, Problem& p) {
  constexpr std::int64_t kMaxSeqlen = std::numeric_limits<std::int32_t>::max();  // cu_seqlens are int32
  c.require(a.max_seqlen_q >= 0 && a.max_seqlen_q <= kMaxSeqlen,
            [&] { return n.max_seqlen_q + " is " + str(a.max_seqlen_q) + ", expected 0 to " + str(kMaxSeqlen); });
  c.require(a.max_seqlen_k >= 0 && a.max_seqlen_k <= kMaxSeqlen,
            [&] { return n.max_seqlen_k + " is " + str(a.max_seqlen_k) + ", expected 0 to " + str(kMaxSeqlen); });
  c.tensor(a.cu_seqlens_q, n.cu_seqlens_q, 1);
  p.batch = a.cu_seqlens_q.shape[0] - 1;
  c.require(p.batch >= 1, [&] {
    return n.cu_seqlens_q + " has " + str(a.cu_seqlens_q.shape[0]) +
           " entries, expected batch + 1 >= 2 (a leading 0 and one offset per sequence)";
  });
  p.seqlen_q = a.max_seqlen_q;
  p.seqlen_k = a.max_seqlen_k;
  check_cu_seqlens(c, a.cu_seqlens_q, n.cu_seqlens_q, p.batch, p.rows_q, n.q, a.max_seqlen_q, n.max_seqlen_q,
                   p.device);
  check_cu_seqlens(c, a.cu_seqlens_k, n.cu_seqlens_k, p.batch, p.rows_k, n.k, a.max_seqlen_k, n.max_seqlen_k,
                   p.device);
  if (a.seqused_k.present()) check_seqused_k(c, a.seqused_k, a.cu_seqlens_k, n.cu_seqlens_k, p.batch, p.device);
}

// Varlen over pages: sequence b's keys are positions [0, cu_seqlens_k[b + 1] - cu_seqlens_k[b]) of its block-table row.
void check_paged_varlen(const ArgChecker& c, const ArgNames& n, const VarlenArgs& a, const TensorView& k,
                        const Problem& p) {
  std::vector<std::int64_t> lengths;  // read only on the host
  if (p.device.type == DeviceType::cpu) {
    const auto* cu_k = static_cast<const std::int32_t*>(a.cu_seqlens_k.data);
    for (std::int64_t b = 0; b < p.batch; ++b) lengths.push_back(std::int64_t{cu_k[b + 1]} - cu_k[b]);
  }
  check_block_table(c, a.block_table, p.batch, k.shape[0], k.shape[1], lengths, "the " + n.cu_seqlens_k + " length",
                    p.device);
}

// The view without dimension `dim`, at `index` along it.
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

}  // namespace

ArgNames kvpacked_names() { return {.k = "kv", .v = "kv"}; }

ArgNames qkvpacked_names(bool varlen) {
  ArgNames n{.q = "qkv", .k = "qkv", .v = "qkv"};
  if (varlen) n.cu_seqlens_q = n.cu_seqlens_k = "cu_seqlens", n.max_seqlen_q = n.max_seqlen_k = "max_seqlen";
  return n;
}

PackedParts parts_of(const TensorView& packed, std::int64_t parts, bool varlen) {
  const int dim = varlen ? 1 : 2;
  PackedParts views{};
  for (std::int64_t i = 0; i < parts; ++i) views[i] = select(packed, dim, i);
  return views;
}

PackedParts unpack(const ArgChecker& c, const TensorView& packed, const std::string& name, std::int64_t parts,
                   bool varlen) {
  const int rank = varlen ? 4 : 5, dim = varlen ? 1 : 2;
  c.tensor(packed, name, rank);
  const char* layout = parts == 2 ? (varlen ? "(total_k, 2, hk, d)" : "(b, sk, 2, hk, d)")
                                  : (varlen ? "(total, 3, h, d)" : "(b, s, 3, h, d)");
  c.require(packed.shape[dim] == parts,
            [&] { return name + " has shape " + packed.shape_string() + ", expected " + layout; });
  return parts_of(packed, parts, varlen);
}

void check_options(const ArgChecker& c, const FlashAttnOptions& o, const Problem& p) {
  c.require(o.dropout_p >= 0.0f && o.dropout_p < 1.0f,
            [&] { return "dropout_p is " + std::to_string(o.dropout_p) + ", expected a value in [0, 1)"; });
  c.require(o.dropout_p == 0.0f || o.seed.has_value(), [&] { return "seed is missing, required when dropout_p > 0"; });
  c.require(!o.softmax_scale || std::isfinite(*o.softmax_scale), [&] {
    return "softmax_scale is " + std::to_string(o.softmax_scale.value_or(0)) + ", expected a finite value";
  });
  c.require(std::isfinite(o.softcap) && o.softcap >= 0.0f,
            [&] { return "softcap is " + std::to_string(o.softcap) + ", expected a finite value >= 0"; });
  c.require(o.window_size.left >= -1,
            [&] { return "window_size.left is " + str(o.window_size.left) + ", expected >= -1"; });
  c.require(o.window_size.right >= -1,
            [&] { return "window_size.right is " + str(o.window_size.right) + ", expected >= -1"; });
  if (o.alibi_slopes.present()) {
    const TensorView& a = o.alibi_slopes;
    c.require(a.rank == 1 || a.rank == 2, [&] {
      return "alibi_slopes has rank " + str(a.rank) + ", expected (" + str(p.heads) + ",) or (" + str(p.batch) + ", " +
             str(p.heads) + ")";
    });
    c.rows_tensor(a, "alibi_slopes", a.rank);
    c.dtype(a, "alibi_slopes", DType::f32);
    c.device(a, "alibi_slopes", p.device);
    if (a.rank == 1) {
      c.shape(a, "alibi_slopes", {p.heads});
    } else {
      c.shape(a, "alibi_slopes", {p.batch, p.heads});
    }
  }
}

std::string cpu_only_reason([[maybe_unused]] const std::string& what) {
#ifdef FLASHATTN_WITH_CUDA
  return "the CUDA backend does not run " + what + " yet";
#else
  return "this build has only the CPU backend";
#endif
}

void require_host_backend(const ArgChecker& c, const Problem& p, const std::string& what) {
  c.require(p.device.type == DeviceType::cpu, [&] {
    return "the tensors are on " + device_string(p.device) + ", expected cpu: " + cpu_only_reason(what);
  });
}

Problem check_problem(const ArgChecker& c, const ArgNames& n, const TensorView& q, const TensorView& k,
                      const TensorView& v, const VarlenArgs* varlen, const FlashAttnOptions& options) {
  const bool paged = varlen && varlen->block_table.present();
  Problem p = check_qkv(c, n, q, k, v, varlen != nullptr, paged);
  if (varlen) check_varlen(c, n, *varlen, p);
  if (paged) check_paged_varlen(c, n, *varlen, k, p);
  check_problem_size(c, n, p);
  check_options(c, options, p);
  return p;
}

void check_rows(const ArgChecker& c, const TensorView& t, const std::string& name, const Problem& p, RowLayout layout,
                DType dtype, const Device& device, bool output) {
  const int rank = layout == RowLayout::lse ? (p.varlen ? 2 : 3) : (p.varlen ? 3 : 4);
  if (output) {
    c.output_tensor(t, name, rank);
  } else {
    c.rows_tensor(t, name, rank);
  }
  c.dtype(t, name, dtype);
  c.device(t, name, device);
  switch (layout) {
    case RowLayout::q:
      if (p.varlen) return c.shape(t, name, {p.rows_q, p.heads, p.head_dim});
      return c.shape(t, name, {p.batch, p.seqlen_q, p.heads, p.head_dim});
    case RowLayout::k:
      if (p.varlen) return c.shape(t, name, {p.rows_k, p.heads_kv, p.head_dim});
      return c.shape(t, name, {p.batch, p.seqlen_k, p.heads_kv, p.head_dim});
    case RowLayout::lse:
      if (p.varlen) return c.shape(t, name, {p.heads, p.rows_q});
      return c.shape(t, name, {p.batch, p.heads, p.seqlen_q});
  }
}

void check_forward_outputs(const ArgChecker& c, const FlashAttnOutputs& out, const FlashAttnOptions& o,
                           const Problem& p, const TensorView& q) {
  check_rows(c, out.out, "out", p, RowLayout::q, q.dtype, q.device, true);
  if (out.softmax_lse.present())
    check_rows(c, out.softmax_lse, "softmax_lse", p, RowLayout::lse, DType::f32, q.device, true);
  c.require(!out.attn_probs.present() || o.return_attn_probs, [&] {
    return "attn_probs is given, expected it only with return_attn_probs = true, got return_attn_probs = false";
  });
  if (o.return_attn_probs) {
    c.require(out.attn_probs.present(), [&] { return "attn_probs is missing, required by return_attn_probs"; });
    c.output_tensor(out.attn_probs, "attn_probs", 4);
    c.dtype(out.attn_probs, "attn_probs", DType::f32);
    c.device(out.attn_probs, "attn_probs", q.device);
    c.shape(out.attn_probs, "attn_probs", {p.batch, p.heads, p.seqlen_q, p.seqlen_k});
  }
}

std::vector<NamedView> side_inputs(const ArgNames& n, const VarlenArgs* varlen, const FlashAttnOptions& options) {
  std::vector<NamedView> inputs{{options.alibi_slopes, "alibi_slopes"}};
  if (varlen) {
    inputs.push_back({varlen->cu_seqlens_q, n.cu_seqlens_q});
    if (n.cu_seqlens_k != n.cu_seqlens_q) inputs.push_back({varlen->cu_seqlens_k, n.cu_seqlens_k});
    inputs.push_back({varlen->seqused_k, "seqused_k"});
    inputs.push_back({varlen->block_table, "block_table"});
  }
  return inputs;
}

BshdStrides bshd_strides(const TensorView& t, bool varlen) {
  return varlen ? BshdStrides{0, t.stride[0], t.stride[1]} : BshdStrides{t.stride[0], t.stride[1], t.stride[2]};
}

AttentionParams problem_params(const Problem& p, const TensorView& q, const TensorView& k, const TensorView& v,
                               const VarlenArgs* varlen, const FlashAttnOptions& o) {
  AttentionParams a;
  a.dtype = q.dtype;
  a.device = q.device;
  a.stream = o.stream;
  a.workspace = o.workspace;
  a.workspace_bytes = o.workspace_bytes;
  // CUDA: split-KV by the heuristic whenever a workspace is given (unsplit without one).
  if (q.device.type == DeviceType::cuda) a.num_splits = 0;
  a.q = q.data;
  a.k = k.data;
  a.v = v.data;
  a.q_stride = bshd_strides(q, p.varlen);
  const bool paged = varlen && varlen->block_table.present();
  a.k_stride = bshd_strides(k, p.varlen && !paged);
  a.v_stride = bshd_strides(v, p.varlen && !paged);
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
  a.deterministic = o.deterministic;
  if (varlen) {
    a.cu_seqlens_q = static_cast<const std::int32_t*>(varlen->cu_seqlens_q.data);
    a.cu_seqlens_k = static_cast<const std::int32_t*>(varlen->cu_seqlens_k.data);
    if (varlen->seqused_k.present()) a.seqused_k = static_cast<const std::int32_t*>(varlen->seqused_k.data);
    if (paged) set_block_table(a, varlen->block_table, k.shape[0], k.shape[1]);
    a.bounds.rows_q = p.rows_q;
    if (!paged) a.bounds.rows_k = p.rows_k;
  }
  return a;
}

void set_lse(AttentionParams& a, const Problem& p, const TensorView& softmax_lse) {
  a.lse = static_cast<float*>(softmax_lse.data);
  a.lse_batch_stride = p.varlen ? 0 : softmax_lse.stride[0];
  a.lse_head_stride = softmax_lse.stride[p.varlen ? 0 : 1];
  a.lse_of_empty_row = std::numeric_limits<float>::infinity();  // flash-attn's convention
}

void set_forward_outputs(AttentionParams& a, const Problem& p, const FlashAttnOutputs& out, const FlashAttnOptions& o) {
  a.out = out.out.data;
  a.out_stride = bshd_strides(out.out, p.varlen);
  if (out.softmax_lse.present()) set_lse(a, p, out.softmax_lse);
  if (o.return_attn_probs) {
    a.probs = static_cast<float*>(out.attn_probs.data);
    a.probs_batch_stride = out.attn_probs.stride[0];
    a.probs_head_stride = out.attn_probs.stride[1];
    a.probs_row_stride = out.attn_probs.stride[2];
  }
}

}  // namespace flashattn::frontend
