// The unfused baseline (see unfused_baseline.hpp). The vector loops are in
// unfused_kernels.inl, compiled once per ISA in its own target region
// (src/cpu/isa_region.hpp); everything here is baseline code.
#include "unfused_baseline.hpp"

#include <dlfcn.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/mask.hpp"
#include "cpu/isa_region.hpp"
#include "flashattn/dtype.hpp"

namespace flashattn::tools {
namespace {

// The vector loops of one ISA.
struct UnfusedKernels {
  int tile_rows;  // of the GEMM micro-tile
  int tile_cols;  // = packed panel width
  void (*micro_tile)(int rows, const float* a, std::int64_t row_stride, std::int64_t depth_stride,
                     const float* panel, std::int64_t depth, float* tile);
  void (*softmax_row)(float* row, std::int64_t seqlen_k, core::KeyRange kept);
  void (*softmax_backward_row)(const float* prob, float* grad, std::int64_t seqlen_k, core::KeyRange kept);
};

}  // namespace
}  // namespace flashattn::tools

// Baseline x86-64: SSE2, 8 accumulators of 4 lanes.
namespace flashattn::tools::unfused_scalar {
namespace {
#define FLASHATTN_UNFUSED_ROWS 4
#define FLASHATTN_UNFUSED_COLS 8
#define FLASHATTN_UNFUSED_FMA 0
#include "unfused_kernels.inl"
#undef FLASHATTN_UNFUSED_ROWS
#undef FLASHATTN_UNFUSED_COLS
#undef FLASHATTN_UNFUSED_FMA
}  // namespace
const UnfusedKernels kKernels{kTileRows, kTileCols, micro_tile_rows, softmax_row, softmax_backward_row};
}  // namespace flashattn::tools::unfused_scalar

// AVX2: 12 ymm accumulators of 16.
FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX2)
namespace flashattn::tools::unfused_avx2 {
namespace {
#define FLASHATTN_UNFUSED_ROWS 4
#define FLASHATTN_UNFUSED_COLS 24
#define FLASHATTN_UNFUSED_FMA 1
#include "unfused_kernels.inl"
#undef FLASHATTN_UNFUSED_ROWS
#undef FLASHATTN_UNFUSED_COLS
#undef FLASHATTN_UNFUSED_FMA
}  // namespace
const UnfusedKernels kKernels{kTileRows, kTileCols, micro_tile_rows, softmax_row, softmax_backward_row};
}  // namespace flashattn::tools::unfused_avx2
FLASHATTN_ISA_END

// AVX-512: 16 zmm accumulators of 32.
FLASHATTN_ISA_BEGIN(FLASHATTN_TARGET_AVX512)
namespace flashattn::tools::unfused_avx512 {
namespace {
#define FLASHATTN_UNFUSED_ROWS 4
#define FLASHATTN_UNFUSED_COLS 64
#define FLASHATTN_UNFUSED_FMA 1
#include "unfused_kernels.inl"
#undef FLASHATTN_UNFUSED_ROWS
#undef FLASHATTN_UNFUSED_COLS
#undef FLASHATTN_UNFUSED_FMA
}  // namespace
const UnfusedKernels kKernels{kTileRows, kTileCols, micro_tile_rows, softmax_row, softmax_backward_row};
}  // namespace flashattn::tools::unfused_avx512
FLASHATTN_ISA_END

