// The CPU forward tile loop, shared by every ISA and math path:
// FlashAttention-2's online softmax over key tiles, never an
// (seqlen_q x seqlen_k) buffer. Included inside namespace
// flashattn::cpu::<isa> after micro_kernel.inl and forward_workspace.inl.
//
// Work item = rows [row_begin, row_begin + rows) of every query head that
// shares kv head hk (GQA heads ride together: K and V are packed once per
// tile for all of them). Its queries are lanes, lane = row * group + g,
// grouped into lane blocks of up to kMaxCols vectors. Per key tile of k_cols
// keys (aligned to multiples of k_cols, so a lane's arithmetic never depends
// on its neighbours, the item size or the thread count):
//   pack K and V once; then for every lane block the tile touches:
//   S^T = K Q^T                           micro-kernel
//   S^T = scale S^T, softcap, alibi, mask  mask only on tiles the band cuts
//   m' = max(m, colmax S^T); alpha = e^(m - m'); l = alpha l + colsum e^(S^T - m')
//   P^T = e^(S^T - m'), dropped weights zeroed; O^T = alpha O^T + V^T P^T
// then out = O / l / (1 - p_drop), lse = m + log l.
// Calls whose items fit one vector of lanes (decoding) run the two products
// in the decode layout instead (decode_kernel.inl): K and V unpacked, Q and O
// by rows, S packed (keys x lanes in a vector); everything between the
// products is shared, run over the packed vectors.

#include "cpu/split_kv.inl"

struct WorkItem {
  const AttentionParams* p;
  core::SequenceExtent seq;
  std::int64_t b, hk, group;
  std::int64_t row_begin, rows;
  std::int64_t split = 0;                   // which key chunk, of partials->splits
  const SplitPartials* partials = nullptr;  // null: one chunk, results go to out / lse
  // Decode layout: kv heads [hk, hk + kv_heads) in one item (one lane block
  // of kW lanes each), so that a thread streams contiguous cache rows.
  bool decode = false;
  std::int64_t kv_heads = 1;
  std::int64_t lanes() const { return rows * group; }  // per kv head
};

inline const void* element_at(const void* base, DType dtype, std::int64_t offset) {
  return static_cast<const char*>(base) + offset * dtype_size(dtype);
}

// Splits the item's lane vectors into blocks of at most kMaxCols vectors, as
// even as possible (a 4-vector item runs as 2 + 2, not 3 + 1); returns how
// many. Shared by the forward and the backward.
inline std::int64_t lane_blocks_of(const WorkItem& w, LaneBlock* blocks) {
  if (w.decode) {  // one block per kv head
    for (std::int64_t n = 0; n < w.kv_heads; ++n) blocks[n] = LaneBlock{n * kW, 1, w.row_begin, w.row_begin + w.rows};
    return w.kv_heads;
  }
  const std::int64_t vectors = (w.lanes() + kW - 1) / kW;
  const std::int64_t count = (vectors + Vec::kMaxCols - 1) / Vec::kMaxCols;
  std::int64_t lane = 0;
  for (std::int64_t n = 0; n < count; ++n) {
    LaneBlock& block = blocks[n];
    block.first_lane = lane;
    block.cols = static_cast<int>(vectors / count + (n < vectors % count ? 1 : 0));
    const std::int64_t last = std::min(lane + block.cols * kW, w.lanes()) - 1;
    block.row_begin = w.row_begin + lane / w.group;
    block.row_end = w.row_begin + last / w.group + 1;
    lane += block.cols * kW;
  }
  return count;
}

// Lane bookkeeping of one lane, shared by the forward's and the backward's
// workspaces: its query row and head, kept keys, alibi slope and dropout
// counter words; padding lanes (past the item) keep nothing and are never
// stored. Returns whether the lane is real.
template <class LaneWorkspace>
inline bool set_lane(const WorkItem& w, std::int64_t lane, LaneWorkspace& ws) {
  const AttentionParams& p = *w.p;
  const std::int64_t slot = w.decode ? lane / kW : 0, k = w.decode ? lane % kW : lane;  // kv head slot, lane in it
  if (k >= w.lanes() || slot >= w.kv_heads) {
    ws.lane_row[lane] = -1;
    ws.lane_head[lane] = 0;
    ws.keep_begin[lane] = ws.keep_end[lane] = 0;
    ws.slope[lane] = 0.0f;
    ws.drop_row[lane] = ws.drop_stream[lane] = 0;
    return false;
  }
  const std::int64_t i = w.row_begin + k / w.group, h = (w.hk + slot) * w.group + k % w.group;
  const core::KeyRange keep = core::kept_keys(p.mask, i, w.seq.seqlen_q, w.seq.seqlen_k);
  ws.lane_row[lane] = i;
  ws.lane_head[lane] = h;
  ws.keep_begin[lane] = keep.begin;
  ws.keep_end[lane] = keep.end;
  ws.slope[lane] = p.alibi_slopes ? p.alibi_slopes[w.b * p.alibi_batch_stride + h] : 0.0f;
  ws.drop_row[lane] = static_cast<std::uint32_t>(i);
  ws.drop_stream[lane] = static_cast<std::uint32_t>(w.b * p.heads_q + h);
  return true;
}

// Decode layout: lanes per packed group (the item's lanes rounded up to a
// power of two, as with_lanes picks its kernels), kW / L keys per vector.
inline int decode_lanes(std::int64_t lanes) {
  return static_cast<int>(std::bit_ceil(static_cast<std::uint64_t>(lanes)));
}
inline int decode_lanes(const WorkItem& w) { return decode_lanes(w.lanes()); }

