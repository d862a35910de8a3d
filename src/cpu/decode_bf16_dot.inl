// The decode products of bf16 inputs on AVX512_BF16 (vdpbf16ps). Included
// inside namespace flashattn::cpu::avx512_bf16 after decode_kernel.inl.
// head_dim and head_dim_v are multiples of 16: a last half chunk of a row
// is read with a 256-bit load, never past the row.
//   scores: each lane pairs two consecutive head_dim elements of q and k,
//   so one vdpbf16ps does 32 of a row's products;
//   values: each lane pairs the elements of two keys in one column, P is
//   rounded to bf16 (as Bf16DotMath::probabilities does for the lane-major
//   tiles), so one vdpbf16ps adds two keys' products to 16 columns of O.

// 16 bf16 at p in the low half of a vector, zeros above.
inline __m512i load16(const std::uint16_t* p) {
  return _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

template <>
struct DecodePartials<Bf16DotMath> {
  // As DecodePartials<F32Math>::keys; q: (Lanes, head_dim) bf16 rows of q_row elements.
  template <DType, int Lanes, int Keys>
  static void keys(const char* k, const std::int64_t (&at)[Keys], const std::uint16_t* q, std::int64_t q_row,
                   std::int64_t head_dim, Vec::Reg (&acc)[kW]) {
    const std::uint16_t* rows = reinterpret_cast<const std::uint16_t*>(k);
    for (int i = 0; i < kW; ++i) acc[i] = Vec::zero();
    auto step = [&](std::int64_t c, auto load) {
      __m512i kc[Keys];
      for (int r = 0; r < Keys; ++r) kc[r] = load(rows + at[r] + c);
      for (int l = 0; l < Lanes; ++l) {
        const __m512bh ql = (__m512bh)load(q + l * q_row + c);
        for (int r = 0; r < Keys; ++r) acc[r * Lanes + l] = _mm512_dpbf16_ps(acc[r * Lanes + l], ql, (__m512bh)kc[r]);
      }
    };
    std::int64_t c = 0;
    for (; c + 32 <= head_dim; c += 32) step(c, load32);
    if (c < head_dim) step(c, load16);
  }

  static __m512i load32(const std::uint16_t* p) { return _mm512_loadu_si512(p); }
};

template <>
struct DecodeValues<Bf16DotMath> {
  // As DecodeValues<F32Math>::keys: keys 2i and 2i + 1 as one pair (an odd
  // last key pairs with zeros), blocks of up to kUnits x 16 columns.
  template <DType, int Lanes, int Keys>
  static void keys(const char* v, const std::int64_t* at, const float* p, float* o, std::int64_t o_row,
                   std::int64_t head_dim_v) {
    constexpr int kPairs = (Keys + 1) / 2;
    alignas(64) std::uint32_t pairs[kPairs][16];  // (bf16 p[2i][lane], bf16 p[2i + 1][lane])
    for (int i = 0; i < kPairs; ++i) pair_probabilities<Lanes>(p + 2 * i * Lanes, 2 * i + 1 < Keys, pairs[i]);
    const auto* rows = reinterpret_cast<const std::uint16_t*>(v);
    for (std::int64_t c0 = 0; c0 < head_dim_v; c0 += kUnits * 16) {
      const int units = static_cast<int>(std::min<std::int64_t>(kUnits, (head_dim_v - c0) / 16));
      with_cols<kUnits>(units, [&]<int Units>() { block<Lanes, Keys, Units>(rows, at, pairs, o + c0, o_row, c0); });
    }
  }

 private:
  // 16-column units per block: kPairs x Units paired V vectors, Units sums,
  // the two pairing indices and a broadcast P fit AVX-512's 32 registers.
  // At 8 units (4 keys: 16 + 8 + 3) GCC 12 spilled three of them to the
  // stack; 4 units took 4% fewer warm cycles per key and kv head (53.6 ->
  // 51.0 at L2, 71.7 -> 68.5 at L3, BENCHMARKS.md session 14).
  static constexpr int kUnits = 4;
  // Columns [c0, c0 + 16 Units) of every lane.
  template <int Lanes, int Keys, int Units>
  static void block(const std::uint16_t* rows, const std::int64_t* at, const std::uint32_t (*pairs)[16], float* o,
                    std::int64_t o_row, std::int64_t c0) {
    constexpr int kPairs = (Keys + 1) / 2;
    const __m512i low = _mm512_load_si512(kPairLow);
    const __m512i high = _mm512_add_epi16(low, _mm512_set1_epi16(16));
    __m512i x[kPairs][Units];  // 16 columns of (V[2i][c], V[2i + 1][c])
    for (int i = 0; i < kPairs; ++i) {
      const std::uint16_t* a = rows + at[2 * i] + c0;
      const std::uint16_t* b = 2 * i + 1 < Keys ? rows + at[2 * i + 1] + c0 : nullptr;
      for (int u = 0; u < Units; u += 2) {
        const bool whole = u + 1 < Units;  // 32 columns, else the last 16
        const __m512i ra = whole ? _mm512_loadu_si512(a + 16 * u) : load16(a + 16 * u);
        const __m512i rb = !b ? _mm512_setzero_si512() : whole ? _mm512_loadu_si512(b + 16 * u) : load16(b + 16 * u);
        x[i][u] = _mm512_permutex2var_epi16(ra, low, rb);
        if (whole) x[i][u + 1] = _mm512_permutex2var_epi16(ra, high, rb);
      }
    }
    for (int l = 0; l < Lanes; ++l) {
      float* row = o + l * o_row;
      Vec::Reg sum[Units];
      for (int u = 0; u < Units; ++u) sum[u] = Vec::load(row + 16 * u);
      for (int i = 0; i < kPairs; ++i) {
        const __m512bh pl = (__m512bh)_mm512_set1_epi32(static_cast<int>(pairs[i][l]));
        for (int u = 0; u < Units; ++u) sum[u] = _mm512_dpbf16_ps(sum[u], pl, (__m512bh)x[i][u]);
      }
      for (int u = 0; u < Units; ++u) Vec::store(row + 16 * u, sum[u]);
    }
  }

  // out[lane] = (bf16 a[lane], bf16 b[lane]) for the Lanes probabilities of
  // key a (at p) and key b (at p + Lanes; zeros when !second).
  template <int Lanes>
  static void pair_probabilities(const float* p, bool second, std::uint32_t* out) {
    const __mmask16 lanes = static_cast<__mmask16>((1u << Lanes) - 1);
    const __m512 a = _mm512_maskz_loadu_ps(lanes, p);
    const __m512 b = second ? _mm512_maskz_loadu_ps(lanes, p + Lanes) : _mm512_setzero_ps();
    const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(b, a);  // a in the low half, b in the high
    _mm512_store_si512(out, _mm512_permutexvar_epi16(_mm512_load_si512(kInterleave), both));
  }
};
