// Split-KV pieces of the CPU forward: how many chunks a call runs in, the
// fp32 partial results and their merge (the heuristic and the chunks' key
// ranges are shared with the CUDA backend: core/split.hpp). Included by
// forward_tile_loop.inl (inside namespace flashattn::cpu::<isa>).

// Split-KV partial results, fp32: each split's normalised output and lse
// per (split, global query row, query head), merged by merge_splits.
struct SplitPartials {
  std::int64_t splits = 1;
  std::int64_t rows = 0;  // total query rows of the batch
  float* out = nullptr;   // (splits, rows, heads_q, head_dim_v)
  float* lse = nullptr;   // (splits, rows, heads_q); -inf: the split kept no key
};

// Rows of every query head over all sequences: the partials' row count.
inline std::int64_t total_rows_q(const AttentionParams& p) {
  return p.is_varlen() ? p.cu_seqlens_q[p.batch] : p.batch * p.seqlen_q;
}

// How many key chunks this call's `items` (unsplit work items) run in:
// params.num_splits, 0 resolved by the heuristic, never more than the key
// tiles; 1 for the statistics pass and when probabilities are requested.
inline std::int64_t split_count(const AttentionParams& p, const ExecConfig& exec, const TileShape& tiles,
                                std::int64_t items, bool stats) {
  if (stats || p.probs || p.num_splits == 1) return 1;
  const std::int64_t key_tiles = std::max<std::int64_t>(1, (p.seqlen_k + tiles.k_cols - 1) / tiles.k_cols);
  const std::int64_t splits = p.num_splits > 0 ? p.num_splits : core::choose_num_splits(items, key_tiles, exec.threads);
  return std::clamp<std::int64_t>(splits, 1, std::min(key_tiles, core::kMaxSplits));
}

// fp32 scratch of the split partials (no std containers in an ISA region);
// nothing when there is one split.
class PartialsBuffer {
 public:
  PartialsBuffer(const AttentionParams& p, std::int64_t splits) {
    if (splits == 1) return;
    parts.splits = splits;
    parts.rows = total_rows_q(p);
    const std::int64_t lse_count = splits * parts.rows * p.heads_q;
    memory_ = static_cast<float*>(::operator new(lse_count * (p.head_dim_v + 1) * sizeof(float), std::align_val_t{64}));
    parts.out = memory_;
    parts.lse = memory_ + lse_count * p.head_dim_v;
  }
  ~PartialsBuffer() { ::operator delete(memory_, std::align_val_t{64}); }
  PartialsBuffer(const PartialsBuffer&) = delete;
  PartialsBuffer& operator=(const PartialsBuffer&) = delete;
  const SplitPartials* get() const { return memory_ ? &parts : nullptr; }

 private:
  SplitPartials parts;
  float* memory_ = nullptr;
};

// out and lse of every row from its splits' partials (core::merge_weights),
// rounded once to the output dtype. Inside the parallel region.
inline void merge_splits(const AttentionParams& p, const SplitPartials& parts, float* row) {
  double weights[core::kMaxSplits];
  const std::int64_t splits = parts.splits;
#pragma omp for collapse(2) schedule(static)
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t i = 0; i < p.seqlen_q; ++i) {
      const core::SequenceExtent seq = core::sequence_extent(p, b);
      if (i >= seq.seqlen_q) continue;
      const std::int64_t r = seq.q_start + i + (p.is_varlen() ? 0 : b * p.seqlen_q);
      for (std::int64_t h = 0; h < p.heads_q; ++h) {
        const std::int64_t at = r * p.heads_q + h, stride = parts.rows * p.heads_q;
        const double lse = core::merge_weights(splits, [&](std::int64_t s) { return parts.lse[s * stride + at]; },
                                               weights);
        for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
          double sum = 0.0;
          for (std::int64_t s = 0; s < splits; ++s)
            if (weights[s] != 0.0) sum += weights[s] * parts.out[(s * stride + at) * p.head_dim_v + c];
          row[c] = static_cast<float>(sum);
        }
        const std::int64_t out_at = core::element_offset(p.out_stride, b, seq.q_start + i, h);
        store_row(row, p.head_dim_v, p.dtype, static_cast<char*>(p.out) + out_at * dtype_size(p.dtype));
        if (p.lse) {
          p.lse[b * p.lse_batch_stride + h * p.lse_head_stride + seq.q_start + i] =
              std::isinf(lse) ? p.lse_of_empty_row : static_cast<float>(lse);
        }
      }
    }
  }
}

