// The CPU backward (FlashAttention-2 recomputation), shared by every ISA.
// Included inside namespace flashattn::cpu::<isa> after micro_kernel.inl,
// forward_workspace.inl and forward_tile_loop.inl (WorkItem, lane blocks).
//
// Work item = (batch, kv head, stripe g): the key superblocks g, g + G, ...
// of one kv head, one after the other. For each superblock (its dK and dV
// accumulate privately) and each chunk of query rows that sees it (all query
// heads of the group as lanes, like the forward):
//   S^T = K Q^T, hooks, P^T = exp(S^T - lse)      recomputed, never stored whole
//     (rows with |lse| >= kRefineLse: exp(S^T - m) / l, see refine_row_stats)
//   dP^T = z (V dO^T)                               z = dropout keep scale or 0
//   dS^T = P^T (dP^T - D) [(1 - tanh^2) softcap]    D = rowsum(dO out)
//   dV += (z P) dO,  dK += dS Q,  dQ_g^T += K^T dS^T
// dQ of stripe g accumulates in its own fp32 buffer; dq = scale * sum_g dQ_g
// in a fixed order afterwards. G depends only on the problem's shape, so the
// result is bitwise identical for any thread count and run (always
// deterministic). Memory: G fp32 copies of dq plus per-thread tiles.

constexpr std::int64_t kMaxBackwardHeadDim = 256;

// Everything of the backward's geometry.
struct BackwardDims {
  std::int64_t lanes_pad;   // query lanes of a chunk, whole vectors
  std::int64_t d_pad;       // head_dim rounded up to whole vectors and micro-kernel rows
  std::int64_t dv_pad;      // head_dim_v likewise
  std::int64_t k_cols;      // keys per tile
  std::int64_t superblock;  // keys per superblock (a multiple of k_cols)
  std::int64_t stripes;     // G
  std::int64_t rows_per_chunk;

  // Nothing here may depend on the thread count: chunk boundaries set the
  // order in which dK and dV sum over query rows.
  static BackwardDims of(const AttentionParams& p, const TileShape& t) {
    BackwardDims d;
    const std::int64_t quantum = std::max<std::int64_t>(kW, Vec::kRows);
    const std::int64_t group = p.heads_q / p.heads_kv;
    d.rows_per_chunk = std::max<std::int64_t>(1, std::min(p.seqlen_q, (4 * kMaxBlockLanes + group - 1) / group));
    d.lanes_pad = round_up(d.rows_per_chunk * group, kW);
    d.d_pad = round_up(p.head_dim, quantum);
    d.dv_pad = round_up(p.head_dim_v, quantum);
    d.k_cols = t.k_cols;
    d.superblock = 4 * t.k_cols;
    const std::int64_t superblocks = (p.seqlen_k + d.superblock - 1) / d.superblock;
    // Enough items for a few threads however few (batch, kv head) pairs there are.
    const std::int64_t pairs = p.batch * p.heads_kv;
    d.stripes = std::clamp<std::int64_t>((8 + pairs - 1) / pairs, 1, std::max<std::int64_t>(1, superblocks));
    return d;
  }
};

// Per-thread scratch of the backward. ScoreMath (F32Math, or Bf16DotMath for
// bf16 inputs on AVX512_BF16) computes S = K Q^T and dP = V dO^T, whose
// operands are exact in the input dtype; its operands (SElem) are laid out
// (depth / kPack, lanes, kPack) by lane block. Everything else is fp32.
template <class ScoreMath>
class BackwardWorkspace {
  using SElem = typename ScoreMath::Elem;

 public:
  explicit BackwardWorkspace(const BackwardDims& d) : memory_(::operator new(bytes(d), std::align_val_t{64})) {
    carve(d, reinterpret_cast<std::uintptr_t>(memory_));
  }
  ~BackwardWorkspace() { ::operator delete(memory_, std::align_val_t{64}); }
  BackwardWorkspace(const BackwardWorkspace&) = delete;
  BackwardWorkspace& operator=(const BackwardWorkspace&) = delete;

  static std::int64_t bytes(const BackwardDims& d) {
    BackwardWorkspace probe;
    return static_cast<std::int64_t>(probe.carve(d, 0));
  }