// Decode layout: the row of Q and O of lane k of a kv head's block. Rows
// are L (decode_lanes) per kv head, not kW: the item's Q, O and the tile's
// P V then take a quarter of the L1 lines at GQA 4 (and no cache sets
// that every head's rows share, as a 4 KiB head stride of Q did), next to
// the cache rows streaming through L1.
inline std::int64_t decode_row(const WorkItem& w, const LaneBlock& block, std::int64_t k) {
  return block.first_lane / kW * decode_lanes(w) + k;
}

// Lane bookkeeping, Q^T packed by lane block (decode: Q by rows), and O, m, l cleared.
template <class Math>
inline void start_item(const WorkItem& w, const ForwardDims& d, const LaneBlock* blocks, std::int64_t block_count,
                       Workspace<Math>& ws) {
  const AttentionParams& p = *w.p;
  for (std::int64_t n = 0; n < block_count; ++n) {
    const LaneBlock& block = blocks[n];
    const std::int64_t width = block.cols * kW;
    typename Math::Elem* qt = ws.qt + block.first_lane * d.d_pad;
    for (std::int64_t k = 0; k < width; ++k) {
      const std::int64_t lane = block.first_lane + k;
      ws.row_max[lane] = kNegInf;
      ws.row_sum[lane] = 0.0f;
      if (set_lane(w, lane, ws)) {
        const std::int64_t at =
            core::element_offset(p.q_stride, w.b, w.seq.q_start + ws.lane_row[lane], ws.lane_head[lane]);
        Math::load_row(element_at(p.q, p.dtype, at), p.dtype, p.head_dim, d.d_pad, ws.row);
      } else {  // padding lane: zero queries
        std::memset(ws.row, 0, d.d_pad * sizeof(typename Math::Elem));
      }
      if (d.decode) {
        if (k < decode_lanes(w))
          std::memcpy(ws.qt + decode_row(w, block, k) * d.d_pad, ws.row, d.d_pad * sizeof(*ws.row));
        continue;
      }
      for (std::int64_t s = 0; s < d.depth_steps; ++s)
        std::memcpy(qt + (s * width + k) * Math::kPack, ws.row + s * Math::kPack, Math::kPack * sizeof(*ws.row));
    }
  }
  // O^T's lane slots; decode: O's rows, decode_lanes per kv head (decode_row).
  const std::int64_t o_rows = d.decode ? w.kv_heads * decode_lanes(w) : round_up(w.lanes(), kW);
  std::memset(ws.ot, 0, o_rows * d.dv_pad * sizeof(float));
}

// Packing a lane-major tile reads its n K rows, then its n V rows, once.
// When they come from DRAM (a decode-like item: many query lanes, too many
// for the decode layout, over a long cache) the packing loops' demand loads
// wait on one row after another. PackRequests asks for row r + lead as row
// r is read, over the K rows and on into the V rows, kPackLeadBytes ahead.
// bf16 decoding at sq 8 (GQA 4) and MQA ran 1.4-1.6x faster with them, f32
// and the prefill rows as before; 4 KiB beat 2, 8 and 16 (BENCHMARKS.md,
// session 26).
inline constexpr std::int64_t kPackLeadBytes = 4 * 1024;

class PackRequests {
 public:
  PackRequests(const AttentionParams& p, const std::int64_t* k_at, const std::int64_t* v_at, std::int64_t n)
      : p_(p), k_at_(k_at), v_at_(v_at), n_(n), element_bytes_(dtype_size(p.dtype)) {
    lead_ = std::max<std::int64_t>(1, kPackLeadBytes / (std::max(p.head_dim, p.head_dim_v) * element_bytes_));
    for (std::int64_t r = 0; r < std::min(lead_, 2 * n); ++r) request(r);
  }
  // Row r of the sequence (K rows [0, n), then V rows [n, 2n)) is about to be read.
  void reading(std::int64_t r) const {
    if (r + lead_ < 2 * n_) request(r + lead_);
  }

 private:
  void request(std::int64_t r) const {
    if (r < n_) return prefetch_row(row(p_.k, k_at_[r]), p_.head_dim * element_bytes_);
    prefetch_row(row(p_.v, v_at_[r - n_]), p_.head_dim_v * element_bytes_);
  }
  const char* row(const void* base, std::int64_t at) const {
    return static_cast<const char*>(base) + at * element_bytes_;
  }

  const AttentionParams& p_;
  const std::int64_t *k_at_, *v_at_;
  std::int64_t n_, element_bytes_, lead_;
};

// Keys [key_begin, key_begin + n) of the item's kv head made ready for the
// products: their row offsets in k and v, and (lane-major) K and V packed
// for the micro-kernel, key rows up to n_pad zero. Decode: also the offsets
// of the next tile's next_n keys, which the kernels prefetch.
template <class Math>
inline void prepare_tile(const WorkItem& w, const ForwardDims& d, std::int64_t key_begin, std::int64_t n,
                         std::int64_t n_pad, std::int64_t next_n, Workspace<Math>& ws) {
  const AttentionParams& p = *w.p;
  core::key_offsets(p.k_stride, w.seq, key_begin, n, w.hk, ws.k_at);
  core::key_offsets(p.v_stride, w.seq, key_begin, n, w.hk, ws.v_at);
  if (d.decode) {
    core::key_offsets(p.k_stride, w.seq, key_begin + d.k_cols, next_n, w.hk, ws.k_at + d.k_cols);
    ws.next_n = next_n;
    return;
  }
  const PackRequests requests(p, ws.k_at, ws.v_at, n);
  for (std::int64_t j = 0; j < n; ++j) {
    requests.reading(j);
    Math::load_row(element_at(p.k, p.dtype, ws.k_at[j]), p.dtype, p.head_dim, d.d_pad, ws.kp + j * d.d_pad);
  }
  std::memset(ws.kp + n * d.d_pad, 0, (n_pad - n) * d.d_pad * sizeof(typename Math::Elem));
  auto value_row = [&](std::int64_t j) {
    requests.reading(n + j);
    return element_at(p.v, p.dtype, ws.v_at[j]);
  };
  Math::pack_values(value_row, p.dtype, n, n_pad, p.head_dim_v, d.dv_pad, ws.vp);
}

