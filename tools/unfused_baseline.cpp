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
  void (*micro_tile)(int rows, const float* a, std::int64_t lda, const float* panel, std::int64_t depth,
                     float* tile);
  void (*softmax_row)(float* row, std::int64_t seqlen_k, core::KeyRange kept);
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
const UnfusedKernels kKernels{kTileRows, kTileCols, micro_tile_rows, softmax_row};
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
const UnfusedKernels kKernels{kTileRows, kTileCols, micro_tile_rows, softmax_row};
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
const UnfusedKernels kKernels{kTileRows, kTileCols, micro_tile_rows, softmax_row};
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
  if (p.softcap > 0) return "softcap";
  if (p.alibi_slopes != nullptr) return "alibi";
  if (p.dropout_p > 0) return "dropout";
  if (static_cast<double>(p.seqlen_q) * static_cast<double>(p.seqlen_k) * 4 > static_cast<double>(kMaxScoreBytes)) {
    return "the score matrix of one head exceeds 1 GiB";
  }
  for (std::int64_t extent : {p.q_stride.row, p.k_stride.row, p.v_stride.row, p.out_stride.row, p.heads_q * p.head_dim_v,
                              p.seqlen_k}) {
    if (extent > INT_MAX) return "a dimension beyond 32-bit BLAS indices";
  }
  return "";
}

struct UnfusedAttention::State {
  AttentionParams params;
  GemmBackend gemm;
  const UnfusedKernels* kernels;
  int threads;
  // Heads in flight at once, each on one thread with its own buffers; 1:
  // heads one after another, each on every thread.
  int concurrent_heads;
  std::vector<float> q32, k32, v32;  // 16-bit inputs only: (batch, seqlen, heads, dim) fp32
  std::vector<float> scores;         // (concurrent_heads, seqlen_q, seqlen_k): S, then P
  std::vector<float> panels;         // own GEMM: op(B) packed, (concurrent_heads, panel_floats)
  std::int64_t panel_floats = 0;     // (panels, kDepthBlock, tile_cols) of one GEMM
  std::vector<float> out;            // (batch, seqlen_q, heads_q, head_dim_v)

  // What one head in flight works in: its S buffer, its packing buffer, its threads.
  struct Lane {
    float* scores;
    float* panels;
    int threads;
  };

  // c (m, n; row stride ldc) = alpha a (m, k; lda) . op(b); op(b) = b^T (b is (n, k)) when transpose_b, else b (k, n).
  void gemm_f32(const Lane& lane, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
                std::int64_t lda, const float* b, std::int64_t ldb, float* c, std::int64_t ldc);
  void own_gemm(const Lane& lane, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
                std::int64_t lda, const float* b, std::int64_t ldb, float* c, std::int64_t ldc);
  // One (batch, query head): S, P, O.
  void attend_head(const Lane& lane, const Float32Tensor& q, const Float32Tensor& k, const Float32Tensor& v,
                   std::int64_t b, std::int64_t h);
};

void UnfusedAttention::State::gemm_f32(const Lane& lane, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                                       const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float* c,
                                       std::int64_t ldc) {
  if (gemm == GemmBackend::own) return own_gemm(lane, transpose_b, m, n, k, alpha, a, lda, b, ldb, c, ldc);
  openblas().sgemm(kCblasRowMajor, kCblasNoTrans, transpose_b ? kCblasTrans : kCblasNoTrans, int(m), int(n), int(k),
                   alpha, a, int(lda), b, int(ldb), 0.0f, c, int(ldc));
}

