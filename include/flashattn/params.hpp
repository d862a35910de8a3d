// AttentionParams — the one struct carried from every front-end to every
// kernel. Plain data: pointers, element strides, sizes, the mask, the
// features and the outputs. No framework vocabulary below this line.
#pragma once

#include <cstdint>
#include <limits>

#include "flashattn/dtype.hpp"
#include "flashattn/tensor.hpp"

namespace flashattn {

// Where the diagonal of a band mask sits. With d = seqlen_k - seqlen_q, row i
// of a top-left mask is centred on key i, of a bottom-right mask on key i + d.
enum class MaskAnchor : std::uint8_t { top_left, bottom_right };

// Row i keeps keys j with  c - left <= j <= c + right,  c = i (+ d).
// A negative bound is unbounded. No mask: both unbounded. Causal: right = 0.
struct MaskSpec {
  MaskAnchor anchor = MaskAnchor::bottom_right;
  std::int64_t left = -1;
  std::int64_t right = -1;

  bool unbounded() const { return left < 0 && right < 0; }
};

// Element strides of a (batch, seqlen, heads, head_dim) tensor; the last
// dimension is contiguous.
struct BshdStrides {
  std::int64_t batch = 0;
  std::int64_t row = 0;
  std::int64_t head = 0;
};

struct AttentionParams {
  DType dtype = DType::f32;  // of q, k, v and out
  Device device{};
  void* stream = nullptr;    // CUDA: the cudaStream_t to launch on (null: the legacy default stream)

  // q (batch, seqlen_q, heads_q, head_dim), k (batch, seqlen_k, heads_kv,
  // head_dim), v (batch, seqlen_k, heads_kv, head_dim_v), out like q with
  // head_dim_v. Varlen: batch strides are 0 and sequence b starts at row
  // cu_seqlens_q[b] (cu_seqlens_k[b] for k and v).
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  BshdStrides q_stride, k_stride, v_stride, out_stride;

  std::int64_t batch = 0;
  std::int64_t heads_q = 0;
  std::int64_t heads_kv = 0;     // divides heads_q; query head h reads kv head h / (heads_q / heads_kv)
  std::int64_t seqlen_q = 0;     // varlen: max_seqlen_q
  std::int64_t seqlen_k = 0;     // varlen: max_seqlen_k; with cache_seqlens: a bound of every key count
  std::int64_t head_dim = 0;     // of q and k
  std::int64_t head_dim_v = 0;   // of v and out

  // Varlen (all null for fixed-length batches). int32, batch + 1 entries from 0.
  const std::int32_t* cu_seqlens_q = nullptr;
  const std::int32_t* cu_seqlens_k = nullptr;
  // Optional (batch,): use only the first seqused_k[b] keys of sequence b;
  // the mask's bottom-right anchor uses this length.
  const std::int32_t* seqused_k = nullptr;

  // KV-cache addressing (flash_attn_with_kvcache, varlen over pages); forward
  // only. Key j of sequence b (counted from the sequence's first key) is
  //   paged (block_table set): row j % page_size of page
  //     block_table[b * block_table_stride + j / page_size]; k and v are
  //     (num_pages, page_size, heads_kv, dim), their batch stride is the page stride;
  //   otherwise: row k_start + j of batch kv_batch_index[b] (b when null),
  //     k_start = cu_seqlens_k[b] (varlen) or k_leftpad[b] (0 when null).
  const std::int32_t* block_table = nullptr;
  std::int64_t block_table_stride = 0;
  std::int64_t page_size = 0;
  const std::int32_t* kv_batch_index = nullptr;  // (batch,)
  const std::int32_t* k_leftpad = nullptr;       // (batch,); fixed-length batches only

  // KV-cache lengths (fixed-length batches). The cache row (or pages) of
  // sequence b held cache_seqlens[b] keys before the call and seqlen_new
  // more are appended after them (run_kvcache_append), so the sequence's
  // keys are positions [k_start, cache_seqlens[b] + seqlen_new) and it has
  // cache_seqlens[b] + seqlen_new - k_start of them (core::sequence_extent).
  // Null: every row ends at seqlen_k (seqlen_k - seqlen_new keys before the
  // call: flash-attn's int cache_seqlens, or none). Set, seqlen_k is only an
  // upper bound of the key counts (the CUDA front-end passes the cache's
  // capacity: the host cannot read device lengths).
  const std::int32_t* cache_seqlens = nullptr;  // (batch,)
  std::int64_t seqlen_new = 0;

  // New keys and values that run_kvcache_append writes into the cache:
  // row t of sequence b goes to position c_b + t, c_b = cache_seqlens[b]
  // (core::cached_keys), addressed as key position - k_start above; k is
  // rotated when rotary.cos is set. Read only by the append: the attention
  // reads the cache.
  const void* k_new = nullptr;  // (batch, seqlen_new, heads_kv, head_dim)
  const void* v_new = nullptr;  // (batch, seqlen_new, heads_kv, head_dim_v)
  BshdStrides k_new_stride, v_new_stride;

  // Rotary embedding (RoPE) as flash-attn applies it: in fp32, rounded to
  // dtype (core::rotate_pair). Appended key t of sequence b turns by the
  // angle of its position c_b + t, query row i by that of c_b + i when
  // q_per_row (causal or windowed), else of c_b (core::rotary_position_of_q).
  struct Rotary {
    const void* cos = nullptr;  // (positions, dim / 2) of dtype, rows cos_stride apart; null: no rotary
    const void* sin = nullptr;  // like cos
    std::int64_t cos_stride = 0, sin_stride = 0;
    std::int64_t positions = 0;  // rows of the tables (CUDA clamps device-derived positions to them)
    std::int64_t dim = 0;        // rotated dims, even, <= head_dim
    bool interleaved = true;     // pairs (2c, 2c + 1); false: (c, c + dim / 2) (GPT-NeoX)
    bool q_per_row = false;      // q row i at c_b + i; false: every row at c_b
    // The forward rotates q's rows as it loads them (the CUDA kernel). The
    // CPU backends take q already rotated (the front-end passes a rotated
    // copy) and refuse params with this set.
    bool rotate_q = false;
  } rotary;

