// The decode micro-kernels: the forward's products for calls whose work
// items hold at most one vector of query lanes per kv head (decoding: a few
// new query rows x the query heads of one kv group). Included inside
// namespace flashattn::cpu::<isa> after micro_kernel.inl.
//
// Layout ("dim-major"): head_dim lies in the vector lanes. The lane-major
// micro-kernel would fill 4 of 16 lanes of a GQA-4 decode item and pack
// every K/V element into a tile buffer first; here K and V rows are read
// once, straight from the cache (converted on load), and every lane is work:
//   S:  per (key, query lane) pair a vector of partial q.k sums; kW of them
//       at a time become one vector of scores by Vec::transpose_sum, stored
//       packed: with L = the item's lanes rounded up to a power of two, a
//       vector holds kW / L keys x L lanes, key-major (S^T itself when
//       L = kW). The score hooks and the online softmax are the tile
//       loop's own, run over vectors of this layout: a GQA-4 decode item
//       pays them once per 4 keys, not per key on 4 real lanes of 16;
//   O:  O[lane] += P[j][lane] * V[j] in fp32 (P is not rounded to bf16),
//       V rows as vectors, the tile's sum merged as alpha O + sum.
// The caller gives the rows as element offsets (core::key_offsets) into
// the k and v tensors; no row past the tile's n keys is read.

// The tile's key rows in the k and v tensors, for all kv heads of the
// item. Decoding streams the cache from DRAM once, and the kernels read it
// in address order: key row j of every kv head (contiguous in a (keys, kv
// heads, dim) cache) before key row j + 1, the score pass over K, then the
// values pass over V. A head-by-head walk reads 256-byte slices at a 2 KiB
// stride instead, which the hardware prefetchers do not follow
// (BENCHMARKS.md). Each pass requests the rows kDecodeAhead keys ahead of
// the one it reads, running on into the next pass's rows at its end.
struct DecodeTile {
  const char* k;  // k and v at the item's first kv head
  const char* v;
  const std::int64_t* k_at;  // (n) element offsets of the tile's keys in k
  const std::int64_t* v_at;  // (n) and in v
  std::int64_t n;
  std::int64_t heads;                       // kv heads of the item
  std::int64_t k_head_bytes, v_head_bytes;  // from one kv head to the next
  std::int64_t k_row_bytes, v_row_bytes;    // one head's row: head_dim (head_dim_v) elements
  const std::int64_t* next_k_at;            // (next_n) the next tile's keys in k
  std::int64_t next_n, element_bytes;
};

inline constexpr std::int64_t kDecodeAhead = 4;

// prefetcht0 of the lines of [p, p + bytes). An asm statement, not
// __builtin_prefetch: GCC 12 marks a function whose only effect is that
// builtin pure and deletes its calls.
inline void prefetch_row(const char* p, std::int64_t bytes) {
  const char* line = reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t{63});
  for (; line < p + bytes; line += 64) asm volatile("prefetcht0 %0" : : "m"(*line));
}

// Every kv head's row at element offset `at`: one span when the heads are adjacent.
inline void prefetch_heads(const char* base, std::int64_t at, const DecodeTile& t, std::int64_t head_bytes,
                           std::int64_t row_bytes) {
  const char* row = base + at * t.element_bytes;
  if (head_bytes == row_bytes) return prefetch_row(row, t.heads * row_bytes);
  for (std::int64_t h = 0; h < t.heads; ++h) prefetch_row(row + h * head_bytes, row_bytes);
}

// The score pass's request while it reads K row j: K row j + kDecodeAhead,
// past the tile's end the first V rows.
inline void request_after_key(const DecodeTile& t, std::int64_t j) {
  const std::int64_t r = j + kDecodeAhead;
  if (r < t.n) return prefetch_heads(t.k, t.k_at[r], t, t.k_head_bytes, t.k_row_bytes);
  if (r - t.n < t.n) prefetch_heads(t.v, t.v_at[r - t.n], t, t.v_head_bytes, t.v_row_bytes);
}