// Vectors of a decode tile of n keys (packed, `lanes` per key).
inline std::int64_t decode_rows(std::int64_t n, int lanes) { return (n * lanes + kW - 1) / kW; }

// The decode kernels' view of the tile: every kv head of the item, and the
// next tile's keys (prepare_tile) that the values pass requests at its end.
template <class Math>
inline DecodeTile decode_tile(const WorkItem& w, const ForwardDims& d, std::int64_t n, const Workspace<Math>& ws) {
  const AttentionParams& p = *w.p;
  const std::int64_t bytes = dtype_size(p.dtype);
  DecodeTile t;
  t.k = static_cast<const char*>(p.k);
  t.v = static_cast<const char*>(p.v);
  t.k_at = ws.k_at;
  t.v_at = ws.v_at;
  t.n = n;
  t.heads = w.kv_heads;
  t.k_head_bytes = p.k_stride.head * bytes;
  t.v_head_bytes = p.v_stride.head * bytes;
  t.k_row_bytes = p.head_dim * bytes;
  t.v_row_bytes = p.head_dim_v * bytes;
  t.next_k_at = ws.k_at + d.k_cols;
  t.next_n = ws.next_n;
  t.element_bytes = bytes;
  return t;
}

// Per-lane inputs of the score hooks for a tile of keys [key_begin,
// key_begin + n): kept keys relative to the tile (when the band cuts it) and
// the alibi origin. Shared by the forward's and the backward's workspaces.
template <class LaneWorkspace>
inline void set_tile_hooks(const WorkItem& w, std::int64_t first, std::int64_t width, std::int64_t key_begin,
                           std::int64_t n, bool masked, LaneWorkspace& ws) {
  const std::int64_t sq = w.seq.seqlen_q, sk = w.seq.seqlen_k;
  for (std::int64_t k = 0; k < width; ++k) {
    const std::int64_t lane = first + k;
    if (masked) {
      ws.tile_begin[k] = static_cast<std::int32_t>(std::clamp<std::int64_t>(ws.keep_begin[lane] - key_begin, 0, n));
      ws.tile_end[k] = static_cast<std::int32_t>(std::clamp<std::int64_t>(ws.keep_end[lane] - key_begin, 0, n));
    }
    // |origin - j| is the lane's distance from key j: exact in float below 2^24.
    if (w.p->alibi_slopes) ws.alibi_origin[k] = static_cast<float>(ws.lane_row[lane] + sk - sq - key_begin);
  }
}

// softcap, alibi and the mask, in that order, on one vector of scaled
// scores: key j of the tile for the kW lanes whose slopes, alibi origins and
// tile ranges start at the given pointers. *dcap, when given, receives
// d(capped)/d(score) = 1 - tanh^2 (1 without softcap): the backward's chain rule.
inline Vec::Reg hook_scores(const AttentionParams& p, bool masked, Vec::Reg x, std::int64_t j, const float* slope,
                            const float* origin, const std::int32_t* tile_begin, const std::int32_t* tile_end,
                            Vec::Reg* dcap = nullptr) {
  if (p.softcap > 0) {
    const Vec::Reg cap = Vec::set1(p.softcap);
    const Vec::Reg t = vector_tanh(Vec::div(x, cap));
    if (dcap) *dcap = Vec::sub(Vec::set1(1.0f), Vec::mul(t, t));
    x = Vec::mul(cap, t);
  }
  if (p.alibi_slopes)
    x = Vec::sub_product(x, Vec::load(slope), Vec::abs(Vec::sub(Vec::load(origin), Vec::set1(static_cast<float>(j)))));
  if (masked) x = Vec::keep_range(x, tile_begin, tile_end, static_cast<std::int32_t>(j));
  return x;
}

// The score hooks on a decode block's packed scores (keys [0, n)): lane k
// of a vector is lane k % L of key j0 + k / L, so its hook inputs are the
// lane's with the tile range and alibi origin moved by -(k / L): then
// hook_scores tests key j0 against them as it tests key j in S^T.
template <class Math>
inline void apply_decode_hooks(const WorkItem& w, const LaneBlock& block, std::int64_t key_begin, std::int64_t n,
                               bool masked, int lanes, float* st, Workspace<Math>& ws) {
  set_tile_hooks(w, block.first_lane, lanes, key_begin, n, masked, ws);
  for (int k = kW - 1; k >= 0; --k) {  // downwards: lane k % L <= k is read before it is written
    const int from = k % lanes, slot = k / lanes;
    if (masked) ws.tile_begin[k] = ws.tile_begin[from] - slot, ws.tile_end[k] = ws.tile_end[from] - slot;
    if (w.p->alibi_slopes) ws.alibi_origin[k] = ws.alibi_origin[from] - static_cast<float>(slot);
    ws.tile_slope[k] = ws.slope[block.first_lane + from];
  }
  const std::int64_t keys = kW / lanes;
  for (std::int64_t j0 = 0; j0 < n; j0 += keys) {
    float* s = st + j0 * lanes;
    Vec::store(s,
               hook_scores(*w.p, masked, Vec::load(s), j0, ws.tile_slope, ws.alibi_origin, ws.tile_begin, ws.tile_end));
  }
}