  float* kp;         // (superblock, d_pad)  K rows
  SElem* kps;        // (superblock, d_pad)  K rows for ScoreMath (kp itself for F32Math)
  SElem* vp;         // (superblock, dv_pad) V rows
  float* dk;         // (superblock, d_pad)  dK accumulator (unscaled)
  float* dv;         // (superblock, dv_pad) dV accumulator
  SElem* qt;         // (lanes_pad, d_pad)   Q^T by lane block
  float* q_rows;     // (lanes_pad, d_pad)   Q, lane by lane
  SElem* dot;        // (lanes_pad, dv_pad)  dO^T by lane block
  float* do_rows;    // (lanes_pad, dv_pad)  dO, lane by lane
  float* dqt;        // (lanes_pad, d_pad)   dQ^T of the chunk by lane block
  float* pzt;        // (k_cols, lanes_pad)  z P^T of the tile
  float* dst;        // (k_cols, lanes_pad)  dS^T of the tile
  float* dpt;        // (k_cols, kMaxBlockLanes) dP^T of one lane block
  float* capt;       // (k_cols, kMaxBlockLanes) 1 - tanh^2 of one lane block (softcap)
  float* out_row;    // (dv_pad) one row of out, converted
  float* row_max;    // (lanes_pad) m of P = exp(s - m) * inv_sum: lse, or the refined max; +inf without keys
  float* inv_sum;    // (lanes_pad) 1, or the refined 1 / l
  float* delta;      // (lanes_pad) D = rowsum(dO out)
  float* slope;      // (lanes_pad)
  float* ones;       // (kMaxBlockLanes)
  float* alibi_origin;
  std::int32_t* tile_begin;
  std::int32_t* tile_end;
  std::int64_t* lane_row;
  std::int64_t* lane_head;
  std::int64_t* keep_begin;
  std::int64_t* keep_end;
  std::uint32_t* drop_row;
  std::uint32_t* drop_stream;
  LaneBlock* blocks;

 private:
  BackwardWorkspace() : memory_(nullptr) {}

  std::uintptr_t carve(const BackwardDims& d, std::uintptr_t base) {
    std::uintptr_t at = base;
    const std::int64_t lanes = d.lanes_pad;
    kp = take<float>(at, d.superblock * d.d_pad);
    if constexpr (std::is_same_v<SElem, float>) {
      kps = kp;
    } else {
      kps = take<SElem>(at, d.superblock * d.d_pad);
    }
    vp = take<SElem>(at, d.superblock * d.dv_pad);
    dk = take<float>(at, d.superblock * d.d_pad);
    dv = take<float>(at, d.superblock * d.dv_pad);
    qt = take<SElem>(at, lanes * d.d_pad);
    q_rows = take<float>(at, lanes * d.d_pad);
    dot = take<SElem>(at, lanes * d.dv_pad);
    do_rows = take<float>(at, lanes * d.dv_pad);
    dqt = take<float>(at, lanes * d.d_pad);
    pzt = take<float>(at, d.k_cols * lanes);
    dst = take<float>(at, d.k_cols * lanes);
    dpt = take<float>(at, d.k_cols * kMaxBlockLanes);
    capt = take<float>(at, d.k_cols * kMaxBlockLanes);
    out_row = take<float>(at, d.dv_pad);
    row_max = take<float>(at, lanes);
    inv_sum = take<float>(at, lanes);
    delta = take<float>(at, lanes);
    slope = take<float>(at, lanes);
    ones = take<float>(at, kMaxBlockLanes);
    alibi_origin = take<float>(at, kMaxBlockLanes);
    tile_begin = take<std::int32_t>(at, kMaxBlockLanes);
    tile_end = take<std::int32_t>(at, kMaxBlockLanes);
    lane_row = take<std::int64_t>(at, lanes);
    lane_head = take<std::int64_t>(at, lanes);
    keep_begin = take<std::int64_t>(at, lanes);
    keep_end = take<std::int64_t>(at, lanes);
    drop_row = take<std::uint32_t>(at, lanes);
    drop_stream = take<std::uint32_t>(at, lanes);
    blocks = take<LaneBlock>(at, lanes / kW);
    return at;
  }

  void* memory_;
};

