// The decode products of bf16 inputs on AVX512_BF16 (vdpbf16ps). Included
// inside namespace flashattn::cpu::avx512_bf16 after decode_kernel.inl.
// head_dim and head_dim_v are multiples of 16: a last half chunk of a row
// is read with a 256-bit load, never past the row.
//   scores: each lane pairs two consecutive head_dim elements of q and k,
//   so one vdpbf16ps does 32 of a row's products;
//   values: each lane pairs the elements of two keys in one column, P is
//   rounded to bf16 (as Bf16DotMath::probabilities does for the lane-major
//   tiles), so one vdpbf16ps adds two keys' products to 16 columns of a
//   lane's sum.

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
  // The tile's packed probabilities as pairs, once per head (scratch:
  // kDecodeScratchFloats, 64-byte aligned): pairs[i * 16 +
  // l] = (bf16 p[2i][l], bf16 p[2i + 1][l]), an odd last key paired with 0.
  // P is rounded to bf16 as Bf16DotMath::probabilities does for the
  // lane-major tiles.
  template <int Lanes>
  static const std::uint32_t* probabilities(const float* p, std::int64_t n, float* scratch) {
    auto* pairs = reinterpret_cast<std::uint32_t*>(scratch);
    for (std::int64_t i = 0; 2 * i < n; ++i)
      pair_probabilities<Lanes>(p + 2 * i * Lanes, 2 * i + 1 < n, pairs + 16 * i);
    return pairs;
  }

  // As DecodeValues<F32Math>::keys: keys 2i and 2i + 1 as one pair; one
  // vdpbf16ps adds both keys' products to 16 columns of a lane.
  template <DType, int Lanes, int Units, class Request>
  static void keys(const char* v, const std::int64_t* at, std::int64_t n, const std::uint32_t* pairs, std::int64_t c0,
                   Vec::Reg (&sum)[Lanes][Units], Request request) {
    const auto* rows = reinterpret_cast<const std::uint16_t*>(v) + c0;
    std::int64_t j = 0;
    for (; j + 1 < n; j += 2) {
      request(j);
      request(j + 1);
      pair<Lanes, Units>(rows + at[j], rows + at[j + 1], pairs + 8 * j, sum);
    }
    if (j < n) {
      request(j);
      pair<Lanes, Units>(rows + at[j], nullptr, pairs + 8 * j, sum);
    }
  }

 private:
  // sum[l][u] += the products of rows a and b (null: zeros) in columns
  // [16 u, 16 u + 16) with lane l's pair of probabilities.
  template <int Lanes, int Units>
  static void pair(const std::uint16_t* a, const std::uint16_t* b, const std::uint32_t* pairs,
                   Vec::Reg (&sum)[Lanes][Units]) {
    const __m512i low = _mm512_load_si512(kPairLow);
    const __m512i high = _mm512_add_epi16(low, _mm512_set1_epi16(16));
    __m512i x[Units];  // 16 columns of (a[c], b[c])
    for (int u = 0; u < Units; u += 2) {
      const bool whole = u + 1 < Units;  // 32 columns, else the last 16
      const __m512i ra = whole ? _mm512_loadu_si512(a + 16 * u) : load16(a + 16 * u);
      const __m512i rb = !b ? _mm512_setzero_si512() : whole ? _mm512_loadu_si512(b + 16 * u) : load16(b + 16 * u);
      x[u] = _mm512_permutex2var_epi16(ra, low, rb);
      if (whole) x[u + 1] = _mm512_permutex2var_epi16(ra, high, rb);
    }
    for (int l = 0; l < Lanes; ++l) {
      const __m512bh pl = (__m512bh)_mm512_set1_epi32(static_cast<int>(pairs[l]));
      for (int u = 0; u < Units; ++u) sum[l][u] = _mm512_dpbf16_ps(sum[l][u], pl, (__m512bh)x[u]);
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