  // What the index arrays above may address: the sizes of the tensors they
  // point into. The CPU front-ends check index contents on the host; device
  // index arrays cannot be read there without synchronising, so the CUDA
  // backend clamps every index it reads to these bounds (a bad index gives
  // unspecified values, never an access out of bounds). 0: not set.
  struct IndexBounds {
    std::int64_t rows_q = 0;            // varlen: rows of q and out (total_q)
    std::int64_t rows_k = 0;            // varlen, not paged: rows of k and v (total_k)
    std::int64_t num_pages = 0;         // paged: pages of k and v
    std::int64_t pages_per_seq = 0;     // paged: columns of block_table
    std::int64_t kv_batches = 0;        // kv cache: batch size of k and v (b_cache)
    std::int64_t kv_seqlen = 0;         // kv cache, not paged: rows per sequence of k and v (the capacity)
  } bounds;

  // Split-KV: the kept keys of every work item are cut into this many chunks
  // of whole key tiles that run as separate work items, each chunk's (out,
  // lse) merged at the end (SEMANTICS.md §1). 1: no split (bitwise the
  // unsplit kernel); 0: the CPU heuristic (choose_num_splits in cpu/tile_shape.hpp) picks.
  // Ignored when probs are requested.
  std::int64_t num_splits = 1;

  // Caller-provided scratch memory on the tensors' device (CUDA: split-KV
  // partials; see forward_workspace_bytes). Null: a backend that needs
  // scratch allocates it (CPU) or runs without splitting (CUDA).
  void* workspace = nullptr;
  std::int64_t workspace_bytes = 0;

  // Score pipeline: s = scale * q.k; if softcap > 0: s = softcap * tanh(s / softcap);
  // s -= slope * |i + d - j| (alibi); masked pairs drop out of the softmax.
  float softmax_scale = 1.0f;
  float softcap = 0.0f;
  MaskSpec mask{};
  const float* alibi_slopes = nullptr;    // (batch, heads_q) or (heads_q,), fp32
  std::int64_t alibi_batch_stride = 0;    // 0 when shared by every batch

  // Dropout of attention weights: probability p of dropping, kept weights
  // scaled by 1 / (1 - p). The mask is a pure function of
  // (seed, offset, batch, head, i, j): see src/core/dropout.hpp.
  float dropout_p = 0.0f;
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;

  // Optional outputs.
  // lse: fp32 natural log of each row's sum of exp(scores). Row i of
  // sequence b, head h lives at lse[b * lse_batch_stride + h * lse_head_stride
  // + row_start_q(b) + i]. Rows with no kept key get lse_of_empty_row.
  float* lse = nullptr;
  std::int64_t lse_batch_stride = 0;
  std::int64_t lse_head_stride = 0;
  float lse_of_empty_row = -std::numeric_limits<float>::infinity();

  // probs (batch, heads_q, seqlen_q, seqlen_k) fp32, contiguous in the key
  // index: softmax probabilities (before the 1/(1-p) scaling), negated where
  // dropout dropped them, 0 where masked or outside the sequence. Testing aid.
  float* probs = nullptr;
  std::int64_t probs_batch_stride = 0;
  std::int64_t probs_head_stride = 0;
  std::int64_t probs_row_stride = 0;

  // Backward (run_backward). Inputs: dout like out, and the forward's out
  // and lse (read, not written). Outputs: dq like q, dk like k, dv like v;
  // GQA/MQA: dk, dv of a kv head sum over its query heads.
  const void* dout = nullptr;
  BshdStrides dout_stride;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  BshdStrides dq_stride, dk_stride, dv_stride;
  // dq, dk, dv bitwise reproducible across runs and thread counts.
  bool deterministic = false;

  constexpr bool is_varlen() const { return cu_seqlens_q != nullptr; }
};

// Runs the attention `params` describes on the active backend (runtime.hpp).
// The params-level entry below the front-ends: params are trusted, not
// re-validated. Front-ends validate and then call this.
void run_forward(const AttentionParams& params);

// The kv-cache append params describe (k_new / v_new, rotary, cache_seqlens,
// seqlen_new): the new keys (rotated) and values written into the cache, in
// place. CPU: at once; CUDA: a kernel enqueued on params.stream, after
// checking everything run_forward(params) checks. Nothing when k_new is
// null. Params trusted, like run_forward.
void run_kvcache_append(const AttentionParams& params);

// Bytes of scratch memory run_forward(params) needs with the current
// settings. CPU: what it allocates (the per-thread tiles and split-KV
// partials). CUDA: the workspace the caller passes in params.workspace for
// split-KV (0 when the call does not split). Neither grows with seqlen_q x seqlen_k.
std::int64_t forward_workspace_bytes(const AttentionParams& params);

// The backward of run_forward: reads q, k, v, out, lse and dout, writes dq,
// dk and dv (params trusted, like run_forward). The CPU backward is
// deterministic whatever params.deterministic says: bitwise identical
// results for every run and thread count.
void run_backward(const AttentionParams& params);

// Bytes of scratch memory run_backward(params) allocates with the current
// settings: per-thread tiles plus fp32 dq accumulators (linear in seqlen_q).
std::int64_t backward_workspace_bytes(const AttentionParams& params);

}  // namespace flashattn