struct BackwardItem {
  WorkItem rows;         // the current chunk: b, hk, group, row_begin, rows, seq
  std::int64_t stripe;   // g
  float* dq_stripe;      // (rows_q_total, heads_q, d_pad) fp32 of stripe g
  const RowStats* stats;
};

inline void load_f32_row(const void* base, DType dtype, std::int64_t at, std::int64_t n, std::int64_t n_pad,
                         float* dst) {
  F32Math::load_row(element_at(base, dtype, at), dtype, n, n_pad, dst);
}

// An fp32 value as a ScoreMath operand: itself, or its bf16 bits (exact:
// with Bf16DotMath every such value was read from a bf16 tensor).
template <class ScoreMath>
inline typename ScoreMath::Elem score_operand(float x) {
  if constexpr (std::is_same_v<typename ScoreMath::Elem, float>) {
    return x;
  } else {
    std::uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    return static_cast<typename ScoreMath::Elem>(bits >> 16);
  }
}

// Element c of lane k in a (depth / kPack, width, kPack) operand block.
template <class ScoreMath>
inline std::int64_t operand_at(std::int64_t c, std::int64_t k, std::int64_t width) {
  constexpr int kPack = ScoreMath::kPack;
  return (c / kPack * width + k) * kPack + c % kPack;
}

// Lane bookkeeping and every per-chunk operand: Q and dO transposed (by
// lane block, ScoreMath operands) and fp32 row by row, D = rowsum(dO out)
// and P = exp(s - lse); for rows whose lse is too large for fp32
// (kRefineLse) the statistics pass's m, 1/l and D = sum_j P_j dP_j instead:
// P = exp(s - m) / l, and dP_j - D cancels where the row is one-hot, as in
// the naive algorithm (D from out would leave dP_j's rounding error there,
// multiplied into dQ and dK by |k| and |q|).
template <class ScoreMath>
inline void start_chunk(const WorkItem& w, const BackwardDims& d, const LaneBlock* blocks, std::int64_t block_count,
                        const RowStats& stats, BackwardWorkspace<ScoreMath>& ws) {
  const AttentionParams& p = *w.p;
  for (std::int64_t n = 0; n < block_count; ++n) {
    const LaneBlock& block = blocks[n];
    const std::int64_t width = block.cols * kW;
    auto* qt = ws.qt + block.first_lane * d.d_pad;
    auto* dot = ws.dot + block.first_lane * d.dv_pad;
    for (std::int64_t k = 0; k < width; ++k) {
      const std::int64_t lane = block.first_lane + k;
      float* q = ws.q_rows + lane * d.d_pad;
      float* dout = ws.do_rows + lane * d.dv_pad;
      ws.row_max[lane] = std::numeric_limits<float>::infinity();  // P = 0 unless set below
      ws.inv_sum[lane] = 1.0f;
      ws.delta[lane] = 0.0f;
      if (set_lane(w, lane, ws)) {
        const std::int64_t i = ws.lane_row[lane], h = ws.lane_head[lane], row = w.seq.q_start + i;
        load_f32_row(p.q, p.dtype, core::element_offset(p.q_stride, w.b, row, h), p.head_dim, d.d_pad, q);
        load_f32_row(p.dout, p.dtype, core::element_offset(p.dout_stride, w.b, row, h), p.head_dim_v, d.dv_pad,
                     dout);
        load_f32_row(p.out, p.dtype, core::element_offset(p.out_stride, w.b, row, h), p.head_dim_v, d.dv_pad,
                     ws.out_row);
        double delta = 0;  // D = rowsum(dO out), rounded once
        for (std::int64_t c = 0; c < p.head_dim_v; ++c) delta += static_cast<double>(dout[c]) * ws.out_row[c];
        ws.delta[lane] = static_cast<float>(delta);
        // A non-finite lse: the row kept no key, P = 0 (m = +inf) whatever lse says.
        const float lse = lse_of(p, w, i, h);
        if (std::isfinite(lse)) ws.row_max[lane] = lse;
      } else {
        std::memset(q, 0, d.d_pad * sizeof(float));
        std::memset(dout, 0, d.dv_pad * sizeof(float));
      }
      for (std::int64_t c = 0; c < d.d_pad; ++c) qt[operand_at<ScoreMath>(c, k, width)] = score_operand<ScoreMath>(q[c]);
      for (std::int64_t c = 0; c < d.dv_pad; ++c) dot[operand_at<ScoreMath>(c, k, width)] = score_operand<ScoreMath>(dout[c]);
    }
    for (std::int64_t k = 0; k < width; ++k) {  // refined rows: m, 1/l and D from the statistics pass
      const std::int64_t lane = block.first_lane + k, i = ws.lane_row[lane], h = ws.lane_head[lane];
      if (i < 0 || !refined(lse_of(p, w, i, h), stats)) continue;
      const std::int64_t at = global_row(p, w, i) * p.heads_q + h;
      ws.row_max[lane] = stats.max[at];
      ws.inv_sum[lane] = stats.inv_sum[at];
      ws.delta[lane] = stats.delta[at];
    }
  }
  std::memset(ws.dqt, 0, round_up(w.lanes(), kW) * d.d_pad * sizeof(float));
}

