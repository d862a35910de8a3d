// The unfused baseline of `flashattn bench`: classic three-step attention on
// the same AttentionParams as the kernel, per (batch, head):
//   S = scale * Q K^T   materialised, (seqlen_q, seqlen_k) fp32
//   P = softmax(S)      row by row over the row's kept keys (core::kept_keys)
//   O = P V
// and its backward (what autograd runs on it, with S and P recomputed as
// the fused backward does), per (batch, kv head), its query heads in turn:
//   S, P as above;  dV += P^T dO;  dP = dO V^T;  dS = P (dP - rowsum(P dP))
//   dQ = scale * dS K;  dK += scale * dS^T Q
// f16 / bf16 inputs are converted to fp32 first, inside run(). The GEMMs are
// OpenBLAS's cblas_sgemm (loaded at run time) or a blocked GEMM of our own;
// the row kernels and our GEMM are compiled for the active ISA.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "flashattn/params.hpp"
#include "flashattn/runtime.hpp"

namespace flashattn::tools {

enum class GemmBackend { openblas, own };

// "openblas" / "own".
std::string_view gemm_backend_name(GemmBackend backend);

// Whether libopenblas.so.0 loads and has cblas_sgemm. The first call loads it,
// after setting OPENBLAS_CORETYPE=SkylakeX (overriding the environment) on CPUs with
// AVX-512, which OpenBLAS 0.3.21 does not recognise on AMD Zen 4/5.
bool openblas_available();

// What OpenBLAS's openblas_get_corename says ("SkylakeX", "Haswell", ...);
// "" when it is not available.
std::string openblas_core_name();

// openblas when available, else own.
GemmBackend default_gemm_backend();

// The largest S buffer (one head's seqlen_q x seqlen_k fp32) the baseline
// allocates; the backward allocates two (S / P and dP / dS).
constexpr std::int64_t kMaxScoreBytes = std::int64_t{1} << 30;

// Why the baseline does not run `params`, or "" when it does: it handles
// fixed-length batches with GQA and causal / window masks, not varlen,
// seqused_k, kv caches, softcap, alibi or dropout, nor an S buffer over kMaxScoreBytes.
std::string unfused_unsupported_reason(const AttentionParams& params);

// What UnfusedAttention::run computes.
enum class UnfusedPass { forward, backward };

class UnfusedAttention {
 public:
  // Allocates every buffer (the timed run() allocates nothing). params must
  // be supported (unfused_unsupported_reason is ""); own kernels use `isa`.
  // The backward also reads params.dout.
  UnfusedAttention(const AttentionParams& params, GemmBackend gemm, Isa isa, int threads,
                   UnfusedPass pass = UnfusedPass::forward);
  ~UnfusedAttention();
  UnfusedAttention(const UnfusedAttention&) = delete;
  UnfusedAttention& operator=(const UnfusedAttention&) = delete;

  // The whole pass: conversion to fp32, then per head as above.
  void run();

  // Results of the last run(), fp32. Forward: out (batch, seqlen_q, heads_q,
  // head_dim_v). Backward: dq (batch, seqlen_q, heads_q, head_dim), dk
  // (batch, seqlen_k, heads_kv, head_dim), dv (batch, seqlen_k, heads_kv, head_dim_v).
  std::span<const float> out() const;
  std::span<const float> dq() const;
  std::span<const float> dk() const;
  std::span<const float> dv() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace flashattn::tools