namespace flashattn::tools {
namespace {

constexpr int kMaxTileElements = 4 * 64;  // the largest tile_rows x tile_cols above
constexpr std::int64_t kDepthBlock = 256;  // K rows per packed block: a 64-wide panel is 64 KiB

const UnfusedKernels& kernels_for(Isa isa) {
  switch (isa) {
    case Isa::scalar: return unfused_scalar::kKernels;
    case Isa::avx2: return unfused_avx2::kKernels;
    case Isa::avx512:
    case Isa::avx512_bf16: return unfused_avx512::kKernels;
  }
  return unfused_scalar::kKernels;
}

// cblas_sgemm and openblas_set_num_threads, found with dlopen so that the
// build needs no BLAS; both null when the library is absent.
struct OpenBlas {
  using Sgemm = void (*)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a,
                         int lda, const float* b, int ldb, float beta, float* c, int ldc);
  Sgemm sgemm = nullptr;
  void (*set_num_threads)(int) = nullptr;
  const char* (*core_name)() = nullptr;  // optional
};
constexpr int kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112;

const OpenBlas& openblas() {
  static const OpenBlas library = [] {
    OpenBlas blas;
    const std::vector<Isa> isas = supported_isas();
    // Read once, when OpenBLAS loads: it must be set before dlopen. Overrides
    // the environment (some set Haswell globally): the baseline is meant to
    // be OpenBLAS at its best on this CPU.
    if (std::find(isas.begin(), isas.end(), Isa::avx512) != isas.end()) setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    void* handle = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);  // kept loaded for the process
    if (handle == nullptr) return blas;
    blas.sgemm = reinterpret_cast<OpenBlas::Sgemm>(dlsym(handle, "cblas_sgemm"));
    blas.set_num_threads = reinterpret_cast<void (*)(int)>(dlsym(handle, "openblas_set_num_threads"));
    blas.core_name = reinterpret_cast<const char* (*)()>(dlsym(handle, "openblas_get_corename"));
    if (blas.sgemm == nullptr || blas.set_num_threads == nullptr) blas = {};
    return blas;
  }();
  return library;
}

// A (batch, seqlen, heads, dim) fp32 tensor.
struct Float32Tensor {
  const float* data = nullptr;
  BshdStrides stride;

  // Head h of sequence b: (seqlen, dim), row stride stride.row.
  const float* head(std::int64_t b, std::int64_t h) const { return data + b * stride.batch + h * stride.head; }
};

// The inputs of a pass in fp32 (dout: backward only).
struct Float32Inputs {
  Float32Tensor q, k, v, dout;
};

// A GEMM operand: row-major data with row stride ld, used as is or transposed.
struct Operand {
  const float* data;
  std::int64_t ld;
  bool transposed = false;
};

// (rows, heads, dim) rows of a 16-bit tensor -> contiguous fp32 `to`.
void convert_to_f32(DType dtype, const void* from, BshdStrides stride, std::int64_t batch, std::int64_t seqlen,
                    std::int64_t heads, std::int64_t dim, float* to, int threads) {
  const auto* bits = static_cast<const std::uint16_t*>(from);
#pragma omp parallel for collapse(2) num_threads(threads)
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t s = 0; s < seqlen; ++s) {
      for (std::int64_t h = 0; h < heads; ++h) {
        const std::uint16_t* src = bits + b * stride.batch + s * stride.row + h * stride.head;
        float* dst = to + ((b * seqlen + s) * heads + h) * dim;
        for (std::int64_t d = 0; d < dim; ++d) {
          dst[d] = dtype == DType::bf16 ? to_float(bfloat16{src[d]}) : to_float(float16{src[d]});
        }
      }
    }
  }
}

}  // namespace

std::string_view gemm_backend_name(GemmBackend backend) {
  return backend == GemmBackend::openblas ? "openblas" : "own";
}

bool openblas_available() { return openblas().sgemm != nullptr; }

std::string openblas_core_name() {
  const OpenBlas& blas = openblas();
  return blas.sgemm != nullptr && blas.core_name != nullptr ? blas.core_name() : "";
}

GemmBackend default_gemm_backend() { return openblas_available() ? GemmBackend::openblas : GemmBackend::own; }

std::string unfused_unsupported_reason(const AttentionParams& p) {
  if (p.dtype != DType::f32 && p.dtype != DType::f16 && p.dtype != DType::bf16) return "dtype";
  if (p.is_varlen() || p.seqused_k != nullptr) return "varlen";
  if (p.cache_seqlens || p.block_table || p.kv_batch_index || p.k_leftpad) return "kv cache";
  if (p.softcap > 0) return "softcap";
  if (p.alibi_slopes != nullptr) return "alibi";
  if (p.dropout_p > 0) return "dropout";
  if (static_cast<double>(p.seqlen_q) * static_cast<double>(p.seqlen_k) * 4 > static_cast<double>(kMaxScoreBytes)) {
    return "the score matrix of one head exceeds 1 GiB";
  }
  for (std::int64_t extent : {p.q_stride.row, p.k_stride.row, p.v_stride.row, p.out_stride.row, p.dout_stride.row,
                              p.heads_q * std::max(p.head_dim, p.head_dim_v), p.seqlen_q, p.seqlen_k}) {
    if (extent > INT_MAX) return "a dimension beyond 32-bit BLAS indices";
  }
  return "";
}