// Keys [key_begin, key_begin + n): K as fp32 rows (and ScoreMath rows), V
// as ScoreMath rows; rows up to n_pad zero.
template <class ScoreMath>
inline void pack_superblock(const WorkItem& w, const BackwardDims& d, std::int64_t key_begin, std::int64_t n,
                            std::int64_t n_pad, BackwardWorkspace<ScoreMath>& ws) {
  using SElem = typename ScoreMath::Elem;
  const AttentionParams& p = *w.p;
  for (std::int64_t j = 0; j < n; ++j) {
    const std::int64_t row = w.seq.k_start + key_begin + j;
    const void* k = element_at(p.k, p.dtype, core::element_offset(p.k_stride, w.b, row, w.hk));
    F32Math::load_row(k, p.dtype, p.head_dim, d.d_pad, ws.kp + j * d.d_pad);
    if constexpr (!std::is_same_v<SElem, float>) ScoreMath::load_row(k, p.dtype, p.head_dim, d.d_pad, ws.kps + j * d.d_pad);
    ScoreMath::load_row(element_at(p.v, p.dtype, core::element_offset(p.v_stride, w.b, row, w.hk)), p.dtype,
                        p.head_dim_v, d.dv_pad, ws.vp + j * d.dv_pad);
  }
  std::memset(ws.kp + n * d.d_pad, 0, (n_pad - n) * d.d_pad * sizeof(float));
  if constexpr (!std::is_same_v<SElem, float>) std::memset(ws.kps + n * d.d_pad, 0, (n_pad - n) * d.d_pad * sizeof(SElem));
  std::memset(ws.vp + n * d.dv_pad, 0, (n_pad - n) * d.dv_pad * sizeof(SElem));
  std::memset(ws.dk, 0, n_pad * d.d_pad * sizeof(float));
  std::memset(ws.dv, 0, n_pad * d.dv_pad * sizeof(float));
}

