// The decode micro-kernels: the forward's products for calls whose work
// items hold at most one vector of query lanes (decoding: a few new query
// rows x the query heads of one kv group). Included inside namespace
// flashattn::cpu::<isa> after micro_kernel.inl.
//
// Layout ("dim-major"): head_dim lies in the vector lanes. The lane-major
// micro-kernel would fill 4 of 16 lanes of a GQA-4 decode item and pack
// every K/V element into a tile buffer first; here K and V rows are read
// once, straight from the cache (converted on load), and every lane is work:
//   S:  per (key, query lane) pair a vector of partial q.k sums; kW of them
//       at a time become one vector of scores by Vec::transpose_sum, stored
//       packed: with L = the item's lanes rounded up to a power of two, a
//       vector holds kW / L keys x L lanes, key-major (S^T itself when
//       L = kW). The score hooks, the online softmax and the P rounding are
//       the tile loop's own, run over vectors of this layout: a GQA-4 decode
//       item pays them once per 4 keys, not per key on 4 real lanes of 16;
//   O:  O[lane] += P[j][lane] * V[j], V rows as vectors, blocked over
//       lanes and head_dim chunks, the tile's sum merged as alpha O + sum.
// The caller gives the rows as element offsets (core::key_offsets) into
// the k and v tensors; no row past the tile's n keys is read.

// The tile's key rows of one kv head in the k and v tensors, and the rows
// to prefetch while they are processed. Decoding streams the cache from
// DRAM once, and an item walks it kv head by kv head: per tile, block h's K
// rows (score pass), then its V rows (values pass), then block h + 1's.
// Each pass requests the rows the next pass reads (the score pass this
// block's V rows, the values pass the next block's K rows or, after the
// last block, the next tile's first): the requests run one pass (~32 KiB at
// head_dim 128) ahead of the loads. Requesting a whole tile of all heads
// ahead instead (~512 KiB) measured slower: 23 against 28 GB/s on the
// 2-thread bf16 DRAM row (BENCHMARKS.md).
struct DecodeTile {
  const void* k;             // k and v, moved to the block's kv head
  const void* v;
  const std::int64_t* k_at;  // (n) element offsets of the tile's keys in k (the item's first kv head)
  const std::int64_t* v_at;  // (n) and in v
  std::int64_t n;
  std::int64_t k_row_bytes, v_row_bytes;  // one head's row: head_dim (head_dim_v) elements
  // The values pass's requests: K rows at next_k + next_k_at[j] bytes, j < next_n.
  const char* next_k;
  const std::int64_t* next_k_at;  // element offsets; scaled by element_bytes
  std::int64_t next_n, element_bytes;
};

// prefetcht0 of the lines of [p, p + bytes). An asm statement, not
// __builtin_prefetch: GCC 12 marks a function whose only effect is that
// builtin pure and deletes its calls.
inline void prefetch_row(const char* p, std::int64_t bytes) {
  const char* line = reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t{63});
  for (; line < p + bytes; line += 64) asm volatile("prefetcht0 %0" : : "m"(*line));
}

// The score pass's request for key j: its V row.
inline void prefetch_value_row(const DecodeTile& t, std::int64_t j) {
  prefetch_row(static_cast<const char*>(t.v) + t.v_at[j] * t.element_bytes, t.v_row_bytes);
}

// The values pass's request for key j: the next pass's K row j.
inline void prefetch_next_key_row(const DecodeTile& t, std::int64_t j) {
  if (j < t.next_n) prefetch_row(t.next_k + t.next_k_at[j] * t.element_bytes, t.k_row_bytes);
}

// kW values of dtype T at element `at` of `base`, as floats.
template <DType T>
inline Vec::Reg load_as_f32(const void* base, std::int64_t at) {
  if constexpr (T == DType::f32) {
    return Vec::load(static_cast<const float*>(base) + at);
  } else if constexpr (T == DType::bf16) {
    return Vec::load_bf16(static_cast<const std::uint16_t*>(base) + at);
  } else {
    return Vec::load_f16(static_cast<const std::uint16_t*>(base) + at);
  }
}

// Calls f.template operator()<T>() for the runtime dtype.
template <class F>
inline void with_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: return f.template operator()<DType::f32>();
    case DType::bf16: return f.template operator()<DType::bf16>();
    default: return f.template operator()<DType::f16>();
  }
}

// Calls f.template operator()<Lanes>() with Lanes the power of two >= lanes
// (lanes <= kW): the item's lanes as the kernels block them.
template <int Lanes = 1, class F>
inline void with_lanes(std::int64_t lanes, F&& f) {
  if constexpr (Lanes < kW) {
    if (lanes > Lanes) return with_lanes<2 * Lanes>(lanes, f);
  }
  f.template operator()<Lanes>();
}

// Calls f.template operator()<T, Lanes>() with the kernel variant of a
// call: its dtype (F32Math converts any on load; Bf16DotMath is bf16 only)
// and the item's lanes rounded up to a power of two.
template <class Math, class F>
inline void with_decode_variant(DType dtype, std::int64_t lanes, F&& f) {
  with_lanes(lanes, [&]<int Lanes>() {
    if constexpr (std::is_same_v<Math, F32Math>) {
      with_dtype(dtype, [&]<DType T>() { f.template operator()<T, Lanes>(); });
    } else {
      f.template operator()<DType::bf16, Lanes>();
    }
  });
}