struct UnfusedAttention::State {
  AttentionParams params;
  GemmBackend gemm;
  const UnfusedKernels* kernels;
  UnfusedPass pass;
  int threads;
  // Work units (forward: (batch, head); backward: (batch, kv head)) in
  // flight at once, each on one thread with its own buffers; 1: units one
  // after another, each on every thread.
  int concurrent_units;
  std::vector<float> q32, k32, v32, dout32;  // 16-bit inputs only: (batch, seqlen, heads, dim) fp32
  std::vector<float> scores;                 // (concurrent_units, seqlen_q, seqlen_k): S, then P
  std::vector<float> grad_scores;            // backward, like scores: dP, then dS
  std::vector<float> panels;                 // own GEMM: op(B) packed, (concurrent_units, panel_floats)
  std::int64_t panel_floats = 0;             // (panels, kDepthBlock, tile_cols) of one GEMM
  std::vector<float> out;                    // forward: (batch, seqlen_q, heads_q, head_dim_v)
  std::vector<float> dq, dk, dv;             // backward: like q, k and v

  // What one unit in flight works in: its S (and dS) buffer, its packing buffer, its threads.
  struct Lane {
    float* scores;
    float* grad_scores;
    float* panels;
    int threads;
  };

  // c (m, n; row stride ldc) = alpha op(a) . op(b), + c when accumulate;
  // op(x) = x^T when x.transposed; op(a) is (m, k), op(b) is (k, n).
  void gemm_f32(const Lane& lane, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, Operand a, Operand b,
                float* c, std::int64_t ldc, bool accumulate = false);
  void own_gemm(const Lane& lane, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, Operand a, Operand b,
                float* c, std::int64_t ldc, bool accumulate);
  // lane.scores = P = softmax(scale q_head k_head^T) under the mask.
  void probabilities(const Lane& lane, const float* q_head, std::int64_t q_ld, const float* k_head, std::int64_t k_ld);
  // One (batch, query head): S, P, O.
  void attend_head(const Lane& lane, const Float32Inputs& in, std::int64_t b, std::int64_t h);
  // One (batch, kv head): the backward of each of its query heads, dk and dv summed over them.
  void backward_group(const Lane& lane, const Float32Inputs& in, std::int64_t b, std::int64_t hk);
  void run_unit(const Lane& lane, const Float32Inputs& in, std::int64_t unit);
  std::int64_t units() const;
};

void UnfusedAttention::State::gemm_f32(const Lane& lane, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                                       Operand a, Operand b, float* c, std::int64_t ldc, bool accumulate) {
  if (gemm == GemmBackend::own) return own_gemm(lane, m, n, k, alpha, a, b, c, ldc, accumulate);
  auto trans = [](const Operand& x) { return x.transposed ? kCblasTrans : kCblasNoTrans; };
  openblas().sgemm(kCblasRowMajor, trans(a), trans(b), int(m), int(n), int(k), alpha, a.data, int(a.ld), b.data,
                   int(b.ld), accumulate ? 1.0f : 0.0f, c, int(ldc));
}