// The values pass's request while it reads V row j: V row j + kDecodeAhead,
// past the tile's end the next tile's first K rows.
inline void request_after_value(const DecodeTile& t, std::int64_t j) {
  const std::int64_t r = j + kDecodeAhead;
  if (r < t.n) return prefetch_heads(t.v, t.v_at[r], t, t.v_head_bytes, t.v_row_bytes);
  if (r - t.n < t.next_n) prefetch_heads(t.k, t.next_k_at[r - t.n], t, t.k_head_bytes, t.k_row_bytes);
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
    case DType::f32:
      return f.template operator()<DType::f32>();
    case DType::bf16:
      return f.template operator()<DType::bf16>();
    default:
      return f.template operator()<DType::f16>();
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

// Vectors of head_dim_v per step of the values product.
constexpr int kDecodeChunks = 4;

// The decode products, in address order over all kv heads of the item
// (head slot s: its query lanes q + s * q_head, its scores st + s * st_head,
// its O o + s * o_head). DecodePartials<Math> supplies the per-lane partial
// sums of one head's q . k; the rest is shared.
//   scores: for each key, each head: Lanes vectors of partial sums, parked
//   in `part` (kW per head); every kW / Lanes keys one Vec::transpose_sum
//   per head turns them into a packed vector of scores:
//   st[j * Lanes + lane] = scale * q[lane] . k[j].
//   values: O in memory (L1), every row of V read once, converted to float:
//   o[lane] = alpha[lane] o[lane] + sum_j p[j * Lanes + lane] V[j].
template <class Math>
struct DecodePartials;

template <class Math>
struct DecodeKernel {
  // Scores of keys [0, n) for every head (keys past n in the last vector
  // repeat key n - 1; the caller masks them). head_dim: whole vectors.
  template <DType T, int Lanes>
  static void scores(const DecodeTile& t, const typename Math::Elem* q, std::int64_t q_row, std::int64_t q_head,
                     std::int64_t head_dim, float scale, float* st, std::int64_t st_head, float* part) {
    constexpr int kKeys = kW / Lanes;  // keys per transpose_sum
    for (std::int64_t j0 = 0; j0 < t.n; j0 += kKeys) {
      for (int r = 0; r < kKeys; ++r) {
        const std::int64_t j = std::min<std::int64_t>(j0 + r, t.n - 1);
        if (j0 + r < t.n) request_after_key(t, j);
        for (std::int64_t s = 0; s < t.heads; ++s) {
          Vec::Reg acc[Lanes];
          DecodePartials<Math>::template head<T, Lanes>(t.k + s * t.k_head_bytes, t.k_at[j], q + s * q_head, q_row,
                                                        head_dim, acc);
          for (int l = 0; l < Lanes; ++l) Vec::store(part + (s * kW + r * Lanes + l) * kW, acc[l]);
        }
      }
      for (std::int64_t s = 0; s < t.heads; ++s) {
        Vec::Reg acc[kW];
        for (int i = 0; i < kW; ++i) acc[i] = Vec::load(part + (s * kW + i) * kW);
        Vec::store(st + s * st_head + j0 * Lanes, Vec::mul(Vec::transpose_sum(acc), Vec::set1(scale)));
      }
    }
  }

  // o = alpha o + P V for every head; p: packed probabilities (p + s *
  // p_head), alpha: kW per head; head_dim_v: whole vectors. The tile's P V
  // is summed in acc (laid out as o), then merged with one rounding, as the
  // lane-major path does: O never takes one rounding per key.
  template <DType T, int Lanes>
  static void values(const DecodeTile& t, const float* p, std::int64_t p_head, const float* alpha,
                     std::int64_t head_dim_v, float* o, std::int64_t o_row, std::int64_t o_head, float* acc) {
    for (std::int64_t s = 0; s < t.heads; ++s)
      for (int l = 0; l < Lanes; ++l) std::memset(acc + s * o_head + l * o_row, 0, head_dim_v * sizeof(float));
    for (std::int64_t j = 0; j < t.n; ++j) {
      request_after_value(t, j);
      for (std::int64_t s = 0; s < t.heads; ++s) {
        const char* v = t.v + s * t.v_head_bytes;
        const float* ps = p + s * p_head + j * Lanes;
        float* os = acc + s * o_head;
        for (std::int64_t c0 = 0; c0 < head_dim_v; c0 += kDecodeChunks * kW) {
          const std::int64_t chunks = std::min<std::int64_t>(kDecodeChunks, (head_dim_v - c0) / kW);
          with_cols<kDecodeChunks>(static_cast<int>(chunks), [&]<int Chunks>() {
            Vec::Reg x[Chunks];
            for (int c = 0; c < Chunks; ++c) x[c] = load_as_f32<T>(v, t.v_at[j] + c0 + c * kW);
            for (int l = 0; l < Lanes; ++l) {
              const Vec::Reg pl = Vec::set1(ps[l]);
              float* row = os + l * o_row + c0;
              for (int c = 0; c < Chunks; ++c) Vec::store(row + c * kW, Vec::fmadd(pl, x[c], Vec::load(row + c * kW)));
            }
          });
        }
      }
    }
    for (std::int64_t s = 0; s < t.heads; ++s) {
      for (int l = 0; l < Lanes; ++l) {
        const Vec::Reg a = Vec::set1(alpha[s * kW + l]);
        float* row = o + s * o_head + l * o_row;
        const float* sum = acc + s * o_head + l * o_row;
        for (std::int64_t c = 0; c < head_dim_v; c += kW)
          Vec::store(row + c, Vec::fmadd(a, Vec::load(row + c), Vec::load(sum + c)));
      }
    }
  }
};

// The fp32 math path's partial sums: acc[l] = q[l] * k elementwise, summed
// over head_dim's vectors (FMA on floats, K converted on load).
template <>
struct DecodePartials<F32Math> {
  template <DType T, int Lanes>
  static void head(const char* k, std::int64_t at, const float* q, std::int64_t q_row, std::int64_t head_dim,
                   Vec::Reg (&acc)[Lanes]) {
    for (int l = 0; l < Lanes; ++l) acc[l] = Vec::zero();
    for (std::int64_t c = 0; c < head_dim; c += kW) {
      const Vec::Reg kc = load_as_f32<T>(k, at + c);
      for (int l = 0; l < Lanes; ++l) acc[l] = Vec::fmadd(kc, Vec::load(q + l * q_row + c), acc[l]);
    }
  }
};
