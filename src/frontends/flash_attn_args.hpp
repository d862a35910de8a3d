// The arguments every flash-attn entry point shares — q, k and v (views of
// kv / qkv when packed), the varlen arguments, the options and the
// per-row tensors (out, softmax_lse, dout, gradients) — with their checks and
// the params they fill. Used by the forward (flash_attn.cpp) and the
// backward (flash_attn_backward.cpp) so both validate alike.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "flashattn/flash_attn.hpp"
#include "flashattn/params.hpp"
#include "frontends/tensor_checks.hpp"

namespace flashattn::frontend {

inline constexpr std::int64_t kMaxHeadDim = 256;

// What the caller calls each argument. The packed forms pass views of one
// tensor as q, k and v, and varlen_qkvpacked one cu_seqlens for both sides:
// messages name the argument the caller actually gave.
struct ArgNames {
  std::string q = "q", k = "k", v = "v";
  std::string cu_seqlens_q = "cu_seqlens_q", cu_seqlens_k = "cu_seqlens_k";
  std::string max_seqlen_q = "max_seqlen_q", max_seqlen_k = "max_seqlen_k";
};

// The varlen arguments of flash_attn_varlen* (seqused_k optional).
struct VarlenArgs {
  TensorView cu_seqlens_q, cu_seqlens_k;  // int32 (batch + 1,)
  std::int64_t max_seqlen_q = 0, max_seqlen_k = 0;
  TensorView seqused_k;  // int32 (batch,)
  // int32 (batch, max_blocks_per_seq): k and v are pages (num_blocks, page_size, hk, d) (forward only)
  TensorView block_table;
};

// Sizes deduced from q, k and v. Varlen tensors have no batch dimension.
struct Problem {
  bool varlen = false;
  std::int64_t batch = 0, seqlen_q = 0, seqlen_k = 0;  // varlen: max_seqlen_q / max_seqlen_k
  std::int64_t rows_q = 0, rows_k = 0;                 // varlen: total rows of q and of k/v
  std::int64_t heads = 0, heads_kv = 0, head_dim = 0;
  Device device{};  // of q, k, v, the outputs and alibi_slopes
};

// Names in the packed forms: k and v are "kv"; q, k and v are "qkv" (and
// varlen_qkvpacked has one cu_seqlens and one max_seqlen).
ArgNames kvpacked_names();
ArgNames qkvpacked_names(bool varlen);

// A packed kv (parts = 2) or qkv (parts = 3): (b, s, parts, h, d), varlen
// (total, parts, h, d). Checks rank and the parts dimension (the views are
// checked as q, k, v later) and returns one view per part.
using PackedParts = std::array<TensorView, 3>;
PackedParts unpack(const ArgChecker& c, const TensorView& packed, const std::string& name, std::int64_t parts,
                   bool varlen);
// The views of a packed tensor already checked (a packed gradient).
PackedParts parts_of(const TensorView& packed, std::int64_t parts, bool varlen);

// Checks q, k and v, then (varlen != nullptr) cu_seqlens, max_seqlen and
// seqused_k, then the options. Reads cu_seqlens / seqused_k, writes nothing.
Problem check_problem(const ArgChecker& c, const ArgNames& n, const TensorView& q, const TensorView& k,
                      const TensorView& v, const VarlenArgs* varlen, const FlashAttnOptions& options);

// dropout, softmax_scale, softcap, window_size and alibi_slopes (against p's batch and heads).
void check_options(const ArgChecker& c, const FlashAttnOptions& options, const Problem& p);

// Why a call's tensors must be on the CPU (`what`: "the backward"): this
// build has no CUDA backend, or its CUDA backend does not run `what` yet.
std::string cpu_only_reason(const std::string& what);

// Calls that only the CPU backend runs so far: their tensors must be on the CPU.
void require_host_backend(const ArgChecker& c, const Problem& p, const std::string& what);

// Per-row tensors of a problem: q-like (b, sq, h, d) / varlen (total_q, h, d)
// (out, dout, dq), k-like (b, sk, hk, d) / (total_k, hk, d) (dk, dv), and
// softmax_lse (b, h, sq) / (h, total_q).
enum class RowLayout : std::uint8_t { q, k, lse };

// Rank, last dimension contiguous, dtype, device and the layout's exact shape;
// `output`: also no two elements at one address.
void check_rows(const ArgChecker& c, const TensorView& t, const std::string& name, const Problem& p, RowLayout layout,
                DType dtype, const Device& device, bool output);

// The forward's outputs (out, softmax_lse, attn_probs) for these options.
void check_forward_outputs(const ArgChecker& c, const FlashAttnOutputs& outputs, const FlashAttnOptions& options,
                           const Problem& p, const TensorView& q);

// The inputs a call reads besides q, k, v: alibi_slopes, cu_seqlens, seqused_k.
std::vector<NamedView> side_inputs(const ArgNames& n, const VarlenArgs* varlen, const FlashAttnOptions& options);

// Params of a checked problem: inputs, sizes, mask, score pipeline, dropout
// and varlen pointers. No outputs.
AttentionParams problem_params(const Problem& p, const TensorView& q, const TensorView& k, const TensorView& v,
                               const VarlenArgs* varlen, const FlashAttnOptions& options);

// softmax_lse, written by the forward and read by the backward.
void set_lse(AttentionParams& a, const Problem& p, const TensorView& softmax_lse);

// out, softmax_lse and attn_probs (when present / requested).
void set_forward_outputs(AttentionParams& a, const Problem& p, const FlashAttnOutputs& outputs,
                         const FlashAttnOptions& options);

BshdStrides bshd_strides(const TensorView& t, bool varlen);

}  // namespace flashattn::frontend