// One lane block against keys [key_begin, key_begin + n) of the tile whose
// K and V rows start at kp and vp: fills its columns of z P^T and dS^T and
// adds K^T dS^T to its dQ^T.
template <class ScoreMath>
inline void backward_block(const WorkItem& w, const BackwardDims& d, const LaneBlock& block, std::int64_t key_begin,
                           std::int64_t n, std::int64_t n_pad, std::int64_t tile_offset,
                           BackwardWorkspace<ScoreMath>& ws) {
  constexpr int kPack = ScoreMath::kPack;
  const AttentionParams& p = *w.p;
  const std::int64_t width = block.cols * kW, first = block.first_lane, ld = d.lanes_pad;
  const std::int64_t sq = w.seq.seqlen_q, sk = w.seq.seqlen_k;
  float* st = ws.pzt + first;  // S^T, then z P^T (row stride ld)
  float* dst = ws.dst + first;
  with_cols(block.cols, [&]<int Cols>() {
    score_product<ScoreMath, Cols>(n_pad, d.d_pad / kPack, ws.kps + tile_offset * d.d_pad, d.d_pad,
                                   ws.qt + first * d.d_pad, width, st, ld);
    score_product<ScoreMath, Cols>(n_pad, d.dv_pad / kPack, ws.vp + tile_offset * d.dv_pad, d.dv_pad,
                                   ws.dot + first * d.dv_pad, width, ws.dpt, width);
  });

  const bool masked = !core::tile_fully_kept(p.mask, block.row_begin, block.row_end, key_begin, key_begin + n, sq, sk);
  set_tile_hooks(w, first, width, key_begin, n, masked, ws);
  const core::DropoutStream stream = core::make_dropout_stream(p.seed, p.offset, p.dropout_p, w.b, 0, p.heads_q);
  const float keep_scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(p.dropout_p)));
  const Vec::Reg scale = Vec::set1(p.softmax_scale);
  for (std::int64_t v = 0; v < width; v += kW) {
    const Vec::Reg m = Vec::load(ws.row_max + first + v), inv_sum = Vec::load(ws.inv_sum + first + v);
    const Vec::Reg delta = Vec::load(ws.delta + first + v);
    const Vec::IReg rows = Vec::iload(ws.drop_row + first + v), streams = Vec::iload(ws.drop_stream + first + v);
    Vec::IReg words[4];
    for (std::int64_t j = 0; j < n_pad; ++j) {
      float* s = st + j * ld + v;
      float* ds = dst + j * ld + v;
      if (j >= n) {
        Vec::store(s, Vec::zero());
        Vec::store(ds, Vec::zero());
        continue;
      }
      // The forward's score hooks, in the same order and rounding.
      Vec::Reg dcap = Vec::set1(1.0f);
      const Vec::Reg x = hook_scores(p, masked, Vec::mul(Vec::load(s), scale), j, ws.slope + first + v,
                                     ws.alibi_origin + v, ws.tile_begin + v, ws.tile_end + v, &dcap);
      const Vec::Reg prob = Vec::mul(Vec::exp(Vec::sub(x, m)), inv_sum);
      Vec::Reg z = Vec::set1(1.0f);
      if (p.dropout_p > 0) {
        if ((j & 3) == 0) {  // key_begin is a multiple of 4: one Philox call per 4 keys
          words[0] = Vec::iset1(static_cast<std::uint32_t>((key_begin + j) >> 2));
          words[1] = rows;
          words[2] = streams;
          words[3] = Vec::iset1(stream.offset_lo);
          philox_lanes(words, stream.key[0], stream.key[1]);
        }
        z = Vec::mul(Vec::kept_weight(words[j & 3], stream.drop_below), Vec::set1(keep_scale));
      }
      const Vec::Reg dp = Vec::mul(z, Vec::load(ws.dpt + j * width + v));
      Vec::store(ds, Vec::mul(Vec::mul(prob, Vec::sub(dp, delta)), dcap));
      Vec::store(s, Vec::mul(z, prob));
    }
  }
  with_cols(block.cols, [&]<int Cols>() {
    output_product<F32Math, Cols>(d.d_pad, n_pad, ws.kp + tile_offset * d.d_pad, d.d_pad, dst, ld, ws.ones,
                                  ws.dqt + first * d.d_pad);
  });
}

// dV += (z P) dO and dK += dS Q for the tile's keys over lanes [lo, hi).
template <class ScoreMath>
inline void add_tile_gradients(const BackwardDims& d, std::int64_t tile_offset, std::int64_t n_pad, std::int64_t lo,
                               std::int64_t hi, BackwardWorkspace<ScoreMath>& ws) {
  const std::int64_t ld = d.lanes_pad;
  auto add = [&](const float* a, const float* b_rows, std::int64_t cols_total, float* acc) {
    for (std::int64_t c = 0; c < cols_total; c += Vec::kMaxCols * kW) {
      const int cols = static_cast<int>(std::min<std::int64_t>(Vec::kMaxCols, (cols_total - c) / kW));
      with_cols(cols, [&]<int Cols>() {
        add_product<F32Math, Cols>(n_pad, hi - lo, a + lo, ld, b_rows + lo * cols_total + c, cols_total,
                                   acc + tile_offset * cols_total + c, cols_total);
      });
    }
  };
  add(ws.pzt, ws.do_rows, d.dv_pad, ws.dv);
  add(ws.dst, ws.q_rows, d.d_pad, ws.dk);
}