// Blocked over k (kDepthBlock) so a packed panel stays in L2; each thread
// takes whole panels and runs every row block against them.
void UnfusedAttention::State::own_gemm(const Lane& lane, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                                       const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float* c,
                                       std::int64_t ldc) {
  const int tile_rows = kernels->tile_rows, tile_cols = kernels->tile_cols;
  const std::int64_t panel_count = (n + tile_cols - 1) / tile_cols;
  const std::int64_t row_blocks = (m + tile_rows - 1) / tile_rows;
  for (std::int64_t k0 = 0; k0 < k; k0 += kDepthBlock) {
    const std::int64_t depth = std::min(kDepthBlock, k - k0);
#pragma omp parallel for num_threads(lane.threads) if (lane.threads > 1)
    for (std::int64_t panel = 0; panel < panel_count; ++panel) {
      float* packed = lane.panels + panel * depth * tile_cols;  // (depth, tile_cols)
      for (std::int64_t p = 0; p < depth; ++p) {
        for (int col = 0; col < tile_cols; ++col) {
          const std::int64_t j = panel * tile_cols + col;
          const float* element = transpose_b ? b + j * ldb + (k0 + p) : b + (k0 + p) * ldb + j;
          packed[p * tile_cols + col] = j < n ? *element : 0.0f;
        }
      }
    }
#pragma omp parallel for collapse(2) schedule(static) num_threads(lane.threads) if (lane.threads > 1)
    for (std::int64_t panel = 0; panel < panel_count; ++panel) {
      for (std::int64_t block = 0; block < row_blocks; ++block) {
        float tile[kMaxTileElements];  // (tile_rows, tile_cols)
        const std::int64_t i0 = block * tile_rows, j0 = panel * tile_cols;
        const int rows = static_cast<int>(std::min<std::int64_t>(tile_rows, m - i0));
        const int cols = static_cast<int>(std::min<std::int64_t>(tile_cols, n - j0));
        kernels->micro_tile(rows, a + i0 * lda + k0, lda, lane.panels + panel * depth * tile_cols, depth, tile);
        for (int r = 0; r < rows; ++r) {
          float* c_row = c + (i0 + r) * ldc + j0;
          for (int col = 0; col < cols; ++col) {
            const float value = alpha * tile[r * tile_cols + col];
            c_row[col] = k0 == 0 ? value : c_row[col] + value;
          }
        }
      }
    }
  }
}

void UnfusedAttention::State::attend_head(const Lane& lane, const Float32Tensor& q, const Float32Tensor& k,
                                          const Float32Tensor& v, std::int64_t b, std::int64_t h) {
  const AttentionParams& p = params;
  const std::int64_t hk = h / (p.heads_q / p.heads_kv);
  const std::int64_t sq = p.seqlen_q, sk = p.seqlen_k;
  const float* q_head = q.data + b * q.stride.batch + h * q.stride.head;   // (sq, d), row stride q.stride.row
  const float* k_head = k.data + b * k.stride.batch + hk * k.stride.head;  // (sk, d)
  const float* v_head = v.data + b * v.stride.batch + hk * v.stride.head;  // (sk, dv)
  float* out_head = out.data() + (b * sq * p.heads_q + h) * p.head_dim_v;  // (sq, dv), row stride heads_q * dv
  float* s = lane.scores;  // (sq, sk)
  gemm_f32(lane, true, sq, sk, p.head_dim, p.softmax_scale, q_head, q.stride.row, k_head, k.stride.row, s, sk);
  const UnfusedKernels& kern = *kernels;
  const MaskSpec mask = p.mask;
#pragma omp parallel for schedule(static) num_threads(lane.threads) if (lane.threads > 1)
  for (std::int64_t i = 0; i < sq; ++i) kern.softmax_row(s + i * sk, sk, core::kept_keys(mask, i, sq, sk));
  gemm_f32(lane, false, sq, p.head_dim_v, sk, 1.0f, s, sk, v_head, v.stride.row, out_head, p.heads_q * p.head_dim_v);
}