// The score hooks on the block's scaled scores.
template <class Math>
inline void apply_score_hooks(const WorkItem& w, const LaneBlock& block, std::int64_t key_begin, std::int64_t n,
                              bool masked, Workspace<Math>& ws) {
  const std::int64_t width = block.cols * kW, first = block.first_lane;
  set_tile_hooks(w, first, width, key_begin, n, masked, ws);
  for (std::int64_t j = 0; j < n; ++j) {
    for (std::int64_t v = 0; v < width; v += kW) {
      float* s = ws.st + j * width + v;
      Vec::store(s, hook_scores(*w.p, masked, Vec::load(s), j, ws.slope + first + v, ws.alibi_origin + v,
                                ws.tile_begin + v, ws.tile_end + v));
    }
  }
}

// A decode block's packed scores of keys [0, n) (st) with every score hook
// applied: -inf from key n on (the last vector's tail, whole vectors after
// it up to decode_rows).
template <class Math>
inline void finish_decode_scores(const WorkItem& w, const LaneBlock& block, std::int64_t key_begin, std::int64_t n,
                                 bool masked, int lanes, float* st, Workspace<Math>& ws) {
  const AttentionParams& p = *w.p;
  if (masked || p.softcap > 0 || p.alibi_slopes) apply_decode_hooks(w, block, key_begin, n, masked, lanes, st, ws);
  const std::int64_t keys = kW / lanes, rows = decode_rows(n, lanes);
  for (std::int64_t v = n / keys; v < rows; ++v)
    Vec::store(st + v * kW, Vec::keep_first(Vec::load(st + v * kW), static_cast<int>((n - v * keys) * lanes)));
}

// S^T of one lane block against the packed tile, with every score hook
// applied: -inf where masked and in the key rows [n, n_pad).
template <class Math>
inline void score_block(const WorkItem& w, const ForwardDims& d, const LaneBlock& block, std::int64_t key_begin,
                        std::int64_t n, std::int64_t n_pad, Workspace<Math>& ws) {
  const AttentionParams& p = *w.p;
  const std::int64_t width = block.cols * kW, first = block.first_lane;
  const std::int64_t sq = w.seq.seqlen_q, sk = w.seq.seqlen_k;
  const bool masked = !core::tile_fully_kept(p.mask, block.row_begin, block.row_end, key_begin, key_begin + n, sq, sk);
  // Scaling after the product (not pre-scaled queries) rounds like the naive algorithm.
  with_cols(block.cols, [&]<int Cols>() {
    score_product<Math, Cols>(n_pad, d.depth_steps, ws.kp, d.d_pad, ws.qt + first * d.d_pad, width, ws.st, width,
                              p.softmax_scale);
  });
  if (masked || p.softcap > 0 || p.alibi_slopes) apply_score_hooks(w, block, key_begin, n, masked, ws);
  for (std::int64_t j = n; j < n_pad; ++j)
    for (std::int64_t v = 0; v < width; v += kW) Vec::store(ws.st + j * width + v, Vec::set1(kNegInf));
}

// The max (sum) of x's lanes i, i ^ L, i ^ 2L, .. (< kW) in lane i: every
// lane of a packed decode vector gets it over its lane's key slots (L = kW:
// x itself). Not one function taking a lambda: lambdas get no ISA target.
inline Vec::Reg max_over_slots(Vec::Reg x, int lanes) {
  for (int dist = lanes; dist < kW; dist *= 2) x = Vec::max(x, Vec::swap_lanes(x, dist));
  return x;
}
inline Vec::Reg sum_over_slots(Vec::Reg x, int lanes) {
  for (int dist = lanes; dist < kW; dist *= 2) x = Vec::add(x, Vec::swap_lanes(x, dist));
  return x;
}

// Online-softmax step of one lane block: S^T becomes unnormalised P^T, the
// running max and sum move, and ws.alpha gets e^(old max - new max) per lane
// (exactly 1 where the max did not move, so a tile that keeps nothing
// changes nothing; 0 while a lane has kept nothing yet). Decode: n_pad
// packed vectors of slot_lanes lanes; m, l and alpha repeat over the slots.
template <class Math>
inline void softmax_block(const LaneBlock& block, std::int64_t n_pad, float* st, float* alpha_out, Workspace<Math>& ws,
                          int slot_lanes = kW) {
  const std::int64_t width = block.cols * kW;
  for (std::int64_t v = 0; v < width; v += kW) {
    float* m = ws.row_max + block.first_lane + v;
    float* l = ws.row_sum + block.first_lane + v;
    const Vec::Reg old_max = Vec::load(m);
    Vec::Reg new_max = old_max;
    for (std::int64_t j = 0; j < n_pad; ++j) new_max = Vec::max(new_max, Vec::load(st + j * width + v));
    new_max = max_over_slots(new_max, slot_lanes);
    const Vec::Reg shift = Vec::neg_inf_to_zero(new_max);  // all -inf so far: e^(-inf - 0) = 0
    const Vec::Reg alpha = Vec::exp(Vec::sub(old_max, shift));
    Vec::Reg sum = Vec::zero();
    for (std::int64_t j = 0; j < n_pad; ++j) {
      float* s = st + j * width + v;
      const Vec::Reg e = Vec::exp(Vec::sub(Vec::load(s), shift));
      Vec::store(s, e);
      sum = Vec::add(sum, e);
    }
    sum = sum_over_slots(sum, slot_lanes);
    Vec::store(l, Vec::fmadd(alpha, Vec::load(l), sum));
    Vec::store(m, new_max);
    Vec::store(alpha_out + v, alpha);
  }
}