// Blocked over k (kDepthBlock) so a packed panel stays in L2; each thread
// takes whole panels and runs every row block against them.
void UnfusedAttention::State::own_gemm(const Lane& lane, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                                       Operand a, Operand b, float* c, std::int64_t ldc, bool accumulate) {
  const int tile_rows = kernels->tile_rows, tile_cols = kernels->tile_cols;
  const std::int64_t panel_count = (n + tile_cols - 1) / tile_cols;
  const std::int64_t row_blocks = (m + tile_rows - 1) / tile_rows;
  // Element (i, p) of op(a) is a.data[i * a_row + p * a_depth].
  const std::int64_t a_row = a.transposed ? 1 : a.ld, a_depth = a.transposed ? a.ld : 1;
  for (std::int64_t k0 = 0; k0 < k; k0 += kDepthBlock) {
    const std::int64_t depth = std::min(kDepthBlock, k - k0);
#pragma omp parallel for num_threads(lane.threads) if (lane.threads > 1)
    for (std::int64_t panel = 0; panel < panel_count; ++panel) {
      float* packed = lane.panels + panel * depth * tile_cols;  // (depth, tile_cols)
      for (std::int64_t p = 0; p < depth; ++p) {
        for (int col = 0; col < tile_cols; ++col) {
          const std::int64_t j = panel * tile_cols + col;
          const float* element = b.transposed ? b.data + j * b.ld + (k0 + p) : b.data + (k0 + p) * b.ld + j;
          packed[p * tile_cols + col] = j < n ? *element : 0.0f;
        }
      }
    }
    const bool overwrite = k0 == 0 && !accumulate;
#pragma omp parallel for collapse(2) schedule(static) num_threads(lane.threads) if (lane.threads > 1)
    for (std::int64_t panel = 0; panel < panel_count; ++panel) {
      for (std::int64_t block = 0; block < row_blocks; ++block) {
        float tile[kMaxTileElements];  // (tile_rows, tile_cols)
        const std::int64_t i0 = block * tile_rows, j0 = panel * tile_cols;
        const int rows = static_cast<int>(std::min<std::int64_t>(tile_rows, m - i0));
        const int cols = static_cast<int>(std::min<std::int64_t>(tile_cols, n - j0));
        kernels->micro_tile(rows, a.data + i0 * a_row + k0 * a_depth, a_row, a_depth,
                            lane.panels + panel * depth * tile_cols, depth, tile);
        for (int r = 0; r < rows; ++r) {
          float* c_row = c + (i0 + r) * ldc + j0;
          for (int col = 0; col < cols; ++col) {
            const float value = alpha * tile[r * tile_cols + col];
            c_row[col] = overwrite ? value : c_row[col] + value;
          }
        }
      }
    }
  }
}

void UnfusedAttention::State::probabilities(const Lane& lane, const float* q_head, std::int64_t q_ld,
                                            const float* k_head, std::int64_t k_ld) {
  const std::int64_t sq = params.seqlen_q, sk = params.seqlen_k;
  float* s = lane.scores;  // (sq, sk)
  gemm_f32(lane, sq, sk, params.head_dim, params.softmax_scale, {q_head, q_ld}, {k_head, k_ld, true}, s, sk);
  const UnfusedKernels& kern = *kernels;
  const MaskSpec mask = params.mask;
#pragma omp parallel for schedule(static) num_threads(lane.threads) if (lane.threads > 1)
  for (std::int64_t i = 0; i < sq; ++i) kern.softmax_row(s + i * sk, sk, core::kept_keys(mask, i, sq, sk));
}

void UnfusedAttention::State::attend_head(const Lane& lane, const Float32Inputs& in, std::int64_t b, std::int64_t h) {
  const AttentionParams& p = params;
  const std::int64_t hk = h / (p.heads_q / p.heads_kv);
  float* out_head = out.data() + (b * p.seqlen_q * p.heads_q + h) * p.head_dim_v;  // (sq, dv), row stride heads_q * dv
  probabilities(lane, in.q.head(b, h), in.q.stride.row, in.k.head(b, hk), in.k.stride.row);
  gemm_f32(lane, p.seqlen_q, p.head_dim_v, p.seqlen_k, 1.0f, {lane.scores, p.seqlen_k},
           {in.v.head(b, hk), in.v.stride.row}, out_head, p.heads_q * p.head_dim_v);
}

