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
//       merged as alpha O + sum (fp32 FMAs; bf16 on AVX512_BF16 pairs two
//       keys per vdpbf16ps lane with P rounded to bf16: decode_bf16_dot.inl).
// The caller gives the rows as element offsets (core::key_offsets) into
// the k and v tensors; no row past the tile's n keys is read.

// The tile's key rows in the k and v tensors, for all kv heads of the
// item. Decoding streams the cache from DRAM once. The kernels request it
// in address order, key row j of every kv head (contiguous in a (keys, kv
// heads, dim) cache) before key row j + 1, kDecodeLeadBytes of rows ahead
// of the rows they read (request_lead), the score pass over K, then the
// values pass over V, running on into the next pass's rows at its end.
// The requests are spread evenly over the work (a few rows per head
// step): issued a whole key row (2 KiB, 32 lines) at a time, probably
// more than the core's miss buffers hold, the stream ran a third slower
// (BENCHMARKS.md). A head-by-head request order, 256-byte slices at a
// 2 KiB stride, is not followed by the hardware prefetchers either.
// Denser bursts also lose: a leaner stream that dropped the per-row
// spreading below and issued a whole step's lines together read a sixth
// slower from DRAM (BENCHMARKS.md, session 13). Within a row the lines go
// out back to back (prefetch_row).
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

// How far the requests run ahead, in bytes of key rows (every kv head of
// the item), not keys: 8 keys of a bf16 row of 8 heads x 128, 4 of an f32
// one. With the rows being read and the tile's sums, a longer lead
// overflows the L1 before its lines are used: 8 keys of f32 rows (32 KiB)
// read DRAM 3-9% slower than 4 and took 9% more cycles warm; 12 keys of
// bf16 rows took 3% more warm (BENCHMARKS.md session 22).
inline constexpr std::int64_t kDecodeLeadBytes = 16 * 1024;

// Keys ahead of the row being read that a pass requests, rows of row_bytes per head.
inline std::int64_t request_lead(const DecodeTile& t, std::int64_t row_bytes) {
  return std::max<std::int64_t>(1, kDecodeLeadBytes / (t.heads * row_bytes));
}

// prefetcht0 of the lines of [p, p + bytes). An asm statement, not
// __builtin_prefetch: GCC 12 marks a function whose only effect is that
// builtin pure and deletes its calls. Unrolled: one instruction per line
// instead of four (6% fewer per key and kv head, BENCHMARKS.md session 15).
inline void prefetch_row(const char* p, std::int64_t bytes) {
  const char* line = reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t{63});
#pragma GCC unroll 4
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

// The values pass's request for key r, heads [h, h + count): their V rows,
// past the tile's end the next tile's K rows of key r - n.
inline void request_value_rows(const DecodeTile& t, std::int64_t r, std::int64_t h, std::int64_t count) {
  if (r < t.n) return prefetch_heads(t.v, t.v_at[r], h, count, t, t.v_head_bytes, t.v_row_bytes);
  if (r - t.n < t.next_n) prefetch_heads(t.k, t.next_k_at[r - t.n], h, count, t, t.k_head_bytes, t.k_row_bytes);
}

// Where a pass's requests have got to: the next (key, head) row to
// request, in address order (key-major). Each head step requests the next
// few rows, one call per key row touched, so the requests spread over the
// pass's head steps.
struct RequestCursor {
  std::int64_t r, h = 0;

  template <class Request>
  void next(const DecodeTile& t, std::int64_t count, Request request) {
    while (count > 0) {
      const std::int64_t span = std::min(count, t.heads - h);
      request(t, r, h, span);
      count -= span, h += span;
      if (h == t.heads) h = 0, ++r;
    }
  }
};

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

// Vectors of head_dim_v per step of the values product, and keys per O
// update: kDecodeChunks x kDecodeValueKeys V vectors in registers (16 of
// AVX-512's 32, 8 of AVX2's 16).
constexpr int kDecodeChunks = 4;
constexpr int kDecodeValueKeys = kW >= 16 ? 4 : kW >= 8 ? 2 : 1;

// Keys per O update of the values pass for Lanes query lanes per kv head.
// Every update loads and stores each lane's O row; at 16 lanes (sq 4 at
// GQA 4) the bf16 pass updates per 8 keys (their V pairs fill 16 of the
// registers): sq 4 read 13-15% faster than with 4. At 8 lanes that gained
// 1%, at 4 nothing from DRAM, and the fp32 pass (8 keys x 2 vectors) was
// no faster (BENCHMARKS.md, sessions 24 and 26). The sums are the same
// dpbf16 chain in key order either way.
template <class Math, int Lanes>
inline constexpr int kDecodeValueStep = !std::is_same_v<Math, F32Math> && Lanes >= 16 ? 8 : kDecodeValueKeys;