// Zeroes the dropped weights of the block's lanes in P^T (after they were
// summed into l: dropout scales the kept weights by 1 / (1 - p) at the end).
// One vector Philox call gives the decisions of kWidth lanes for 4 keys.
template <class Math>
inline void dropout_block(const WorkItem& w, const LaneBlock& block, std::int64_t key_begin, std::int64_t n,
                          Workspace<Math>& ws) {
  const AttentionParams& p = *w.p;
  const core::DropoutStream stream = core::make_dropout_stream(p.seed, p.offset, p.dropout_p, w.b, 0, p.heads_q);
  const std::int64_t width = block.cols * kW;
  for (std::int64_t v = 0; v < width; v += kW) {
    const Vec::IReg rows = Vec::iload(ws.drop_row + block.first_lane + v);
    const Vec::IReg streams = Vec::iload(ws.drop_stream + block.first_lane + v);
    for (std::int64_t j = 0; j < n; j += 4) {  // key_begin is a multiple of 4
      Vec::IReg words[4] = {Vec::iset1(static_cast<std::uint32_t>((key_begin + j) >> 2)), rows, streams,
                            Vec::iset1(stream.offset_lo)};
      philox_lanes(words, stream.key[0], stream.key[1]);
      for (std::int64_t e = 0; e < 4 && j + e < n; ++e) {
        float* s = ws.st + (j + e) * width + v;
        Vec::store(s, Vec::mul(Vec::load(s), Vec::kept_weight(words[e], stream.drop_below)));
      }
    }
  }
}

// A statistics pass instead of the forward (the backward's lse refinement,
// see backward_tile_loop.inl), fp32 math only: no output; for every item
// that holds a row whose finite |lse| >= min_abs_lse, each row's max m, 1/l
// (m = +inf, 1/l = 1 for a row without kept keys) and D = sum_j P_j dP_j
// (dP_j = z_j dout.v_j, z the dropout keep scale or 0), at (global row, head).
struct RowStats {
  float min_abs_lse;
  float* max;      // (total query rows, heads_q)
  float* inv_sum;  // (total query rows, heads_q)
  float* delta;    // (total query rows, heads_q)
};

inline std::int64_t global_row(const AttentionParams& p, const WorkItem& w, std::int64_t i) {
  return w.seq.q_start + i + (p.is_varlen() ? 0 : w.b * p.seqlen_q);
}

inline float lse_of(const AttentionParams& p, const WorkItem& w, std::int64_t i, std::int64_t h) {
  return p.lse[w.b * p.lse_batch_stride + h * p.lse_head_stride + w.seq.q_start + i];
}

inline bool refined(float lse, const RowStats& stats) {
  return std::isfinite(lse) && std::fabs(lse) >= stats.min_abs_lse;
}

inline bool item_wants_stats(const WorkItem& w, const RowStats& stats) {
  for (std::int64_t lane = 0; lane < w.lanes(); ++lane)
    if (refined(lse_of(*w.p, w, w.row_begin + lane / w.group, w.hk * w.group + lane % w.group), stats)) return true;
  return false;
}

// The statistics pass keeps dO^T where the forward keeps O^T (same shape)
// and a D accumulator per lane.
inline void start_stats(const WorkItem& w, const ForwardDims& d, const LaneBlock* blocks, std::int64_t block_count,
                        Workspace<F32Math>& ws) {
  const AttentionParams& p = *w.p;
  for (std::int64_t n = 0; n < block_count; ++n) {
    const std::int64_t width = blocks[n].cols * kW;
    float* dot = ws.ot + blocks[n].first_lane * d.dv_pad;
    for (std::int64_t k = 0; k < width; ++k) {
      const std::int64_t lane = blocks[n].first_lane + k;
      ws.row_aux[lane] = 0.0f;
      if (ws.lane_row[lane] >= 0) {
        const std::int64_t at =
            core::element_offset(p.dout_stride, w.b, w.seq.q_start + ws.lane_row[lane], ws.lane_head[lane]);
        F32Math::load_row(element_at(p.dout, p.dtype, at), p.dtype, p.head_dim_v, d.dv_pad, ws.row);
      } else {
        std::memset(ws.row, 0, d.dv_pad * sizeof(float));
      }
      for (std::int64_t c = 0; c < d.dv_pad; ++c) dot[c * width + k] = ws.row[c];
    }
  }
}

// After softmax_block: D += sum_j P~_j z_j dP_j over the tile, rescaled by alpha like O.
inline void stats_block(const WorkItem& w, const ForwardDims& d, const LaneBlock& block, std::int64_t key_begin,
                        std::int64_t n, std::int64_t n_pad, Workspace<F32Math>& ws) {
  if (w.p->dropout_p > 0) dropout_block(w, block, key_begin, n, ws);
  const std::int64_t width = block.cols * kW;
  float* dpt = ws.pt;  // dP^T = V dO^T, unscaled by z
  with_cols(block.cols, [&]<int Cols>() {
    score_product<F32Math, Cols>(n_pad, d.dv_pad, ws.vp, d.dv_pad, ws.ot + block.first_lane * d.dv_pad, width, dpt,
                                 width);
  });
  for (std::int64_t v = 0; v < width; v += kW) {
    Vec::Reg sum = Vec::zero();
    for (std::int64_t j = 0; j < n_pad; ++j)
      sum = F32Math::madd(sum, Vec::load(ws.st + j * width + v), Vec::load(dpt + j * width + v));
    float* acc = ws.row_aux + block.first_lane + v;
    Vec::store(acc, Vec::fmadd(Vec::load(ws.alpha + v), Vec::load(acc), sum));
  }
}