// dQ^T of the chunk -> its stripe's dq rows (added: superblocks accumulate).
template <class ScoreMath>
inline void finish_chunk(const BackwardItem& item, const BackwardDims& d, const LaneBlock* blocks,
                         std::int64_t block_count, BackwardWorkspace<ScoreMath>& ws) {
  const WorkItem& w = item.rows;
  const AttentionParams& p = *w.p;
  for (std::int64_t n = 0; n < block_count; ++n) {
    const std::int64_t width = blocks[n].cols * kW;
    const float* dqt = ws.dqt + blocks[n].first_lane * d.d_pad;
    for (std::int64_t k = 0; k < width; ++k) {
      const std::int64_t lane = blocks[n].first_lane + k;
      if (ws.lane_row[lane] < 0) continue;
      const std::int64_t row = (w.seq.q_start + ws.lane_row[lane]) + (p.is_varlen() ? 0 : w.b * p.seqlen_q);
      float* dq = item.dq_stripe + (row * p.heads_q + ws.lane_head[lane]) * d.d_pad;
      for (std::int64_t c = 0; c < p.head_dim; ++c) dq[c] += dqt[c * width + k];
    }
  }
}

// The superblock's dK (scaled) and dV, complete: stored in the input dtype.
template <class ScoreMath>
inline void store_superblock(const WorkItem& w, const BackwardDims& d, std::int64_t key_begin, std::int64_t n,
                             BackwardWorkspace<ScoreMath>& ws) {
  const AttentionParams& p = *w.p;
  for (std::int64_t j = 0; j < n; ++j) {
    const std::int64_t row = w.seq.k_start + key_begin + j;
    float* dk = ws.dk + j * d.d_pad;
    for (std::int64_t c = 0; c < p.head_dim; ++c) dk[c] *= p.softmax_scale;
    store_row(dk, p.head_dim, p.dtype,
              static_cast<char*>(p.dk) + core::element_offset(p.dk_stride, w.b, row, w.hk) * dtype_size(p.dtype));
    store_row(ws.dv + j * d.dv_pad, p.head_dim_v, p.dtype,
              static_cast<char*>(p.dv) + core::element_offset(p.dv_stride, w.b, row, w.hk) * dtype_size(p.dtype));
  }
}

// Keys past seqused_k get dk = dv = 0 (no superblock covers them).
inline void zero_unused_keys(const WorkItem& w) {
  const AttentionParams& p = *w.p;
  const std::int64_t full =
      p.is_varlen() ? p.cu_seqlens_k[w.b + 1] - p.cu_seqlens_k[w.b] : p.seqlen_k;
  const float zeros[kMaxBackwardHeadDim] = {};
  for (std::int64_t j = w.seq.seqlen_k; j < full; ++j) {
    const std::int64_t row = w.seq.k_start + j;
    store_row(zeros, p.head_dim, p.dtype,
              static_cast<char*>(p.dk) + core::element_offset(p.dk_stride, w.b, row, w.hk) * dtype_size(p.dtype));
    store_row(zeros, p.head_dim_v, p.dtype,
              static_cast<char*>(p.dv) + core::element_offset(p.dv_stride, w.b, row, w.hk) * dtype_size(p.dtype));
  }
}

// Query rows [first, last) of the sequence whose kept keys meet [key_begin, key_end).
inline core::KeyRange rows_seeing(const AttentionParams& p, const core::SequenceExtent& seq, std::int64_t key_begin,
                                  std::int64_t key_end) {
  std::int64_t first = seq.seqlen_q, last = 0;
  for (std::int64_t i = 0; i < seq.seqlen_q; ++i) {
    const core::KeyRange keep = core::kept_keys(p.mask, i, seq.seqlen_q, seq.seqlen_k);
    if (keep.begin < key_end && keep.end > key_begin && keep.begin < keep.end) {
      first = std::min(first, i);
      last = i + 1;
    }
  }
  return {first, std::max(first, last)};
}