// The decode products, in address order over all kv heads of the item
// (head slot s: its query lanes q + s * q_head, its scores st + s * st_head,
// its O o + s * o_head), a few keys at a time: the score pass takes
// kW / Lanes keys of one head (one vector of packed scores; more keys, a
// part of the lanes at a time, above kSquareLanes lanes), the values pass
// kDecodeValueStep, before the next head. Rows are requested in
// address order ahead of both; the loads then hit L1, and the partial sums
// and O stay in registers across the group's keys instead of going to
// memory per key. DecodePartials<Math> supplies the per-lane partial sums
// of q . k, DecodeValues<Math> the P V step; the rest is shared.
//   scores: for key r of the group and lane l, acc[r * Lanes + l] holds
//   partial sums; one Vec::transpose_sum per head and group turns them into
//   a packed vector of scores: st[j * Lanes + lane] = scale * q[lane] . k[j].
//   values: O in memory (L1), every row of V read once:
//   o[lane] = alpha[lane] o[lane] + sum_j p[j * Lanes + lane] V[j], the sum
//   taken in key order (the group only keeps it in registers).
template <class Math>
struct DecodePartials;
template <class Math>
struct DecodeValues;

// Query lanes per transpose_sum of the score pass (see DecodeKernel::scores).
// AVX-512 only: with AVX2's 8 lanes, parts of 2 lanes x 4 keys ran bf16 GQA 8
// 4-6% slower (each part converts its k vectors again), so a head keeps all
// its lanes there (BENCHMARKS.md, session 26).
inline constexpr int kSquareLanes = kW >= 16 ? 4 : kW;

template <class Math>
struct DecodeKernel {
  // Scores of keys [0, n) for every head (keys past n in the last vector
  // repeat key n - 1; the caller masks them). head_dim: whole vectors.
  // A head with more than kSquareLanes lanes is taken in parts of that many
  // lanes, each over kW / kSquareLanes keys (4 x 4 on AVX-512, the GQA-4
  // shape): per column step a part loads as many q as k vectors, where 16
  // lanes x 1 key loaded 16 q per k. sq 4 at GQA 4 (16 lanes) ran 16-38%
  // faster, GQA 8 1-2% (BENCHMARKS.md, session 26); each score is the same
  // sum either way.
  template <DType T, int Lanes>
  static void scores(const DecodeTile& t, const typename Math::Elem* q, std::int64_t q_row, std::int64_t q_head,
                     std::int64_t head_dim, float scale, float* st, std::int64_t st_head) {
    constexpr int kPartLanes = Lanes < kSquareLanes ? Lanes : kSquareLanes, kParts = Lanes / kPartLanes;
    constexpr int kKeys = kW / kPartLanes;  // keys per transpose_sum
    // Requests start at least a whole group ahead (Lanes 1: 16 keys), not
    // inside the group being read.
    RequestCursor requests{std::max<std::int64_t>(kKeys, request_lead(t, t.k_row_bytes))};
    for (std::int64_t j0 = 0; j0 < t.n; j0 += kKeys) {
      std::int64_t at[kKeys];
      for (int r = 0; r < kKeys; ++r) at[r] = t.k_at[std::min<std::int64_t>(j0 + r, t.n - 1)];
      for (std::int64_t s = 0; s < t.heads; ++s) {
        requests.next(t, kKeys, request_key_rows);
        for (int part = 0; part < kParts; ++part) {
          Vec::Reg acc[kW];
          DecodePartials<Math>::template keys<T, kPartLanes, kKeys>(
              t.k + s * t.k_head_bytes, at, q + s * q_head + part * kPartLanes * q_row, q_row, head_dim, acc);
          const Vec::Reg v = Vec::mul(Vec::transpose_sum(acc), Vec::set1(scale));
          float* out = st + s * st_head + j0 * Lanes;
          if constexpr (kParts == 1) {
            Vec::store(out, v);
          } else {  // key r's part of the lanes, at its packed slot
            alignas(64) float sums[kW];
            Vec::store(sums, v);
            for (int r = 0; r < kKeys; ++r)
              std::memcpy(out + r * Lanes + part * kPartLanes, sums + r * kPartLanes, kPartLanes * sizeof(float));
          }
        }
      }
    }
  }