// D = accumulated * (keep_scale / l): for a one-hot row (P~ = 1, l = 1)
// exactly the backward's z_j dP_j, so dP_j - D cancels as in the naive algorithm.
inline void finish_stats(const WorkItem& w, const Workspace<F32Math>& ws, const RowStats& stats) {
  const AttentionParams& p = *w.p;
  const float keep_scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(p.dropout_p)));
  for (std::int64_t lane = 0; lane < w.lanes(); ++lane) {
    const std::int64_t at = global_row(p, w, ws.lane_row[lane]) * p.heads_q + ws.lane_head[lane];
    const bool empty = ws.row_sum[lane] == 0.0f;
    stats.max[at] = empty ? std::numeric_limits<float>::infinity() : ws.row_max[lane];
    stats.inv_sum[at] = empty ? 1.0f : 1.0f / ws.row_sum[lane];
    stats.delta[at] = empty ? 0.0f : ws.row_aux[lane] * (keep_scale / ws.row_sum[lane]);
  }
}

template <class Math>
inline void attend_block(const WorkItem& w, const ForwardDims& d, const LaneBlock& block, std::int64_t key_begin,
                         std::int64_t n, std::int64_t n_pad, Workspace<Math>& ws, bool stats_only) {
  score_block(w, d, block, key_begin, n, n_pad, ws);
  softmax_block(block, n_pad, ws.st, ws.alpha, ws);
  if constexpr (std::is_same_v<Math, F32Math>) {
    if (stats_only) return stats_block(w, d, block, key_begin, n, n_pad, ws);
  }
  if (w.p->dropout_p > 0) dropout_block(w, block, key_begin, n, ws);
  const std::int64_t width = block.cols * kW;
  const typename Math::Elem* pt = Math::probabilities(ws.st, n_pad, width, ws.pt);
  with_cols(block.cols, [&]<int Cols>() {
    output_product<Math, Cols>(d.dv_pad, n_pad / Math::kPack, ws.vp, d.dv_pad, pt, width, ws.alpha,
                               ws.ot + block.first_lane * d.dv_pad);
  });
}

// One key tile of a decode item (prepare_tile done): the scores of every kv
// head in one pass over the K rows, per head the score hooks and the online
// softmax on its packed scores, then O of every head in one pass over the
// V rows. Every block of the item holds the same query rows.
template <class Math>
inline void attend_decode_tile(const WorkItem& w, const ForwardDims& d, const LaneBlock* blocks,
                               std::int64_t block_count, std::int64_t key_begin, std::int64_t n, Workspace<Math>& ws) {
  const AttentionParams& p = *w.p;
  const int lanes = decode_lanes(w);  // of a packed group
  const std::int64_t rows = decode_rows(n, lanes), st_head = decode_rows(d.k_cols, lanes) * kW;
  const bool masked = !core::tile_fully_kept(p.mask, w.row_begin, w.row_begin + w.rows, key_begin, key_begin + n,
                                             w.seq.seqlen_q, w.seq.seqlen_k);
  const DecodeTile tile = decode_tile(w, d, n, ws);
  with_decode_variant<Math>(p.dtype, w.lanes(), [&]<DType T, int Lanes>() {
    DecodeKernel<Math>::template scores<T, Lanes>(tile, ws.qt, d.d_pad, lanes * d.d_pad, p.head_dim, p.softmax_scale,
                                                  ws.st, st_head);
  });
  for (std::int64_t b = 0; b < block_count; ++b) {
    float* st = ws.st + b * st_head;
    finish_decode_scores(w, blocks[b], key_begin, n, masked, lanes, st, ws);
    softmax_block(blocks[b], rows, st, ws.alpha + b * kW, ws, lanes);
  }
  with_decode_variant<Math>(p.dtype, w.lanes(), [&]<DType T, int Lanes>() {
    DecodeKernel<Math>::template values<T, Lanes>(tile, ws.st, st_head, ws.alpha, p.head_dim_v, ws.ot, d.dv_pad,
                                                  lanes * d.dv_pad, ws.tile_o);
  });
}