template <class ScoreMath>
inline void backward_superblock(BackwardItem& item, const BackwardDims& d, std::int64_t key_begin,
                                BackwardWorkspace<ScoreMath>& ws) {
  WorkItem& w = item.rows;
  const AttentionParams& p = *w.p;
  const std::int64_t n = std::min(d.superblock, w.seq.seqlen_k - key_begin), n_pad = round_up(n, Vec::kRows);
  pack_superblock(w, d, key_begin, n, n_pad, ws);
  const core::KeyRange rows = rows_seeing(p, w.seq, key_begin, key_begin + n);
  for (std::int64_t r = rows.begin; r < rows.end; r += d.rows_per_chunk) {
    w.row_begin = r;
    w.rows = std::min(d.rows_per_chunk, rows.end - r);
    const std::int64_t block_count = lane_blocks_of(w, ws.blocks);
    start_chunk(w, d, ws.blocks, block_count, *item.stats, ws);
    for (std::int64_t t = 0; t < n; t += d.k_cols) {
      const std::int64_t tile_n = std::min(d.k_cols, n - t), tile_pad = round_up(tile_n, Vec::kRows);
      std::int64_t lo = -1, hi = -1;  // lanes of the blocks that see the tile
      for (std::int64_t b = 0; b < block_count; ++b) {
        const LaneBlock& block = ws.blocks[b];
        const core::KeyRange keys =
            core::kept_keys_of_rows(p.mask, block.row_begin, block.row_end, w.seq.seqlen_q, w.seq.seqlen_k);
        if (keys.end <= key_begin + t || keys.begin >= key_begin + t + tile_n) continue;
        backward_block(w, d, block, key_begin + t, tile_n, tile_pad, t, ws);
        if (lo < 0) lo = block.first_lane;
        hi = block.first_lane + block.cols * kW;
      }
      if (lo >= 0) add_tile_gradients(d, t, tile_pad, lo, hi, ws);
    }
    finish_chunk(item, d, ws.blocks, block_count, ws);
  }
  store_superblock(w, d, key_begin, n, ws);
}

// dq = scale * sum over stripes, in stripe order; rows without keys get 0.
inline void reduce_dq(const AttentionParams& p, const BackwardDims& d, const float* stripes_dq, std::int64_t rows_q,
                      int threads) {
  const std::int64_t stripe_size = rows_q * p.heads_q * d.d_pad;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t r = 0; r < rows_q; ++r) {
    float sum[kMaxBackwardHeadDim];
    // Which (b, row) this global row is: fixed batches are laid out b-major.
    const std::int64_t b = p.is_varlen() ? 0 : r / p.seqlen_q;
    const std::int64_t row = p.is_varlen() ? r : r % p.seqlen_q;
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      for (std::int64_t c = 0; c < p.head_dim; ++c) sum[c] = 0.0f;
      for (std::int64_t g = 0; g < d.stripes; ++g) {
        const float* src = stripes_dq + g * stripe_size + (r * p.heads_q + h) * d.d_pad;
        for (std::int64_t c = 0; c < p.head_dim; ++c) sum[c] += src[c];
      }
      for (std::int64_t c = 0; c < p.head_dim; ++c) sum[c] *= p.softmax_scale;
      store_row(sum, p.head_dim, p.dtype,
                static_cast<char*>(p.dq) + core::element_offset(p.dq_stride, b, row, h) * dtype_size(p.dtype));
    }
  }
}

inline std::int64_t backward_rows_q(const AttentionParams& p) {
  return p.is_varlen() ? p.cu_seqlens_q[p.batch] : p.batch * p.seqlen_q;
}

inline BackwardDims backward_dims(const AttentionParams& p, const ExecConfig& exec) {
  return BackwardDims::of(p, tile_shape(p, exec));
}

// P = exp(s - lse) with an fp32 lse carries |lse| * 2^-24 of absolute error
// in the exponent: 1e-6 relative on P at |lse| = 16, 6e-4 at logits ~1e4,
// far above what the naive algorithm loses there. Rows with |lse| at or
// above this get their exact max m and 1/l from a statistics-only forward
// pass (one extra K Q^T over their keys), and P = exp(s - m) * (1/l).
constexpr float kRefineLse = 16.0f;

