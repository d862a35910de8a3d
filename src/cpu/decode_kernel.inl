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
//   O:  O[lane] += P[j][lane] * V[j], V rows as vectors, the tile's sum
//       kept in registers and merged as alpha O + sum (fp32 FMAs; bf16 on
//       AVX512_BF16 pairs two keys per vdpbf16ps lane with P rounded to
//       bf16: decode_bf16_dot.inl).
// The caller gives the rows as element offsets (core::key_offsets) into
// the k and v tensors; no row past the tile's n keys is read.

// The tile's key rows in the k and v tensors, for all kv heads of the
// item. Decoding streams the cache from DRAM once. The score pass requests
// K in address order, key row j of every kv head (contiguous in a (keys, kv
// heads, dim) cache) before key row j + 1, kDecodeAhead keys ahead of the
// rows it reads, running on into the V rows of the tile's first keys at its
// end. The requests are spread evenly over the work (a few rows per head
// step): issued a whole key row (2 KiB, 32 lines) at a time, probably more
// than the core's miss buffers hold, the stream ran a third slower
// (BENCHMARKS.md). The values pass reads V head by head (its sums stay in
// registers over the tile) and requests head s's row kDecodeAhead keys
// ahead, running on into head s + 1's rows, after the last head into the
// next tile's first K rows.
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

inline constexpr std::int64_t kDecodeAhead = 8;

// prefetcht0 of the lines of [p, p + bytes). An asm statement, not
// __builtin_prefetch: GCC 12 marks a function whose only effect is that
// builtin pure and deletes its calls.
inline void prefetch_row(const char* p, std::int64_t bytes) {
  const char* line = reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t{63});
  for (; line < p + bytes; line += 64) asm volatile("prefetcht0 %0" : : "m"(*line));
}

// Heads [h, h + count) of the rows at element offset `at` of base: one
// span when the heads are adjacent.
inline void prefetch_heads(const char* base, std::int64_t at, std::int64_t h, std::int64_t count, const DecodeTile& t,
                           std::int64_t head_bytes, std::int64_t row_bytes) {
  const char* row = base + at * t.element_bytes + h * head_bytes;
  if (head_bytes == row_bytes) return prefetch_row(row, count * row_bytes);
  for (std::int64_t i = 0; i < count; ++i) prefetch_row(row + i * head_bytes, row_bytes);
}

// The score pass's request for key r of the tile, heads [h, h + count):
// their K rows, past the tile's end the V rows of key r - n.
inline void request_key_rows(const DecodeTile& t, std::int64_t r, std::int64_t h, std::int64_t count) {
  if (r < t.n) return prefetch_heads(t.k, t.k_at[r], h, count, t, t.k_head_bytes, t.k_row_bytes);
  if (r - t.n < t.n) prefetch_heads(t.v, t.v_at[r - t.n], h, count, t, t.v_head_bytes, t.v_row_bytes);
}

// The values pass's request while it reads key r - kDecodeAhead of head s
// (head by head): head s's V row of key r; past the tile's end, head s + 1's
// V row of key r - n; after the last head, the next tile's K rows (every
// head) of key r - n.
inline void request_value_rows(const DecodeTile& t, std::int64_t s, std::int64_t r) {
  if (r < t.n) return prefetch_heads(t.v, t.v_at[r], s, 1, t, t.v_head_bytes, t.v_row_bytes);
  r -= t.n;
  if (s + 1 < t.heads) {
    if (r < t.n) prefetch_heads(t.v, t.v_at[r], s + 1, 1, t, t.v_head_bytes, t.v_row_bytes);
    return;
  }
  if (r < t.next_n) prefetch_heads(t.k, t.next_k_at[r], 0, t.heads, t, t.k_head_bytes, t.k_row_bytes);
}