// Blocking of the values products: kDecodeLanes x kDecodeChunks accumulators.
constexpr int kDecodeLanes = kW >= 16 ? 4 : 2;
constexpr int kDecodeChunks = 4;

// o = alpha o + acc over a block of lanes x chunks (o rows of o_row floats).
template <int Lanes, int Chunks>
inline void merge_decode_block(const Vec::Reg (&acc)[Lanes][Chunks], const float* alpha, float* o,
                               std::int64_t o_row) {
  for (int l = 0; l < Lanes; ++l) {
    const Vec::Reg a = Vec::set1(alpha[l]);
    for (int c = 0; c < Chunks; ++c) {
      float* dst = o + l * o_row + c * kW;
      Vec::store(dst, Vec::fmadd(a, Vec::load(dst), acc[l][c]));
    }
  }
}

// The decode products of the fp32 math path (F32Math): FMA on floats.
template <class Math>
struct DecodeKernel {
  static_assert(std::is_same_v<Math, F32Math>, "other math paths specialise DecodeKernel");
  // Scores of keys [0, n) of the tile, lanes [0, Lanes), packed:
  // st[j * Lanes + lane] = scale * q[lane] . k[j] (the vectors past key n
  // are the caller's; keys past n in the last one are finite). q: (Lanes,
  // head_dim) rows of q_row floats; head_dim is a multiple of kW.
  template <DType T, int Lanes>
  static void scores(const DecodeTile& t, const float* q, std::int64_t q_row, std::int64_t head_dim, float scale,
                     float* st) {
    constexpr int kKeys = kW / Lanes;  // keys per transpose_sum
    for (std::int64_t j0 = 0; j0 < t.n; j0 += kKeys) {
      for (std::int64_t j = j0; j < std::min(j0 + kKeys, t.n); ++j) prefetch_value_row(t, j);
      const std::int64_t* at = t.k_at + j0;
      std::int64_t rows[kKeys];  // past the tile's end: repeat its last key (score set to -inf by the caller)
      for (int r = 0; r < kKeys; ++r) rows[r] = at[std::min<std::int64_t>(r, t.n - 1 - j0)];
      Vec::Reg acc[kW];
      for (int i = 0; i < kW; ++i) acc[i] = Vec::zero();
      for (std::int64_t c = 0; c < head_dim; c += kW) {
        Vec::Reg k[kKeys];
        for (int r = 0; r < kKeys; ++r) k[r] = load_as_f32<T>(t.k, rows[r] + c);
        for (int l = 0; l < Lanes; ++l) {
          const Vec::Reg ql = Vec::load(q + l * q_row + c);
          for (int r = 0; r < kKeys; ++r) acc[r * Lanes + l] = Vec::fmadd(k[r], ql, acc[r * Lanes + l]);
        }
      }
      Vec::store(st + j0 * Lanes, Vec::mul(Vec::transpose_sum(acc), Vec::set1(scale)));
    }
  }

  // o[lane] = alpha[lane] o[lane] + sum_j pt[j * Lanes + lane] V[j] for the
  // lanes [0, Lanes); o: (Lanes, head_dim_v) rows of o_row floats;
  // head_dim_v is a multiple of kW.
  template <DType T, int Lanes>
  static void values(const DecodeTile& t, const float* pt, const float* alpha, std::int64_t head_dim_v, float* o,
                     std::int64_t o_row) {
    constexpr int kLanes = Lanes < kDecodeLanes ? Lanes : kDecodeLanes;
    for (int l0 = 0; l0 < Lanes; l0 += kLanes) {
      for (std::int64_t c0 = 0; c0 < head_dim_v; c0 += kDecodeChunks * kW) {
        const std::int64_t chunks = std::min<std::int64_t>(kDecodeChunks, (head_dim_v - c0) / kW);
        with_cols<kDecodeChunks>(static_cast<int>(chunks), [&]<int Chunks>() {
          Vec::Reg acc[kLanes][Chunks];
          for (int l = 0; l < kLanes; ++l)
            for (int c = 0; c < Chunks; ++c) acc[l][c] = Vec::zero();
          for (std::int64_t j = 0; j < t.n; ++j) {
            if (l0 == 0 && c0 == 0) prefetch_next_key_row(t, j);
            Vec::Reg v[Chunks];
            for (int c = 0; c < Chunks; ++c) v[c] = load_as_f32<T>(t.v, t.v_at[j] + c0 + c * kW);
            for (int l = 0; l < kLanes; ++l) {
              const Vec::Reg p = Vec::set1(pt[j * Lanes + l0 + l]);
              for (int c = 0; c < Chunks; ++c) acc[l][c] = Vec::fmadd(p, v[c], acc[l][c]);
            }
          }
          merge_decode_block<kLanes, Chunks>(acc, alpha + l0, o + l0 * o_row + c0, o_row);
        });
      }
    }
  }
};