// Owns the refined statistics of the rows that need them (RowStats); when
// no row does (the common case), no pass runs and nothing is allocated.
class RefinedRowStats {
 public:
  RefinedRowStats(const AttentionParams& p, const ExecConfig& exec) : size_(backward_rows_q(p) * p.heads_q) {
    stats_ = {std::numeric_limits<float>::infinity(), nullptr, nullptr, nullptr};  // refines nothing
    if (!any_row_needs(p)) return;
    memory_ = static_cast<float*>(::operator new(3 * size_ * sizeof(float), std::align_val_t{64}));
    stats_ = {kRefineLse, memory_, memory_ + size_, memory_ + 2 * size_};
    run_forward_tiles<F32Math>(p, exec, &stats_);
  }
  ~RefinedRowStats() {
    if (memory_) ::operator delete(memory_, std::align_val_t{64});
  }
  RefinedRowStats(const RefinedRowStats&) = delete;
  RefinedRowStats& operator=(const RefinedRowStats&) = delete;
  const RowStats& stats() const { return stats_; }

  static std::int64_t bytes(const AttentionParams& p, const ExecConfig& exec) {
    return 3 * backward_rows_q(p) * p.heads_q * 4 + workspace_bytes_of<F32Math>(p, exec);
  }

 private:
  static bool any_row_needs(const AttentionParams& p) {
    const RowStats threshold{kRefineLse, nullptr, nullptr, nullptr};
    for (std::int64_t b = 0; b < p.batch; ++b) {
      const core::SequenceExtent seq = core::sequence_extent(p, b);
      for (std::int64_t h = 0; h < p.heads_q; ++h)
        for (std::int64_t i = 0; i < seq.seqlen_q; ++i)
          if (refined(p.lse[b * p.lse_batch_stride + h * p.lse_head_stride + seq.q_start + i], threshold)) return true;
    }
    return false;
  }

  std::int64_t size_;
  float* memory_ = nullptr;
  RowStats stats_;
};

// Upper bound: the refinement pass's scratch is freed before the main pass
// allocates, but both are counted.
template <class ScoreMath>
inline std::int64_t backward_workspace_bytes_of(const AttentionParams& p, const ExecConfig& exec) {
  const BackwardDims d = backward_dims(p, exec);
  const std::int64_t stripes = d.stripes * backward_rows_q(p) * p.heads_q * d.d_pad * 4;
  return BackwardWorkspace<ScoreMath>::bytes(d) * exec.threads + stripes + RefinedRowStats::bytes(p, exec);
}

template <class ScoreMath>
inline void run_backward_tiles(const AttentionParams& p, const ExecConfig& exec) {
  const BackwardDims d = backward_dims(p, exec);
  const std::int64_t rows_q = backward_rows_q(p);
  const std::int64_t stripe_size = rows_q * p.heads_q * d.d_pad;
  const RefinedRowStats refined(p, exec);
  float* stripes_dq = static_cast<float*>(::operator new(d.stripes * stripe_size * sizeof(float), std::align_val_t{64}));
  const std::int64_t pairs = p.batch * p.heads_kv, items = pairs * d.stripes;
#pragma omp parallel num_threads(exec.threads)
  {
#pragma omp for schedule(static)
    for (std::int64_t n = 0; n < d.stripes * stripe_size; ++n) stripes_dq[n] = 0.0f;
    BackwardWorkspace<ScoreMath> ws(d);
    for (std::int64_t k = 0; k < kMaxBlockLanes; ++k) ws.ones[k] = 1.0f;
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = 0; item < items; ++item) {
      BackwardItem it;
      it.stripe = item / pairs;
      it.dq_stripe = stripes_dq + it.stripe * stripe_size;
      it.stats = &refined.stats();
      WorkItem& w = it.rows;
      w.p = &p;
      w.b = (item % pairs) / p.heads_kv;
      w.hk = item % p.heads_kv;
      w.group = p.heads_q / p.heads_kv;
      w.seq = core::sequence_extent(p, w.b);
      for (std::int64_t kb = it.stripe * d.superblock; kb < w.seq.seqlen_k; kb += d.stripes * d.superblock)
        backward_superblock(it, d, kb, ws);
      if (it.stripe == 0) zero_unused_keys(w);
    }
  }
  reduce_dq(p, d, stripes_dq, rows_q, exec.threads);
  ::operator delete(stripes_dq, std::align_val_t{64});
}
