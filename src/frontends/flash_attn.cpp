// flash-attn front-end: checks flash_attn_func-style arguments and fills
// AttentionParams. Packed forms are views into the packed tensor.
#include "flashattn/flash_attn.hpp"

#include "flashattn/params.hpp"
#include "frontends/flash_attn_args.hpp"
#include "frontends/flash_attn_params.hpp"
#include "frontends/tensor_checks.hpp"

namespace flashattn {
namespace {

using frontend::ArgChecker;
using frontend::ArgNames;
using frontend::VarlenArgs;

AttentionParams forward_params(const char* function, const ArgNames& n, const TensorView& q, const TensorView& k,
                               const TensorView& v, const VarlenArgs* varlen, const FlashAttnOutputs& outputs,
                               const FlashAttnOptions& options) {
  const ArgChecker c(function);
  const frontend::Problem p = frontend::check_problem(c, n, q, k, v, varlen, options);
  frontend::check_forward_outputs(c, outputs, options, p, q);
  AttentionParams a = frontend::problem_params(p, q, k, v, varlen, options);
  frontend::set_forward_outputs(a, p, outputs, options);
  return a;
}

}  // namespace

namespace frontend {

AttentionParams flash_attn_params(const char* function, const TensorView& q, const TensorView& k, const TensorView& v,
                                  const FlashAttnOutputs& outputs, const FlashAttnOptions& options) {
  return forward_params(function, ArgNames{}, q, k, v, nullptr, outputs, options);
}

AttentionParams flash_attn_varlen_params(const char* function, const TensorView& q, const TensorView& k,
                                         const TensorView& v, const TensorView& cu_seqlens_q,
                                         const TensorView& cu_seqlens_k, std::int64_t max_seqlen_q,
                                         std::int64_t max_seqlen_k, const FlashAttnOutputs& outputs,
                                         const FlashAttnOptions& options, const TensorView& seqused_k,
                                         const TensorView& block_table) {
  const VarlenArgs varlen{cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_k, block_table};
  return forward_params(function, ArgNames{}, q, k, v, &varlen, outputs, options);
}

}  // namespace frontend

void flash_attn(const TensorView& q, const TensorView& k, const TensorView& v, const FlashAttnOutputs& outputs,
                const FlashAttnOptions& options) {
  run_forward(frontend::flash_attn_params("flash_attn", q, k, v, outputs, options));
}

std::int64_t flash_attn_workspace_bytes(const TensorView& q, const TensorView& k, const TensorView& v,
                                        const FlashAttnOutputs& outputs, const FlashAttnOptions& options) {
  return forward_workspace_bytes(frontend::flash_attn_params("flash_attn", q, k, v, outputs, options));
}

std::int64_t flash_attn_varlen_workspace_bytes(const TensorView& q, const TensorView& k, const TensorView& v,
                                               const TensorView& cu_seqlens_q, const TensorView& cu_seqlens_k,
                                               std::int64_t max_seqlen_q, std::int64_t max_seqlen_k,
                                               const FlashAttnOutputs& outputs, const FlashAttnOptions& options,
                                               const TensorView& seqused_k, const TensorView& block_table) {
  return forward_workspace_bytes(frontend::flash_attn_varlen_params("flash_attn_varlen", q, k, v, cu_seqlens_q,
                                                                    cu_seqlens_k, max_seqlen_q, max_seqlen_k, outputs,
                                                                    options, seqused_k, block_table));
}

void flash_attn_kvpacked(const TensorView& q, const TensorView& kv, const FlashAttnOutputs& outputs,
                         const FlashAttnOptions& options) {
  const char* function = "flash_attn_kvpacked";
  const auto [k, v, _] = frontend::unpack(ArgChecker(function), kv, "kv", 2, false);
  run_forward(forward_params(function, frontend::kvpacked_names(), q, k, v, nullptr, outputs, options));
}

void flash_attn_qkvpacked(const TensorView& qkv, const FlashAttnOutputs& outputs, const FlashAttnOptions& options) {
  const char* function = "flash_attn_qkvpacked";
  const auto [q, k, v] = frontend::unpack(ArgChecker(function), qkv, "qkv", 3, false);
  run_forward(forward_params(function, frontend::qkvpacked_names(false), q, k, v, nullptr, outputs, options));
}

void flash_attn_varlen(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& cu_seqlens_q,
                       const TensorView& cu_seqlens_k, std::int64_t max_seqlen_q, std::int64_t max_seqlen_k,
                       const FlashAttnOutputs& outputs, const FlashAttnOptions& options, const TensorView& seqused_k,
                       const TensorView& block_table) {
  run_forward(frontend::flash_attn_varlen_params("flash_attn_varlen", q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                                 max_seqlen_k, outputs, options, seqused_k, block_table));
}

void flash_attn_varlen_kvpacked(const TensorView& q, const TensorView& kv, const TensorView& cu_seqlens_q,
                                const TensorView& cu_seqlens_k, std::int64_t max_seqlen_q, std::int64_t max_seqlen_k,
                                const FlashAttnOutputs& outputs, const FlashAttnOptions& options,
                                const TensorView& seqused_k) {
  const char* function = "flash_attn_varlen_kvpacked";
  const auto [k, v, _] = frontend::unpack(ArgChecker(function), kv, "kv", 2, true);
  const VarlenArgs varlen{cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_k, {}};
  run_forward(forward_params(function, frontend::kvpacked_names(), q, k, v, &varlen, outputs, options));
}

void flash_attn_varlen_qkvpacked(const TensorView& qkv, const TensorView& cu_seqlens, std::int64_t max_seqlen,
                                 const FlashAttnOutputs& outputs, const FlashAttnOptions& options) {
  const char* function = "flash_attn_varlen_qkvpacked";
  const auto [q, k, v] = frontend::unpack(ArgChecker(function), qkv, "qkv", 3, true);
  const VarlenArgs varlen{cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, {}, {}};
  run_forward(forward_params(function, frontend::qkvpacked_names(true), q, k, v, &varlen, outputs, options));
}

}  // namespace flashattn