void UnfusedAttention::State::backward_group(const Lane& lane, const Float32Inputs& in, std::int64_t b,
                                             std::int64_t hk) {
  const AttentionParams& p = params;
  const std::int64_t sq = p.seqlen_q, sk = p.seqlen_k, group = p.heads_q / p.heads_kv;
  const float* k_head = in.k.head(b, hk);  // (sk, d)
  const float* v_head = in.v.head(b, hk);  // (sk, dv)
  float* dk_head = dk.data() + (b * sk * p.heads_kv + hk) * p.head_dim;    // (sk, d), row stride heads_kv * d
  float* dv_head = dv.data() + (b * sk * p.heads_kv + hk) * p.head_dim_v;  // (sk, dv), row stride heads_kv * dv
  const float scale = p.softmax_scale;
  for (std::int64_t h = hk * group; h < (hk + 1) * group; ++h) {
    const bool first = h == hk * group;  // the group's later heads add to dk and dv
    const float* q_head = in.q.head(b, h);        // (sq, d)
    const float* dout_head = in.dout.head(b, h);  // (sq, dv)
    float* dq_head = dq.data() + (b * sq * p.heads_q + h) * p.head_dim;  // (sq, d), row stride heads_q * d
    probabilities(lane, q_head, in.q.stride.row, k_head, in.k.stride.row);
    const Operand dout_op{dout_head, in.dout.stride.row};
    gemm_f32(lane, sk, p.head_dim_v, sq, 1.0f, {lane.scores, sk, true}, dout_op, dv_head, p.heads_kv * p.head_dim_v,
             !first);  // dV += P^T dO
    gemm_f32(lane, sq, sk, p.head_dim_v, 1.0f, dout_op, {v_head, in.v.stride.row, true}, lane.grad_scores, sk);  // dP
    const UnfusedKernels& kern = *kernels;
#pragma omp parallel for schedule(static) num_threads(lane.threads) if (lane.threads > 1)
    for (std::int64_t i = 0; i < sq; ++i) {
      kern.softmax_backward_row(lane.scores + i * sk, lane.grad_scores + i * sk, sk, core::kept_keys(p.mask, i, sq, sk));
    }
    gemm_f32(lane, sq, p.head_dim, sk, scale, {lane.grad_scores, sk}, {k_head, in.k.stride.row}, dq_head,
             p.heads_q * p.head_dim);  // dQ = scale dS K
    gemm_f32(lane, sk, p.head_dim, sq, scale, {lane.grad_scores, sk, true}, {q_head, in.q.stride.row}, dk_head,
             p.heads_kv * p.head_dim, !first);  // dK += scale dS^T Q
  }
}

std::int64_t UnfusedAttention::State::units() const {
  return params.batch * (pass == UnfusedPass::forward ? params.heads_q : params.heads_kv);
}

void UnfusedAttention::State::run_unit(const Lane& lane, const Float32Inputs& in, std::int64_t unit) {
  if (pass == UnfusedPass::forward) return attend_head(lane, in, unit / params.heads_q, unit % params.heads_q);
  backward_group(lane, in, unit / params.heads_kv, unit % params.heads_kv);
}

UnfusedAttention::UnfusedAttention(const AttentionParams& params, GemmBackend gemm, Isa isa, int threads,
                                   UnfusedPass pass)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  const AttentionParams& p = params;
  const bool backward = pass == UnfusedPass::backward;
  s.params = params;
  s.gemm = gemm == GemmBackend::openblas && !openblas_available() ? GemmBackend::own : gemm;
  s.kernels = &kernels_for(isa);
  s.pass = pass;
  s.threads = std::max(threads, 1);
  const std::int64_t q_floats = p.batch * p.seqlen_q * p.heads_q * p.head_dim;
  const std::int64_t k_floats = p.batch * p.seqlen_k * p.heads_kv * p.head_dim;
  const std::int64_t v_floats = p.batch * p.seqlen_k * p.heads_kv * p.head_dim_v;
  const std::int64_t out_floats = p.batch * p.seqlen_q * p.heads_q * p.head_dim_v;
  if (p.dtype != DType::f32) {
    s.q32.resize(q_floats);
    s.k32.resize(k_floats);
    s.v32.resize(v_floats);
    if (backward) s.dout32.resize(out_floats);
  }
  // Units in parallel when there are enough of them and their S buffers fit
  // in kMaxScoreBytes together (the backward's dS buffers as many again): no
  // thread then waits on another inside a unit.
  const std::int64_t score_floats = p.seqlen_q * p.seqlen_k;
  const bool parallel_units = s.threads > 1 && s.units() >= s.threads && s.threads * score_floats * 4 <= kMaxScoreBytes;
  s.concurrent_units = parallel_units ? s.threads : 1;
  s.scores.resize(s.concurrent_units * score_floats);
  if (backward) s.grad_scores.resize(s.concurrent_units * score_floats);
  if (s.gemm == GemmBackend::own) {
    // The widest op(B) panel of any GEMM above: n columns (padded) by min(k, kDepthBlock) rows.
    const std::int64_t cols = s.kernels->tile_cols;
    auto padded = [cols](std::int64_t n) { return (n + cols - 1) / cols * cols; };
    const std::int64_t dim = std::max(p.head_dim, p.head_dim_v), seqlen = std::max(p.seqlen_q, p.seqlen_k);
    s.panel_floats = std::max(padded(p.seqlen_k) * std::min(kDepthBlock, dim), padded(dim) * std::min(kDepthBlock, seqlen));
    s.panels.resize(s.concurrent_units * s.panel_floats);
  }
  if (backward) {
    s.dq.resize(q_floats);
    s.dk.resize(k_floats);
    s.dv.resize(v_floats);
  } else {
    s.out.resize(out_floats);
  }
}

