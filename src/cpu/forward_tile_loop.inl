// The CPU forward tile loop, shared by every ISA: FlashAttention-2's online
// softmax over key tiles, never an (seqlen_q x seqlen_k) buffer.
// Included inside namespace flashattn::cpu::<isa> after that ISA's vector
// layer (struct Vec, convert_to_f32); every name here is ISA-local.
//
// Work item = (batch, query head, tile of q_rows query rows). For each key
// tile of k_cols keys (aligned to multiples of k_cols, so a row's arithmetic
// never depends on which rows share its tile or on the thread count):
//   S = scale * Q K^T                    gemm, K packed transposed
//   S = hooks(S): softcap, alibi, mask   mask only on tiles cut by the band
//   m' = max(m, rowmax S); l = l e^(m - m') + rowsum e^(S - m')
//   P = e^(S - m') with dropped weights zeroed; O = e^(m - m') O + P V
// then out = O / l / (1 - p_drop), lse = m + log l.

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int kW = Vec::kWidth;

inline std::int64_t round_up(std::int64_t x, std::int64_t m) { return (x + m - 1) / m * m; }

// C (Rows x Cols*kW) (+)= A (Rows x depth) * B (depth x Cols*kW), row-major.
template <int Rows, int Cols>
inline void gemm_block(std::int64_t depth, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float* c,
                       std::int64_t ldc, bool accumulate) {
  typename Vec::Reg acc[Rows][Cols];
  for (int r = 0; r < Rows; ++r)
    for (int v = 0; v < Cols; ++v) acc[r][v] = accumulate ? Vec::load(c + r * ldc + v * kW) : Vec::zero();
  for (std::int64_t p = 0; p < depth; ++p) {
    typename Vec::Reg bv[Cols];
    for (int v = 0; v < Cols; ++v) bv[v] = Vec::load(b + p * ldb + v * kW);
    for (int r = 0; r < Rows; ++r) {
      const typename Vec::Reg av = Vec::set1(a[r * lda + p]);
      for (int v = 0; v < Cols; ++v) acc[r][v] = Vec::fmadd(av, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < Rows; ++r)
    for (int v = 0; v < Cols; ++v) Vec::store(c + r * ldc + v * kW, acc[r][v]);
}

template <int Cols>
inline void gemm_rows(std::int64_t rows, std::int64_t depth, const float* a, std::int64_t lda, const float* b,
                      std::int64_t ldb, float* c, std::int64_t ldc, bool accumulate) {
  std::int64_t r = 0;
  for (; r + 4 <= rows; r += 4) gemm_block<4, Cols>(depth, a + r * lda, lda, b, ldb, c + r * ldc, ldc, accumulate);
  switch (rows - r) {
    case 3:
      gemm_block<3, Cols>(depth, a + r * lda, lda, b, ldb, c + r * ldc, ldc, accumulate);
      break;
    case 2:
      gemm_block<2, Cols>(depth, a + r * lda, lda, b, ldb, c + r * ldc, ldc, accumulate);
      break;
    case 1:
      gemm_block<1, Cols>(depth, a + r * lda, lda, b, ldb, c + r * ldc, ldc, accumulate);
      break;
    default:
      break;
  }
}

// C (rows x cols) (+)= A (rows x depth) * B (depth x cols); cols a multiple of kW.
inline void gemm(std::int64_t rows, std::int64_t cols, std::int64_t depth, const float* a, std::int64_t lda,
                 const float* b, std::int64_t ldb, float* c, std::int64_t ldc, bool accumulate) {
  std::int64_t col = 0;
  for (; col + 2 * kW <= cols; col += 2 * kW) gemm_rows<2>(rows, depth, a, lda, b + col, ldb, c + col, ldc, accumulate);
  for (; col < cols; col += kW) gemm_rows<1>(rows, depth, a, lda, b + col, ldb, c + col, ldc, accumulate);
}

// Per-thread scratch, carved from one allocation (no std containers in an ISA region).
class Workspace {
 public:
  Workspace(const TileShape& t, std::int64_t head_dim, std::int64_t head_dim_v)
      : k_pad_(round_up(t.k_cols, kW)), dv_pad_(round_up(head_dim_v, kW)) {
    const std::int64_t sizes[] = {
        t.q_rows * head_dim, head_dim * k_pad_, t.k_cols * dv_pad_, t.q_rows * k_pad_, t.q_rows * dv_pad_,
        t.q_rows * dv_pad_,  t.q_rows,          t.q_rows,           t.q_rows,          std::max(head_dim, dv_pad_)};
    std::int64_t total = 0;
    for (std::int64_t s : sizes) total += round_up(s, 16);
    memory_ = static_cast<float*>(::operator new (total * sizeof(float), std::align_val_t{64}));
    float* next = memory_;
    float** slots[] = {&q, &kt, &v, &s, &o, &pv, &row_max, &row_sum, &row_alpha, &row};
    for (int n = 0; n < 10; ++n) {
      *slots[n] = next;
      next += round_up(sizes[n], 16);
    }
  }
  ~Workspace() { ::operator delete (memory_, std::align_val_t{64}); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  std::int64_t k_pad() const { return k_pad_; }
  std::int64_t dv_pad() const { return dv_pad_; }

  float* q;          // (q_rows, head_dim)   queries
  float* kt;         // (head_dim, k_pad)    keys, transposed
  float* v;          // (k_cols, dv_pad)     values
  float* s;          // (q_rows, k_pad)      scores, then probabilities
  float* o;          // (q_rows, dv_pad)     unnormalised output
  float* pv;         // (q_rows, dv_pad)     P V of the current key tile
  float* row_max;    // (q_rows)
  float* row_sum;    // (q_rows)
  float* row_alpha;  // (q_rows)          rescale of o for the current key tile
  float* row;        // (max(head_dim, dv_pad)) one converted row

 private:
  std::int64_t k_pad_, dv_pad_;
  float* memory_;
};

inline std::int64_t forward_workspace_bytes(const AttentionParams& p, const ExecConfig& exec) {
  const TileShape& t = exec.tiles;
  const std::int64_t k_pad = round_up(t.k_cols, kW), dv_pad = round_up(p.head_dim_v, kW);
  const std::int64_t floats = t.q_rows * p.head_dim + p.head_dim * k_pad + t.k_cols * dv_pad + t.q_rows * k_pad +
                              2 * t.q_rows * dv_pad + 3 * t.q_rows + std::max(p.head_dim, dv_pad) + 10 * 16;
  return floats * static_cast<std::int64_t>(sizeof(float)) * exec.threads;
}

// Everything fixed for one work item.
struct TileTask {
  const AttentionParams* p;
  core::SequenceExtent seq;
  std::int64_t b, h, hk;
  std::int64_t row_begin, rows;  // query rows [row_begin, row_begin + rows) of the sequence
  float slope;                   // alibi slope, 0 without alibi
  core::DropoutStream dropout;
};

inline const void* element_at(const void* base, DType dtype, std::int64_t offset) {
  return static_cast<const char*>(base) + offset * dtype_size(dtype);
}

// Keys [key_begin, key_begin + n) of this sequence's kv head as K^T and V tiles.
inline void pack_k(const TileTask& t, std::int64_t key_begin, std::int64_t n, Workspace& ws) {
  const AttentionParams& p = *t.p;
  const std::int64_t ld = ws.k_pad();
  for (std::int64_t j = 0; j < n; ++j) {
    const std::int64_t at = core::element_offset(p.k_stride, t.b, t.seq.k_start + key_begin + j, t.hk);
    convert_to_f32(element_at(p.k, p.dtype, at), p.dtype, p.head_dim, ws.row);
    for (std::int64_t c = 0; c < p.head_dim; ++c) ws.kt[c * ld + j] = ws.row[c];
  }
  for (std::int64_t c = 0; c < p.head_dim; ++c)
    for (std::int64_t j = n; j < round_up(n, kW); ++j) ws.kt[c * ld + j] = 0.0f;
}

inline void pack_v(const TileTask& t, std::int64_t key_begin, std::int64_t n, Workspace& ws) {
  const AttentionParams& p = *t.p;
  const std::int64_t ld = ws.dv_pad();
  for (std::int64_t j = 0; j < n; ++j) {
    const std::int64_t at = core::element_offset(p.v_stride, t.b, t.seq.k_start + key_begin + j, t.hk);
    float* dst = ws.v + j * ld;
    convert_to_f32(element_at(p.v, p.dtype, at), p.dtype, p.head_dim_v, dst);
    for (std::int64_t c = p.head_dim_v; c < ld; ++c) dst[c] = 0.0f;
  }
}

// S (rows x round_up(n, kW)) = final scores of keys [key_begin, key_begin + n):
// -inf where masked and in the padding.
inline void score_tile(const TileTask& t, std::int64_t key_begin, std::int64_t n, Workspace& ws) {
  const AttentionParams& p = *t.p;
  const std::int64_t ld = ws.k_pad(), n_pad = round_up(n, kW);
  const std::int64_t sq = t.seq.seqlen_q, sk = t.seq.seqlen_k;
  pack_k(t, key_begin, n, ws);
  gemm(t.rows, n_pad, p.head_dim, ws.q, p.head_dim, ws.kt, ld, ws.s, ld, false);
  // Scaling after the product (not pre-scaled queries) rounds like the naive algorithm.
  const typename Vec::Reg scale = Vec::set1(p.softmax_scale);
  const bool masked =
      !core::tile_fully_kept(p.mask, t.row_begin, t.row_begin + t.rows, key_begin, key_begin + n, sq, sk);
  for (std::int64_t r = 0; r < t.rows; ++r) {
    float* s = ws.s + r * ld;
    const std::int64_t i = t.row_begin + r;
    for (std::int64_t j = 0; j < n_pad; j += kW) Vec::store(s + j, Vec::mul(scale, Vec::load(s + j)));
    if (p.softcap > 0) {
      for (std::int64_t j = 0; j < n; ++j) s[j] = p.softcap * std::tanh(s[j] / p.softcap);
    }
    if (p.alibi_slopes) {
      const std::int64_t diag = i + sk - sq - key_begin;  // distance origin in tile coordinates
      // One rounding, as in the naive algorithm: slope * distance is exact in
      // double. In float, ISAs without FMA rounded twice and failed the oracle
      // on alibi-dominated scores (the compiler contracts it where FMA exists).
      const double slope = t.slope;
      for (std::int64_t j = 0; j < n; ++j)
        s[j] = static_cast<float>(s[j] - slope * static_cast<double>(std::abs(diag - j)));
    }
    std::int64_t lo = 0, hi = n;
    if (masked) {
      const core::KeyRange keep = core::kept_keys(p.mask, i, sq, sk);
      lo = std::clamp<std::int64_t>(keep.begin - key_begin, 0, n);
      hi = std::clamp<std::int64_t>(keep.end - key_begin, lo, n);
    }
    for (std::int64_t j = 0; j < lo; ++j) s[j] = kNegInf;
    for (std::int64_t j = hi; j < n_pad; ++j) s[j] = kNegInf;
  }
}

// Zeroes the dropped weights of row i in p[0, n) (key_begin is a multiple of 4).
inline void apply_dropout(const core::DropoutStream& dropout, std::int64_t i, std::int64_t key_begin, std::int64_t n,
                          float* prob) {
  for (std::int64_t j = 0; j < n; j += 4) {
    const unsigned bits = dropout.dropped_bits(i, (key_begin + j) >> 2);
    for (std::int64_t k = 0; k < 4 && j + k < n; ++k)
      if ((bits >> k) & 1u) prob[j + k] = 0.0f;
  }
}

// Online-softmax step for one row: turns scores into unnormalised
// probabilities, updates the running max and sum, and returns the factor
// alpha = e^(old max - new max) by which the row's output must be rescaled
// (exactly 1 when the max did not move, so skipped tiles change nothing).
inline float softmax_step(float* s, std::int64_t n_pad, float& row_max, float& row_sum) {
  typename Vec::Reg mx = Vec::set1(kNegInf);
  for (std::int64_t j = 0; j < n_pad; j += kW) mx = Vec::max(mx, Vec::load(s + j));
  const float new_max = std::max(row_max, Vec::reduce_max(mx));
  if (new_max == kNegInf) {  // nothing kept yet: P = 0
    for (std::int64_t j = 0; j < n_pad; ++j) s[j] = 0.0f;
    return 1.0f;
  }
  float alpha = 1.0f;
  if (new_max != row_max) {
    alpha = std::exp(row_max - new_max);
    row_sum *= alpha;
    row_max = new_max;
  }
  const typename Vec::Reg shift = Vec::set1(-new_max);
  typename Vec::Reg sum = Vec::zero();
  for (std::int64_t j = 0; j < n_pad; j += kW) {
    const typename Vec::Reg e = Vec::exp(Vec::add(Vec::load(s + j), shift));
    Vec::store(s + j, e);
    sum = Vec::add(sum, e);
  }
  row_sum += Vec::reduce_add(sum);
  return alpha;
}

// o = alpha o + pv: the tile's P V is summed on its own first (blocked
// summation), which keeps the fp32 error below the naive running sum's.
inline void merge_tile_output(float alpha, const float* pv, std::int64_t dv_pad, float* o) {
  const typename Vec::Reg va = Vec::set1(alpha);
  for (std::int64_t c = 0; c < dv_pad; c += kW) {
    Vec::store(o + c, Vec::fmadd(va, Vec::load(o + c), Vec::load(pv + c)));
  }
}

inline void store_row(const float* src, std::int64_t n, DType dtype, void* dst) {
  switch (dtype) {
    case DType::f32:
      std::memcpy(dst, src, n * sizeof(float));
      break;
    case DType::bf16:
      for (std::int64_t c = 0; c < n; ++c) static_cast<bfloat16*>(dst)[c] = to_bfloat16(src[c]);
      break;
    default:
      for (std::int64_t c = 0; c < n; ++c) static_cast<float16*>(dst)[c] = to_float16(src[c]);
      break;
  }
}

// Second pass, only when probabilities are requested: p = exp(s - m) / l.
// Not exp(s - lse): lse = m + log l rounded to fp32 loses |lse| * 2^-24 of
// absolute accuracy, ~6e-4 relative on every probability for logits ~1e4.
inline void write_probs(const TileTask& t, const core::KeyRange& keys, std::int64_t k_cols, Workspace& ws) {
  const AttentionParams& p = *t.p;
  for (std::int64_t kb = keys.begin / k_cols * k_cols; kb < keys.end; kb += k_cols) {
    const std::int64_t n = std::min(k_cols, t.seq.seqlen_k - kb);
    score_tile(t, kb, n, ws);
    for (std::int64_t r = 0; r < t.rows; ++r) {
      const std::int64_t i = t.row_begin + r;
      if (ws.row_sum[r] == 0.0f) continue;
      float* dst = p.probs + t.b * p.probs_batch_stride + t.h * p.probs_head_stride + i * p.probs_row_stride + kb;
      const float* s = ws.s + r * ws.k_pad();
      for (std::int64_t j = 0; j < n; ++j) {
        if (s[j] == kNegInf) continue;
        const float prob = std::exp(s[j] - ws.row_max[r]) / ws.row_sum[r];
        dst[j] = (p.dropout_p > 0 && t.dropout.dropped(i, kb + j)) ? -prob : prob;
      }
    }
  }
}

inline void attend_tile(const TileTask& t, const TileShape& tiles, Workspace& ws) {
  const AttentionParams& p = *t.p;
  const std::int64_t ld_s = ws.k_pad(), ld_o = ws.dv_pad();
  for (std::int64_t r = 0; r < t.rows; ++r) {
    const std::int64_t at = core::element_offset(p.q_stride, t.b, t.seq.q_start + t.row_begin + r, t.h);
    float* q = ws.q + r * p.head_dim;
    convert_to_f32(element_at(p.q, p.dtype, at), p.dtype, p.head_dim, q);
    ws.row_max[r] = kNegInf;
    ws.row_sum[r] = 0.0f;
    for (std::int64_t c = 0; c < ld_o; ++c) ws.o[r * ld_o + c] = 0.0f;
  }
  const core::KeyRange keys =
      core::kept_keys_of_rows(p.mask, t.row_begin, t.row_begin + t.rows, t.seq.seqlen_q, t.seq.seqlen_k);
  for (std::int64_t kb = keys.begin / tiles.k_cols * tiles.k_cols; kb < keys.end; kb += tiles.k_cols) {
    const std::int64_t n = std::min(tiles.k_cols, t.seq.seqlen_k - kb);
    score_tile(t, kb, n, ws);
    for (std::int64_t r = 0; r < t.rows; ++r) {
      float* s = ws.s + r * ld_s;
      ws.row_alpha[r] = softmax_step(s, round_up(n, kW), ws.row_max[r], ws.row_sum[r]);
      if (p.dropout_p > 0 && ws.row_max[r] != kNegInf) apply_dropout(t.dropout, t.row_begin + r, kb, n, s);
    }
    pack_v(t, kb, n, ws);
    gemm(t.rows, ld_o, n, ws.s, ld_s, ws.v, ld_o, ws.pv, ld_o, false);
    for (std::int64_t r = 0; r < t.rows; ++r)
      merge_tile_output(ws.row_alpha[r], ws.pv + r * ld_o, ld_o, ws.o + r * ld_o);
  }

  // out = O * (keep_scale / l) with one rounding: in float, keep_scale, the
  // quotient and the product each rounded, up to ~2 ulp on every output.
  const double keep_scale = 1.0 / (1.0 - static_cast<double>(p.dropout_p));
  for (std::int64_t r = 0; r < t.rows; ++r) {
    const std::int64_t row = t.seq.q_start + t.row_begin + r;
    float* o = ws.o + r * ld_o;
    const bool empty = ws.row_sum[r] == 0.0f;
    const double inv = empty ? 0.0 : keep_scale / ws.row_sum[r];
    for (std::int64_t c = 0; c < p.head_dim_v; ++c) o[c] = static_cast<float>(o[c] * inv);
    const std::int64_t at = core::element_offset(p.out_stride, t.b, row, t.h);
    store_row(o, p.head_dim_v, p.dtype, static_cast<char*>(p.out) + at * dtype_size(p.dtype));
    if (p.lse) {
      p.lse[t.b * p.lse_batch_stride + t.h * p.lse_head_stride + row] =
          empty ? p.lse_of_empty_row : ws.row_max[r] + std::log(ws.row_sum[r]);
    }
  }
  if (p.probs) write_probs(t, keys, tiles.k_cols, ws);
}

inline void zero_probs(const AttentionParams& p) {
#pragma omp for collapse(2)
  for (std::int64_t b = 0; b < p.batch; ++b)
    for (std::int64_t h = 0; h < p.heads_q; ++h)
      for (std::int64_t i = 0; i < p.seqlen_q; ++i)
        std::memset(p.probs + b * p.probs_batch_stride + h * p.probs_head_stride + i * p.probs_row_stride, 0,
                    p.seqlen_k * sizeof(float));
}

// Work items run heaviest first (the last query tiles see the most keys under
// a bottom-right causal mask), handed out dynamically.
inline void run_forward_tiles(const AttentionParams& p, const ExecConfig& exec) {
  const TileShape tiles = exec.tiles;
  const std::int64_t q_tiles = (p.seqlen_q + tiles.q_rows - 1) / tiles.q_rows;
  const std::int64_t batch_heads = p.batch * p.heads_q;
  const std::int64_t items = q_tiles * batch_heads;
#pragma omp parallel num_threads(exec.threads)
  {
    Workspace ws(tiles, p.head_dim, p.head_dim_v);
    if (p.probs) zero_probs(p);  // ends with a barrier before any tile writes
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = 0; item < items; ++item) {
      const std::int64_t tile = q_tiles - 1 - item / batch_heads;
      const std::int64_t b = (item % batch_heads) / p.heads_q, h = item % p.heads_q;
      TileTask t;
      t.p = &p;
      t.seq = core::sequence_extent(p, b);
      t.row_begin = tile * tiles.q_rows;
      if (t.row_begin >= t.seq.seqlen_q) continue;
      t.rows = std::min(tiles.q_rows, t.seq.seqlen_q - t.row_begin);
      t.b = b;
      t.h = h;
      t.hk = h / (p.heads_q / p.heads_kv);
      t.slope = p.alibi_slopes ? p.alibi_slopes[b * p.alibi_batch_stride + h] : 0.0f;
      t.dropout = core::make_dropout_stream(p.seed, p.offset, p.dropout_p, b, h, p.heads_q);
      attend_tile(t, tiles, ws);
    }
  }
}