// Requests rows [first, first + count) of the (key, head) rows from key r0
// on, in address order (key-major): a group's requests spread over its
// heads, one call per key row touched.
template <class Request>
inline void request_rows(const DecodeTile& t, std::int64_t r0, std::int64_t first, std::int64_t count,
                         Request request) {
  std::int64_t r = r0 + first / t.heads, h = first % t.heads;
  while (count > 0) {
    const std::int64_t span = std::min(count, t.heads - h);
    request(t, r++, h, span);
    count -= span, h = 0;
  }
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

// Sum registers of the values pass: Lanes x Units vectors of O columns
// stay in registers over a whole tile of keys (16 of AVX-512's 32, 8 of
// AVX2's 16; V, P and the pairing indices take the rest). Units: kW-column
// vectors per lane in one block of columns, at most 8 (128 columns).
constexpr int kDecodeSumRegs = kW >= 16 ? 16 : 8;
template <int Lanes>
constexpr int kDecodeUnits = std::clamp(kDecodeSumRegs / Lanes, 1, 8);

// The decode products, in address order over all kv heads of the item
// (head slot s: its query lanes q + s * q_head, its scores st + s * st_head,
// its O o + s * o_head). The score pass takes kW / Lanes keys of every head
// (one vector of packed scores per head) before the next keys; rows are
// requested in address order ahead of it, so the loads hit L1 and the
// partial sums stay in registers.
//   scores: for key r of the group and lane l, acc[r * Lanes + l] holds
//   partial sums; one Vec::transpose_sum per head and group turns them into
//   a packed vector of scores: st[j * Lanes + lane] = scale * q[lane] . k[j].
//   values: head by head and block of columns by block, the tile's
//   sum_j p[j * Lanes + lane] V[j] (key order) stays in registers over all
//   the tile's keys, then o[lane] = alpha[lane] o[lane] + sum: O is read
//   and written once per tile, never per key.
// DecodePartials<Math> supplies the per-lane partial sums of q . k,
// DecodeValues<Math> the P V sums; the rest is shared.
template <class Math>
struct DecodePartials;
template <class Math>
struct DecodeValues;

template <class Math>
struct DecodeKernel {
  // Scores of keys [0, n) for every head (keys past n in the last vector
  // repeat key n - 1; the caller masks them). head_dim: whole vectors.
  template <DType T, int Lanes>
  static void scores(const DecodeTile& t, const typename Math::Elem* q, std::int64_t q_row, std::int64_t q_head,
                     std::int64_t head_dim, float scale, float* st, std::int64_t st_head) {
    constexpr int kKeys = kW / Lanes;  // keys per transpose_sum
    // Requests start a whole group ahead when a group is longer than
    // kDecodeAhead (Lanes 1: 16 keys), not inside the group being read.
    constexpr std::int64_t kAhead = std::max<std::int64_t>(kKeys, kDecodeAhead);
    for (std::int64_t j0 = 0; j0 < t.n; j0 += kKeys) {
      std::int64_t at[kKeys];
      for (int r = 0; r < kKeys; ++r) at[r] = t.k_at[std::min<std::int64_t>(j0 + r, t.n - 1)];
      for (std::int64_t s = 0; s < t.heads; ++s) {
        request_rows(t, j0 + kAhead, s * kKeys, kKeys, request_key_rows);
        Vec::Reg acc[kW];
        DecodePartials<Math>::template keys<T, Lanes, kKeys>(t.k + s * t.k_head_bytes, at, q + s * q_head, q_row,
                                                             head_dim, acc);
        Vec::store(st + s * st_head + j0 * Lanes, Vec::mul(Vec::transpose_sum(acc), Vec::set1(scale)));
      }
    }
  }

  // o = alpha o + P V for every head; p: packed probabilities (p + s *
  // p_head), alpha: kW per head; head_dim_v: whole vectors; scratch:
  // kDecodeScratchFloats. The tile's P V is summed in
  // registers, then merged with one rounding, as the lane-major path does.
  template <DType T, int Lanes>
  static void values(const DecodeTile& t, const float* p, std::int64_t p_head, const float* alpha,
                     std::int64_t head_dim_v, float* o, std::int64_t o_row, std::int64_t o_head, float* scratch) {
    constexpr int kUnits = kDecodeUnits<Lanes>;
    for (std::int64_t s = 0; s < t.heads; ++s) {
      const auto probs = DecodeValues<Math>::template probabilities<Lanes>(p + s * p_head, t.n, scratch);
      const char* v = t.v + s * t.v_head_bytes;
      for (std::int64_t c0 = 0; c0 < head_dim_v; c0 += kUnits * kW) {
        const int units = static_cast<int>(std::min<std::int64_t>(kUnits, (head_dim_v - c0) / kW));
        // The first block of columns requests the rows ahead (whole rows).
        const auto request = [&](std::int64_t j) {
          if (c0 == 0) request_value_rows(t, s, j + kDecodeAhead);
        };
        with_cols<kUnits>(units, [&]<int Units>() {
          Vec::Reg sum[Lanes][Units];
          for (int l = 0; l < Lanes; ++l)
            for (int u = 0; u < Units; ++u) sum[l][u] = Vec::zero();
          DecodeValues<Math>::template keys<T, Lanes, Units>(v, t.v_at, t.n, probs, c0, sum, request);
          for (int l = 0; l < Lanes; ++l) {
            const Vec::Reg a = Vec::set1(alpha[s * kW + l]);
            float* row = o + s * o_head + l * o_row + c0;
            for (int u = 0; u < Units; ++u) Vec::store(row + u * kW, Vec::fmadd(a, Vec::load(row + u * kW), sum[l][u]));
          }
        });
      }
    }
  }
};

// The fp32 math path's P V sums: sum[l] += p[j][l] V[j] for keys [0, n) of
// one head (rows at element offsets at[j] of v), key by key in fp32, V
// converted on load; request(j) as key j is read.
template <>
struct DecodeValues<F32Math> {
  template <int Lanes>
  static const float* probabilities(const float* p, std::int64_t, float*) {
    return p;
  }

  template <DType T, int Lanes, int Units, class Request>
  static void keys(const char* v, const std::int64_t* at, std::int64_t n, const float* p, std::int64_t c0,
                   Vec::Reg (&sum)[Lanes][Units], Request request) {
    for (std::int64_t j = 0; j < n; ++j) {
      request(j);
      Vec::Reg x[Units];
      for (int u = 0; u < Units; ++u) x[u] = load_as_f32<T>(v, at[j] + c0 + u * kW);
      for (int l = 0; l < Lanes; ++l) {
        const Vec::Reg pl = Vec::set1(p[j * Lanes + l]);
        for (int u = 0; u < Units; ++u) sum[l][u] = Vec::fmadd(pl, x[u], sum[l][u]);
      }
    }
  }
};

// The fp32 math path's partial sums: acc[r * Lanes + l] = q[l] * k[r]
// elementwise, summed over head_dim's vectors (FMA on floats, K converted
// on load).
template <>
struct DecodePartials<F32Math> {
  template <DType T, int Lanes, int Keys>
  static void keys(const char* k, const std::int64_t (&at)[Keys], const float* q, std::int64_t q_row,
                   std::int64_t head_dim, Vec::Reg (&acc)[kW]) {
    for (int i = 0; i < kW; ++i) acc[i] = Vec::zero();
    for (std::int64_t c = 0; c < head_dim; c += kW) {
      Vec::Reg kc[Keys];
      for (int r = 0; r < Keys; ++r) kc[r] = load_as_f32<T>(k, at[r] + c);
      for (int l = 0; l < Lanes; ++l) {
        const Vec::Reg ql = Vec::load(q + l * q_row + c);
        for (int r = 0; r < Keys; ++r) acc[r * Lanes + l] = Vec::fmadd(kc[r], ql, acc[r * Lanes + l]);
      }
    }
  }
};