// out = O * (keep_scale / l) with one rounding (in float, keep_scale, the
// quotient and the product would each round: up to ~2 ulp), and lse.
template <class Math>
inline void finish_item(const WorkItem& w, const ForwardDims& d, const LaneBlock* blocks, std::int64_t block_count,
                        Workspace<Math>& ws) {
  const AttentionParams& p = *w.p;
  const double keep_scale = 1.0 / (1.0 - static_cast<double>(p.dropout_p));
  float* o = ws.out_row;
  for (std::int64_t n = 0; n < block_count; ++n) {
    const LaneBlock& block = blocks[n];
    const std::int64_t width = block.cols * kW;
    for (std::int64_t k = 0; k < width; ++k) {
      const std::int64_t lane = block.first_lane + k, i = ws.lane_row[lane], h = ws.lane_head[lane];
      if (i < 0) continue;
      const bool empty = ws.row_sum[lane] == 0.0f;
      const double inv = empty ? 0.0 : keep_scale / ws.row_sum[lane];
      // O's row (decode) or O^T's column of the lane
      const float* ot = d.decode ? ws.ot + decode_row(w, block, k) * d.dv_pad : ws.ot + block.first_lane * d.dv_pad + k;
      const std::int64_t dim_step = d.decode ? 1 : width;
      for (std::int64_t c = 0; c < p.head_dim_v; ++c) o[c] = static_cast<float>(ot[c * dim_step] * inv);
      if (w.partials) {
        const std::int64_t at = (w.split * w.partials->rows + global_row(p, w, i)) * p.heads_q + h;
        std::memcpy(w.partials->out + at * p.head_dim_v, o, p.head_dim_v * sizeof(float));
        w.partials->lse[at] = empty ? kNegInf : ws.row_max[lane] + std::log(ws.row_sum[lane]);
        continue;
      }
      const std::int64_t row = w.seq.q_start + i;
      const std::int64_t at = core::element_offset(p.out_stride, w.b, row, h);
      store_row(o, p.head_dim_v, p.dtype, static_cast<char*>(p.out) + at * dtype_size(p.dtype));
      if (p.lse) {
        p.lse[w.b * p.lse_batch_stride + h * p.lse_head_stride + row] =
            empty ? p.lse_of_empty_row : ws.row_max[lane] + std::log(ws.row_sum[lane]);
      }
    }
  }
}

// Second pass, only when probabilities are requested: p = exp(s - m) / l.
// Not exp(s - lse): lse = m + log l rounded to fp32 loses |lse| * 2^-24 of
// absolute accuracy, ~6e-4 relative on every probability for logits ~1e4.
template <class Math>
inline void write_probs(const WorkItem& w, const ForwardDims& d, const LaneBlock* blocks, std::int64_t block_count,
                        Workspace<Math>& ws) {
  const AttentionParams& p = *w.p;
  const core::KeyRange keys =
      core::kept_keys_of_rows(p.mask, w.row_begin, w.row_begin + w.rows, w.seq.seqlen_q, w.seq.seqlen_k);
  for (std::int64_t kb = keys.begin / d.k_cols * d.k_cols; kb < keys.end; kb += d.k_cols) {
    const std::int64_t n = std::min(d.k_cols, w.seq.seqlen_k - kb), n_pad = round_up(n, Vec::kRows);
    prepare_tile(w, d, kb, n, n_pad, 0, ws);
    for (std::int64_t b = 0; b < block_count; ++b) {
      const LaneBlock& block = blocks[b];
      const std::int64_t width = block.cols * kW;
      score_block(w, d, block, kb, n, n_pad, ws);
      for (std::int64_t k = 0; k < width; ++k) {
        const std::int64_t lane = block.first_lane + k, i = ws.lane_row[lane], h = ws.lane_head[lane];
        if (i < 0 || ws.row_sum[lane] == 0.0f) continue;
        const core::DropoutStream stream = core::make_dropout_stream(p.seed, p.offset, p.dropout_p, w.b, h, p.heads_q);
        float* dst = p.probs + w.b * p.probs_batch_stride + h * p.probs_head_stride + i * p.probs_row_stride + kb;
        for (std::int64_t j = 0; j < n; ++j) {
          const float s = ws.st[j * width + k];
          if (s == kNegInf) continue;
          const float prob = std::exp(s - ws.row_max[lane]) / ws.row_sum[lane];
          dst[j] = (p.dropout_p > 0 && stream.dropped(i, kb + j)) ? -prob : prob;
        }
      }
    }
  }
}

// Keys of the tile at next_kb that the item's loop will visit (0: none).
inline std::int64_t next_tile_keys(std::int64_t next_kb, std::int64_t keys_end, std::int64_t sk, std::int64_t k_cols) {
  return next_kb < keys_end ? std::min(k_cols, sk - next_kb) : 0;
}

template <class Math>
inline void attend_item(const WorkItem& w, const ForwardDims& d, Workspace<Math>& ws, const RowStats* stats) {
  const AttentionParams& p = *w.p;
  const std::int64_t block_count = lane_blocks_of(w, ws.blocks);
  const LaneBlock* blocks = ws.blocks;
  start_item(w, d, blocks, block_count, ws);
  if constexpr (std::is_same_v<Math, F32Math>) {
    if (stats) start_stats(w, d, blocks, block_count, ws);
  }
  const std::int64_t sq = w.seq.seqlen_q, sk = w.seq.seqlen_k;
  core::KeyRange keys = core::kept_keys_of_rows(p.mask, w.row_begin, w.row_begin + w.rows, sq, sk);
  if (w.partials) keys = core::split_chunk(keys, d.k_cols, w.split, w.partials->splits);
  for (std::int64_t kb = keys.begin / d.k_cols * d.k_cols; kb < keys.end; kb += d.k_cols) {
    const std::int64_t n = std::min(d.k_cols, sk - kb), n_pad = round_up(n, Vec::kRows);
    const std::int64_t next_n = next_tile_keys(kb + d.k_cols, keys.end, sk, d.k_cols);
    if (d.decode) {  // every block keeps keys of every tile in [keys.begin, keys.end)
      prepare_tile(w, d, kb, n, n_pad, next_n, ws);
      attend_decode_tile(w, d, blocks, block_count, kb, n, ws);
      continue;
    }
    bool packed = false;
    for (std::int64_t b = 0; b < block_count; ++b) {
      const core::KeyRange block_keys = core::kept_keys_of_rows(p.mask, blocks[b].row_begin, blocks[b].row_end, sq, sk);
      if (block_keys.end <= kb || block_keys.begin >= kb + n) continue;  // nothing kept: alpha 1, P 0
      if (!packed) prepare_tile(w, d, kb, n, n_pad, next_n, ws);
      packed = true;
      attend_block(w, d, blocks[b], kb, n, n_pad, ws, stats != nullptr);
    }
  }
  if constexpr (std::is_same_v<Math, F32Math>) {
    if (stats) return finish_stats(w, ws, *stats);
  }
  finish_item(w, d, blocks, block_count, ws);
  if (p.probs) write_probs(w, d, blocks, block_count, ws);
}

