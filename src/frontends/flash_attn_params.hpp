// The flash-attn front-end split in two: validate + fill params (here), then
// run_forward / run_backward. Tests use these to run the fp64 reference on
// exactly the params a front-end call produces.
#pragma once

#include "flashattn/flash_attn.hpp"
#include "flashattn/flash_attn_backward.hpp"
#include "flashattn/params.hpp"

namespace flashattn::frontend {

// Throws Error (prefixed by `function`) on any invalid argument; reads
// cu_seqlens / seqused_k but writes nothing.
AttentionParams flash_attn_params(const char* function, const TensorView& q, const TensorView& k,
                                  const TensorView& v, const FlashAttnOutputs& outputs,
                                  const FlashAttnOptions& options);

AttentionParams flash_attn_varlen_params(const char* function, const TensorView& q, const TensorView& k,
                                         const TensorView& v, const TensorView& cu_seqlens_q,
                                         const TensorView& cu_seqlens_k, std::int64_t max_seqlen_q,
                                         std::int64_t max_seqlen_k, const FlashAttnOutputs& outputs,
                                         const FlashAttnOptions& options, const TensorView& seqused_k,
                                         const TensorView& block_table = {});

// The params flash_attn_backward / flash_attn_varlen_backward run: the
// forward's, plus dout and the gradients.
AttentionParams flash_attn_backward_params(const char* function, const TensorView& dout, const TensorView& q,
                                           const TensorView& k, const TensorView& v, const TensorView& out,
                                           const TensorView& softmax_lse, const FlashAttnGrads& grads,
                                           const FlashAttnOptions& options);

AttentionParams flash_attn_varlen_backward_params(const char* function, const TensorView& dout, const TensorView& q,
                                                  const TensorView& k, const TensorView& v, const TensorView& out,
                                                  const TensorView& softmax_lse, const FlashAttnGrads& grads,
                                                  const TensorView& cu_seqlens_q, const TensorView& cu_seqlens_k,
                                                  std::int64_t max_seqlen_q, std::int64_t max_seqlen_k,
                                                  const FlashAttnOptions& options, const TensorView& seqused_k);

}  // namespace flashattn::frontend