  // o = alpha o + P V for every head; p: packed probabilities (p + s *
  // p_head), alpha: kW per head; head_dim_v: whole vectors. The tile's P V
  // is summed in acc (laid out as o), then merged with one rounding, as the
  // lane-major path does: O never takes one rounding per key. Keeping the
  // sums in registers over the whole tile instead (head by head, a column
  // block at a time) saved 4.5 cycles of products per key and kv head, but
  // its head-major V stream read DRAM 16-20% slower, however it was
  // requested (BENCHMARKS.md session 18; branch experiment/decode-values-tile).
  template <DType T, int Lanes>
  static void values(const DecodeTile& t, const float* p, std::int64_t p_head, const float* alpha,
                     std::int64_t head_dim_v, float* o, std::int64_t o_row, std::int64_t o_head, float* acc) {
    for (std::int64_t s = 0; s < t.heads; ++s)
      for (int l = 0; l < Lanes; ++l) std::memset(acc + s * o_head + l * o_row, 0, head_dim_v * sizeof(float));
    RequestCursor requests{request_lead(t, t.v_row_bytes)};
    std::int64_t j0 = 0;
    constexpr int kStep = kDecodeValueStep<Math, Lanes>;
    for (; j0 + kStep <= t.n; j0 += kStep)
      value_keys<T, Lanes, kStep>(t, j0, p, p_head, head_dim_v, acc, o_row, o_head, requests);
    if constexpr (kStep > kDecodeValueKeys) {
      for (; j0 + kDecodeValueKeys <= t.n; j0 += kDecodeValueKeys)
        value_keys<T, Lanes, kDecodeValueKeys>(t, j0, p, p_head, head_dim_v, acc, o_row, o_head, requests);
    }
    for (; j0 < t.n; ++j0) value_keys<T, Lanes, 1>(t, j0, p, p_head, head_dim_v, acc, o_row, o_head, requests);
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

 private:
  // acc[lane] += p[j][lane] V[j] for keys j0 .. j0 + Keys - 1 of every head.
  template <DType T, int Lanes, int Keys>
  static void value_keys(const DecodeTile& t, std::int64_t j0, const float* p, std::int64_t p_head,
                         std::int64_t head_dim_v, float* acc, std::int64_t o_row, std::int64_t o_head,
                         RequestCursor& requests) {
    for (std::int64_t s = 0; s < t.heads; ++s) {
      requests.next(t, Keys, request_value_rows);
      DecodeValues<Math>::template keys<T, Lanes, Keys>(
          t.v + s * t.v_head_bytes, t.v_at + j0, p + s * p_head + j0 * Lanes, acc + s * o_head, o_row, head_dim_v);
    }
  }
};

// The fp32 math path's P V step: o[lane] += p[r][lane] V[r] for Keys rows
// of one head (rows at element offsets at[r] of v), key by key in fp32, V
// converted on load; Keys x kDecodeChunks V vectors in registers.
template <>
struct DecodeValues<F32Math> {
  template <DType T, int Lanes, int Keys>
  static void keys(const char* v, const std::int64_t* at, const float* p, float* o, std::int64_t o_row,
                   std::int64_t head_dim_v) {
    std::int64_t c0 = 0;
    for (; c0 + kDecodeChunks * kW <= head_dim_v; c0 += kDecodeChunks * kW)
      block<T, Lanes, Keys, kDecodeChunks>(v, at, p, o + c0, o_row, c0);
    for (; c0 < head_dim_v; c0 += kW) block<T, Lanes, Keys, 1>(v, at, p, o + c0, o_row, c0);
  }

 private:
  // Columns [c0, c0 + Chunks kW) of every lane (o: at column c0). A
  // function, not a lambda capturing keys' locals by reference, which GCC
  // re-read after every store: 7% fewer instructions per key and kv head
  // at GQA 4 and 14% at GQA 8 on AVX-512 (f32 GQA 8 about 9% fewer cycles warm);
  // AVX2 runs 6% more instructions in the same cycles (BENCHMARKS.md,
  // session 27).
  template <DType T, int Lanes, int Keys, int Chunks>
  static void block(const char* v, const std::int64_t* at, const float* p, float* o, std::int64_t o_row,
                    std::int64_t c0) {
    Vec::Reg x[Keys][Chunks];
    for (int r = 0; r < Keys; ++r)
      for (int c = 0; c < Chunks; ++c) x[r][c] = load_as_f32<T>(v, at[r] + c0 + c * kW);
    for (int l = 0; l < Lanes; ++l) {
      float* row = o + l * o_row;
      Vec::Reg sum[Chunks];
      for (int c = 0; c < Chunks; ++c) sum[c] = Vec::load(row + c * kW);
      for (int r = 0; r < Keys; ++r) {
        const Vec::Reg pl = Vec::set1(p[r * Lanes + l]);
        for (int c = 0; c < Chunks; ++c) sum[c] = Vec::fmadd(pl, x[r][c], sum[c]);
      }
      for (int c = 0; c < Chunks; ++c) Vec::store(row + c * kW, sum[c]);
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