inline void zero_probs(const AttentionParams& p) {
#pragma omp for collapse(2)
  for (std::int64_t b = 0; b < p.batch; ++b)
    for (std::int64_t h = 0; h < p.heads_q; ++h)
      for (std::int64_t i = 0; i < p.seqlen_q; ++i)
        std::memset(p.probs + b * p.probs_batch_stride + h * p.probs_head_stride + i * p.probs_row_stride, 0,
                    p.seqlen_k * sizeof(float));
}

// The decode layout serves calls whose items all fit one vector of lanes,
// with head dims in whole vectors; not the statistics pass (its dO^T
// products are lane-major), dropout or returned probabilities (both walk
// S^T rows; decoding uses neither). tiles.rows is seqlen_q whenever
// seqlen_q x group <= kW (choose_tile_shape never goes below a lane block),
// so the choice does not depend on the thread count.
inline bool decode_layout(const AttentionParams& p, const TileShape& tiles, bool stats) {
  return !stats && p.dropout_p == 0 && !p.probs && tiles.rows * (p.heads_q / p.heads_kv) <= kW &&
         p.head_dim % kW == 0 && p.head_dim_v % kW == 0;
}

inline TileShape tile_shape(const AttentionParams& p, const ExecConfig& exec) {
  return choose_tile_shape(p.head_dim, p.head_dim_v, p.seqlen_q, p.heads_q / p.heads_kv, p.batch * p.heads_kv,
                           exec.threads, kMaxBlockLanes);
}

// The call's sizes, its layout and (decode) kv heads per item.
template <class Math>
inline ForwardDims forward_dims(const AttentionParams& p, const TileShape& tiles, bool stats) {
  ForwardDims d = ForwardDims::of<Math>(p, tiles);
  d.decode = decode_layout(p, tiles, stats);
  if (d.decode) {
    d.kv_heads = decode_kv_heads(p.heads_kv, decode_lanes(tiles.rows * (p.heads_q / p.heads_kv)),
                                 std::max(p.head_dim, p.head_dim_v) * dtype_size(p.dtype));
    d.lanes_pad = d.kv_heads * kW;
  }
  return d;
}

template <class Math>
inline std::int64_t workspace_bytes_of(const AttentionParams& p, const ExecConfig& exec) {
  return Workspace<Math>::bytes(forward_dims<Math>(p, tile_shape(p, exec), false)) * exec.threads;
}

// Work items are handed out dynamically, one (batch, kv head) after another,
// sequences longest first (core::longest_first). Both threads then stream
// the same K and V while they stay in L3; tile order (every head's tile t,
// then every head's tile t-1) moved all heads' K and V through L3 between
// two uses of one and read them from DRAM (~8% slower at H16 S2048 f32).
// Within a head the heaviest query tiles run first (under a bottom-right
// causal mask the last tiles see the most keys), so the call ends on the
// lightest items. With `stats`, the statistics-only pass (RowStats)
// instead of the forward.
template <class Math>
inline void run_forward_tiles(const AttentionParams& p, const ExecConfig& exec, const RowStats* stats = nullptr) {
  const TileShape tiles = tile_shape(p, exec);
  const ForwardDims dims = forward_dims<Math>(p, tiles, stats != nullptr);
  const std::int64_t q_tiles = (p.seqlen_q + tiles.rows - 1) / tiles.rows;
  const std::int64_t kv_groups = (p.heads_kv + dims.kv_heads - 1) / dims.kv_heads;  // of the items' kv heads
  const std::int64_t batch_heads = p.batch * kv_groups;
  const std::int64_t splits = split_count(p, exec, tiles, q_tiles * batch_heads, stats != nullptr);
  const std::int64_t per_head = q_tiles * splits;
  const std::int64_t items = batch_heads * per_head;
  const PartialsBuffer partials(p, splits);
  const std::vector<std::int64_t> batch_order = core::longest_first(p);
#pragma omp parallel num_threads(exec.threads)
  {
    Workspace<Math> ws(dims);
    if (p.probs && !stats) zero_probs(p);  // ends with a barrier before any tile writes
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = 0; item < items; ++item) {
      const std::int64_t bh = item / per_head, tile = q_tiles - 1 - item % per_head / splits;
      WorkItem w;
      w.p = &p;
      w.b = batch_order[bh / kv_groups];
      w.hk = bh % kv_groups * dims.kv_heads;
      w.decode = dims.decode;
      w.kv_heads = std::min(dims.kv_heads, p.heads_kv - w.hk);
      w.split = item % splits;
      w.partials = partials.get();
      w.group = p.heads_q / p.heads_kv;
      w.seq = core::sequence_extent(p, w.b);
      w.row_begin = tile * tiles.rows;
      if (w.row_begin >= w.seq.seqlen_q) continue;
      w.rows = std::min(tiles.rows, w.seq.seqlen_q - w.row_begin);
      if (stats && !item_wants_stats(w, *stats)) continue;
      attend_item(w, dims, ws, stats);
    }
    if (partials.get()) merge_splits(p, *partials.get(), ws.out_row);  // the loop's barrier orders it
  }
}