UnfusedAttention::UnfusedAttention(const AttentionParams& params, GemmBackend gemm, Isa isa, int threads)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  const AttentionParams& p = params;
  s.params = params;
  s.gemm = gemm == GemmBackend::openblas && !openblas_available() ? GemmBackend::own : gemm;
  s.kernels = &kernels_for(isa);
  s.threads = std::max(threads, 1);
  if (p.dtype != DType::f32) {
    s.q32.resize(p.batch * p.seqlen_q * p.heads_q * p.head_dim);
    s.k32.resize(p.batch * p.seqlen_k * p.heads_kv * p.head_dim);
    s.v32.resize(p.batch * p.seqlen_k * p.heads_kv * p.head_dim_v);
  }
  // Heads in parallel when there are enough of them and their S buffers fit
  // in kMaxScoreBytes together: no thread then waits on another inside a head.
  const std::int64_t score_floats = p.seqlen_q * p.seqlen_k;
  const std::int64_t heads = p.batch * p.heads_q;
  const bool parallel_heads = s.threads > 1 && heads >= s.threads && s.threads * score_floats * 4 <= kMaxScoreBytes;
  s.concurrent_heads = parallel_heads ? s.threads : 1;
  s.scores.resize(s.concurrent_heads * score_floats);
  if (s.gemm == GemmBackend::own) {
    const std::int64_t cols = s.kernels->tile_cols;
    auto padded = [cols](std::int64_t n) { return (n + cols - 1) / cols * cols; };
    s.panel_floats = std::max(padded(p.seqlen_k) * std::min(kDepthBlock, p.head_dim),
                              padded(p.head_dim_v) * std::min(kDepthBlock, p.seqlen_k));
    s.panels.resize(s.concurrent_heads * s.panel_floats);
  }
  s.out.resize(p.batch * p.seqlen_q * p.heads_q * p.head_dim_v);
}

UnfusedAttention::~UnfusedAttention() = default;

void UnfusedAttention::run() {
  State& s = *state_;
  const AttentionParams& p = s.params;
  if (s.gemm == GemmBackend::openblas) openblas().set_num_threads(s.concurrent_heads > 1 ? 1 : s.threads);
  Float32Tensor q{static_cast<const float*>(p.q), p.q_stride};
  Float32Tensor k{static_cast<const float*>(p.k), p.k_stride};
  Float32Tensor v{static_cast<const float*>(p.v), p.v_stride};
  if (p.dtype != DType::f32) {
    auto contiguous = [](std::int64_t seqlen, std::int64_t heads, std::int64_t dim) {
      return BshdStrides{seqlen * heads * dim, heads * dim, dim};
    };
    convert_to_f32(p.dtype, p.q, p.q_stride, p.batch, p.seqlen_q, p.heads_q, p.head_dim, s.q32.data(), s.threads);
    convert_to_f32(p.dtype, p.k, p.k_stride, p.batch, p.seqlen_k, p.heads_kv, p.head_dim, s.k32.data(), s.threads);
    convert_to_f32(p.dtype, p.v, p.v_stride, p.batch, p.seqlen_k, p.heads_kv, p.head_dim_v, s.v32.data(), s.threads);
    q = {s.q32.data(), contiguous(p.seqlen_q, p.heads_q, p.head_dim)};
    k = {s.k32.data(), contiguous(p.seqlen_k, p.heads_kv, p.head_dim)};
    v = {s.v32.data(), contiguous(p.seqlen_k, p.heads_kv, p.head_dim_v)};
  }
  const std::int64_t heads = p.batch * p.heads_q;
  if (s.concurrent_heads == 1) {
    const State::Lane lane{s.scores.data(), s.panels.data(), s.threads};
    for (std::int64_t bh = 0; bh < heads; ++bh) s.attend_head(lane, q, k, v, bh / p.heads_q, bh % p.heads_q);
    return;
  }
#pragma omp parallel num_threads(s.concurrent_heads)
  {
    const std::int64_t t = omp_get_thread_num();
    const State::Lane lane{s.scores.data() + t * p.seqlen_q * p.seqlen_k, s.panels.data() + t * s.panel_floats, 1};
#pragma omp for schedule(dynamic)
    for (std::int64_t bh = 0; bh < heads; ++bh) s.attend_head(lane, q, k, v, bh / p.heads_q, bh % p.heads_q);
  }
}

std::span<const float> UnfusedAttention::out() const { return state_->out; }

}  // namespace flashattn::tools