UnfusedAttention::~UnfusedAttention() = default;

void UnfusedAttention::run() {
  State& s = *state_;
  const AttentionParams& p = s.params;
  if (s.gemm == GemmBackend::openblas) openblas().set_num_threads(s.concurrent_units > 1 ? 1 : s.threads);
  // The inputs as fp32: the params' own tensors, or 16-bit ones converted into `buffer`.
  auto as_f32 = [&](const void* data, BshdStrides stride, std::int64_t seqlen, std::int64_t heads, std::int64_t dim,
                    std::vector<float>& buffer) -> Float32Tensor {
    if (p.dtype == DType::f32) return {static_cast<const float*>(data), stride};
    convert_to_f32(p.dtype, data, stride, p.batch, seqlen, heads, dim, buffer.data(), s.threads);
    return {buffer.data(), BshdStrides{seqlen * heads * dim, heads * dim, dim}};
  };
  Float32Inputs in;
  in.q = as_f32(p.q, p.q_stride, p.seqlen_q, p.heads_q, p.head_dim, s.q32);
  in.k = as_f32(p.k, p.k_stride, p.seqlen_k, p.heads_kv, p.head_dim, s.k32);
  in.v = as_f32(p.v, p.v_stride, p.seqlen_k, p.heads_kv, p.head_dim_v, s.v32);
  if (s.pass == UnfusedPass::backward) {
    in.dout = as_f32(p.dout, p.dout_stride, p.seqlen_q, p.heads_q, p.head_dim_v, s.dout32);
  }
  const std::int64_t units = s.units();
  const std::int64_t score_floats = p.seqlen_q * p.seqlen_k;
  auto lane_of = [&](std::int64_t t, int threads) {
    float* grad_scores = s.grad_scores.empty() ? nullptr : s.grad_scores.data() + t * score_floats;
    return State::Lane{s.scores.data() + t * score_floats, grad_scores, s.panels.data() + t * s.panel_floats, threads};
  };
  if (s.concurrent_units == 1) {
    const State::Lane lane = lane_of(0, s.threads);
    for (std::int64_t unit = 0; unit < units; ++unit) s.run_unit(lane, in, unit);
    return;
  }
#pragma omp parallel num_threads(s.concurrent_units)
  {
    const State::Lane lane = lane_of(omp_get_thread_num(), 1);
#pragma omp for schedule(dynamic)
    for (std::int64_t unit = 0; unit < units; ++unit) s.run_unit(lane, in, unit);
  }
}

std::span<const float> UnfusedAttention::out() const { return state_->out; }
std::span<const float> UnfusedAttention::dq() const { return state_->dq; }
std::span<const float> UnfusedAttention::dk() const { return state_->dk; }
std::span<const float> UnfusedAttention::dv() const { return state_->dv; }

}  // namespace flashattn::tools
