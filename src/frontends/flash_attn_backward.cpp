// flash-attn front-end, backward: checks _flash_attn_backward-style
// arguments with the forward's checks (flash_attn_args.hpp), fills the
// forward's AttentionParams plus dout and the gradients, and runs
// run_backward. Packed forms are views into the packed tensors.
#include "flashattn/flash_attn_backward.hpp"

#include <array>
#include <string>
#include <vector>

#include "flashattn/params.hpp"
#include "frontends/flash_attn_args.hpp"
#include "frontends/flash_attn_params.hpp"
#include "frontends/tensor_checks.hpp"

namespace flashattn {
namespace {

using frontend::ArgChecker;
using frontend::NamedView;
using frontend::Problem;
using frontend::RowLayout;
using frontend::VarlenArgs;

// How the caller passed q, k, v and their gradients: separate tensors,
// q + kv and dq + dkv, or qkv and dqkv.
enum class Packing { none, kv, qkv };

// A backward call's tensors as the caller passed them. `inputs` and `grads`
// hold (q, k, v) and (dq, dk, dv), (q, kv) and (dq, dkv), or (qkv) and (dqkv).
struct BackwardArgs {
  TensorView dout, out, softmax_lse;
  std::vector<NamedView> inputs, grads;
};

// A gradient is written, and has the dtype, device and shape of the input
// it differentiates (`like`, already checked).
void check_gradient(const ArgChecker& c, const NamedView& grad, const NamedView& like) {
  const TensorView& g = grad.view;
  c.output_tensor(g, grad.name, like.view.rank);
  c.dtype(g, grad.name, like.view.dtype);
  c.device(g, grad.name, like.view.device);
  bool same = true;
  for (int d = 0; d < g.rank; ++d) same = same && g.shape[d] == like.view.shape[d];
  c.require(same, [&] {
    return grad.name + " has shape " + g.shape_string() + ", expected " + like.name + "'s shape " +
           like.view.shape_string();
  });
}

void set_gradients(AttentionParams& a, bool varlen, const TensorView& dq, const TensorView& dk, const TensorView& dv) {
  a.dq = dq.data;
  a.dk = dk.data;
  a.dv = dv.data;
  a.dq_stride = frontend::bshd_strides(dq, varlen);
  a.dk_stride = frontend::bshd_strides(dk, varlen);
  a.dv_stride = frontend::bshd_strides(dv, varlen);
}

void set_dout(AttentionParams& a, bool varlen, const TensorView& dout) {
  a.dout = dout.data;
  a.dout_stride = frontend::bshd_strides(dout, varlen);
}

AttentionParams backward_params(const char* function, Packing packing, const BackwardArgs& args,
                                const VarlenArgs* varlen, const FlashAttnOptions& options) {
  const ArgChecker c(function);
  const bool is_varlen = varlen != nullptr;
  frontend::ArgNames names;
  frontend::PackedParts qkv{}, grads{};  // the views the kernel reads and writes
  switch (packing) {
    case Packing::none:
      for (int i = 0; i < 3; ++i) qkv[i] = args.inputs[i].view, grads[i] = args.grads[i].view;
      break;
    case Packing::kv: {
      names = frontend::kvpacked_names();
      const frontend::PackedParts kv = frontend::unpack(c, args.inputs[1].view, "kv", 2, is_varlen);
      qkv = {args.inputs[0].view, kv[0], kv[1]};
      break;
    }
    case Packing::qkv:
      names = frontend::qkvpacked_names(is_varlen);
      qkv = frontend::unpack(c, args.inputs[0].view, "qkv", 3, is_varlen);
      break;
  }
  const Problem p = frontend::check_problem(c, names, qkv[0], qkv[1], qkv[2], varlen, options);
  frontend::require_host_backend(c, p, "the backward");
  c.require(!options.return_attn_probs, [&] {
    return "return_attn_probs is true, expected false: the backward returns no attention probabilities";
  });
  const TensorView& q = qkv[0];
  frontend::check_rows(c, args.out, "out", p, RowLayout::q, q.dtype, q.device, false);
  frontend::check_rows(c, args.dout, "dout", p, RowLayout::q, q.dtype, q.device, false);
  frontend::check_rows(c, args.softmax_lse, "softmax_lse", p, RowLayout::lse, DType::f32, q.device, false);
  for (std::size_t i = 0; i < args.grads.size(); ++i) check_gradient(c, args.grads[i], args.inputs[i]);

  std::vector<NamedView> reads = args.inputs;
  reads.insert(reads.end(), {{args.dout, "dout"}, {args.out, "out"}, {args.softmax_lse, "softmax_lse"}});
  for (NamedView& side : frontend::side_inputs(names, varlen, options)) reads.push_back(std::move(side));
  c.separate(args.grads, reads);

  if (packing == Packing::kv) {
    const frontend::PackedParts dkv = frontend::parts_of(args.grads[1].view, 2, is_varlen);
    grads = {args.grads[0].view, dkv[0], dkv[1]};
  } else if (packing == Packing::qkv) {
    grads = frontend::parts_of(args.grads[0].view, 3, is_varlen);
  }
  AttentionParams a = frontend::problem_params(p, qkv[0], qkv[1], qkv[2], varlen, options);
  frontend::set_forward_outputs(a, p, {args.out, args.softmax_lse, {}}, options);
  set_dout(a, is_varlen, args.dout);
  set_gradients(a, is_varlen, grads[0], grads[1], grads[2]);
  return a;
}

BackwardArgs unpacked_args(const TensorView& dout, const TensorView& q, const TensorView& k, const TensorView& v,
                           const TensorView& out, const TensorView& softmax_lse, const FlashAttnGrads& grads) {
  return {
      dout, out, softmax_lse, {{q, "q"}, {k, "k"}, {v, "v"}}, {{grads.dq, "dq"}, {grads.dk, "dk"}, {grads.dv, "dv"}}};
}

}  // namespace

namespace frontend {

AttentionParams flash_attn_backward_params(const char* function, const TensorView& dout, const TensorView& q,
                                           const TensorView& k, const TensorView& v, const TensorView& out,
                                           const TensorView& softmax_lse, const FlashAttnGrads& grads,
                                           const FlashAttnOptions& options) {
  return backward_params(function, Packing::none, unpacked_args(dout, q, k, v, out, softmax_lse, grads), nullptr,
                         options);
}

AttentionParams flash_attn_varlen_backward_params(const char* function, const TensorView& dout, const TensorView& q,
                                                  const TensorView& k, const TensorView& v, const TensorView& out,
                                                  const TensorView& softmax_lse, const FlashAttnGrads& grads,
                                                  const TensorView& cu_seqlens_q, const TensorView& cu_seqlens_k,
                                                  std::int64_t max_seqlen_q, std::int64_t max_seqlen_k,
                                                  const FlashAttnOptions& options, const TensorView& seqused_k) {
  const VarlenArgs varlen{cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_k, {}};
  return backward_params(function, Packing::none, unpacked_args(dout, q, k, v, out, softmax_lse, grads), &varlen,
                         options);
}

}  // namespace frontend

void flash_attn_backward(const TensorView& dout, const TensorView& q, const TensorView& k, const TensorView& v,
                         const TensorView& out, const TensorView& softmax_lse, const FlashAttnGrads& grads,
                         const FlashAttnOptions& options) {
  run_backward(
      frontend::flash_attn_backward_params("flash_attn_backward", dout, q, k, v, out, softmax_lse, grads, options));
}

void flash_attn_kvpacked_backward(const TensorView& dout, const TensorView& q, const TensorView& kv,
                                  const TensorView& out, const TensorView& softmax_lse, const TensorView& dq,
                                  const TensorView& dkv, const FlashAttnOptions& options) {
  const BackwardArgs args{dout, out, softmax_lse, {{q, "q"}, {kv, "kv"}}, {{dq, "dq"}, {dkv, "dkv"}}};
  run_backward(backward_params("flash_attn_kvpacked_backward", Packing::kv, args, nullptr, options));
}

void flash_attn_qkvpacked_backward(const TensorView& dout, const TensorView& qkv, const TensorView& out,
                                   const TensorView& softmax_lse, const TensorView& dqkv,
                                   const FlashAttnOptions& options) {
  const BackwardArgs args{dout, out, softmax_lse, {{qkv, "qkv"}}, {{dqkv, "dqkv"}}};
  run_backward(backward_params("flash_attn_qkvpacked_backward", Packing::qkv, args, nullptr, options));
}

void flash_attn_varlen_backward(const TensorView& dout, const TensorView& q, const TensorView& k, const TensorView& v,
                                const TensorView& out, const TensorView& softmax_lse, const FlashAttnGrads& grads,
                                const TensorView& cu_seqlens_q, const TensorView& cu_seqlens_k,
                                std::int64_t max_seqlen_q, std::int64_t max_seqlen_k, const FlashAttnOptions& options,
                                const TensorView& seqused_k) {
  run_backward(frontend::flash_attn_varlen_backward_params("flash_attn_varlen_backward", dout, q, k, v, out,
                                                           softmax_lse, grads, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                                           max_seqlen_k, options, seqused_k));
}

void flash_attn_varlen_kvpacked_backward(const TensorView& dout, const TensorView& q, const TensorView& kv,
                                         const TensorView& out, const TensorView& softmax_lse, const TensorView& dq,
                                         const TensorView& dkv, const TensorView& cu_seqlens_q,
                                         const TensorView& cu_seqlens_k, std::int64_t max_seqlen_q,
                                         std::int64_t max_seqlen_k, const FlashAttnOptions& options,
                                         const TensorView& seqused_k) {
  const BackwardArgs args{dout, out, softmax_lse, {{q, "q"}, {kv, "kv"}}, {{dq, "dq"}, {dkv, "dkv"}}};
  const VarlenArgs varlen{cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_k, {}};
  run_backward(backward_params("flash_attn_varlen_kvpacked_backward", Packing::kv, args, &varlen, options));
}

void flash_attn_varlen_qkvpacked_backward(const TensorView& dout, const TensorView& qkv, const TensorView& out,
                                          const TensorView& softmax_lse, const TensorView& dqkv,
                                          const TensorView& cu_seqlens, std::int64_t max_seqlen,
                                          const FlashAttnOptions& options) {
  const BackwardArgs args{dout, out, softmax_lse, {{qkv, "qkv"}}, {{dqkv, "dqkv"}}};
  const VarlenArgs varlen{cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, {}, {}};
  run_backward(backward_params("flash_attn_varlen_qkvpacked_backward", Packing::qkv, args, &varlen, options));
}

void flash_attn_forward_backward(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& dout,
                                 const FlashAttnOutputs& outputs, const FlashAttnGrads& grads,
                                 const FlashAttnOptions& options) {
  const ArgChecker c("flash_attn_forward_backward");
  const Problem p = frontend::check_problem(c, {}, q, k, v, nullptr, options);
  frontend::require_host_backend(c, p, "the backward");
  frontend::check_forward_outputs(c, outputs, options, p, q);
  frontend::check_rows(c, dout, "dout", p, RowLayout::q, q.dtype, q.device, false);
  const std::vector<NamedView> inputs{{q, "q"}, {k, "k"}, {v, "v"}};
  const std::vector<NamedView> gradients{{grads.dq, "dq"}, {grads.dk, "dk"}, {grads.dv, "dv"}};
  for (int i = 0; i < 3; ++i) check_gradient(c, gradients[i], inputs[i]);
  std::vector<NamedView> writes{
      {outputs.out, "out"}, {outputs.softmax_lse, "softmax_lse"}, {outputs.attn_probs, "attn_probs"}};
  writes.insert(writes.end(), gradients.begin(), gradients.end());
  std::vector<NamedView> reads = frontend::side_inputs({}, nullptr, options);
  reads.insert(reads.end(), inputs.begin(), inputs.end());
  reads.push_back({dout, "dout"});
  c.separate(writes, reads);

  AttentionParams a = frontend::problem_params(p, q, k, v, nullptr, options);
  frontend::set_forward_outputs(a, p, outputs, options);
  std::vector<float> own_lse;  // (b, h, sq) when the caller wants no softmax_lse: the backward needs it
  if (!outputs.softmax_lse.present()) {
    own_lse.resize(static_cast<std::size_t>(p.batch * p.heads * p.seqlen_q));
    frontend::set_lse(a, p, TensorView::contiguous(own_lse.data(), DType::f32, {p.batch, p.heads, p.seqlen_q}));
  }
  run_forward(a);
  a.probs = nullptr;
  set_dout(a, false, dout);
  set_gradients(a, false, grads.dq, grads.dk, grads.dv);
  run_backward(a);
}

}  // namespace flashattn
