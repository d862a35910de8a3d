// Vector layer of the AVX2 + FMA + F16C path: 8 floats.
// Included inside namespace flashattn::cpu::avx2, within its target region.

struct Vec {
  using Reg = __m256;
  static constexpr int kWidth = 8;
  // Micro-kernel blocking: 4 rows x 3 vectors = 12 accumulators, 3 B
  // vectors and one broadcast register: all 16 ymm.
  static constexpr int kRows = 4;
  static constexpr int kMaxCols = 3;
  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg set1(float x) { return _mm256_set1_ps(x); }
  static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Reg x) { _mm256_storeu_ps(p, x); }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  static Reg max(Reg a, Reg b) { return _mm256_max_ps(a, b); }
  static Reg abs(Reg a) { return _mm256_andnot_ps(set1(-0.0f), a); }
  static Reg div(Reg a, Reg b) { return _mm256_div_ps(a, b); }
  static Reg sub_product(Reg s, Reg a, Reg b) { return _mm256_fnmadd_ps(a, b, s); }
  static Reg neg_inf_to_zero(Reg x) { return _mm256_andnot_ps(_mm256_cmp_ps(x, set1(-INFINITY), _CMP_EQ_OQ), x); }
  static Reg keep_range(Reg s, const std::int32_t* begin, const std::int32_t* end, std::int32_t j) {
    const __m256i jv = _mm256_set1_epi32(j);
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(begin));
    const __m256i e = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(end));
    const __m256i keep = _mm256_andnot_si256(_mm256_cmpgt_epi32(b, jv), _mm256_cmpgt_epi32(e, jv));
    return _mm256_blendv_ps(set1(-INFINITY), s, _mm256_castsi256_ps(keep));
  }
  using IReg = __m256i;
  static IReg iset1(std::uint32_t x) { return _mm256_set1_epi32(static_cast<int>(x)); }
  static IReg iload(const std::uint32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static IReg ixor(IReg a, IReg b) { return _mm256_xor_si256(a, b); }
  static void mulhilo(IReg x, std::uint32_t m, IReg& hi, IReg& lo) {
    const IReg mv = iset1(m);
    lo = _mm256_mullo_epi32(x, mv);
    const IReg even = _mm256_mul_epu32(x, mv), odd = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), mv);
    hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  }
  static Reg kept_weight(IReg word, std::uint32_t drop_below) {
    // Unsigned word < drop_below via signed compare of both sides flipped at the sign bit.
    const IReg flip = iset1(0x80000000u);
    const IReg dropped = _mm256_cmpgt_epi32(ixor(iset1(drop_below), flip), ixor(word, flip));
    return _mm256_andnot_ps(_mm256_castsi256_ps(dropped), set1(1.0f));
  }
  static Reg select_small(Reg x, Reg limit, Reg small, Reg big) {
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(x, limit, _CMP_LE_OQ));
  }
  static Reg copysign(Reg magnitude, Reg sign) {
    const Reg bit = set1(-0.0f);
    return _mm256_or_ps(_mm256_and_ps(bit, sign), _mm256_andnot_ps(bit, magnitude));
  }
  // Lane i = x[i ^ dist], dist a power of two below kWidth.
  static Reg swap_lanes(Reg x, int dist) {
    switch (dist) {
      case 4: return _mm256_permute2f128_ps(x, x, 1);
      case 2: return _mm256_permute_ps(x, 0x4E);
      default: return _mm256_permute_ps(x, 0xB1);
    }
  }
  // Lanes [0, count) of x, the others -inf.
  static Reg keep_first(Reg x, int count) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const Reg keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(count), lane));
    return _mm256_blendv_ps(set1(-INFINITY), x, keep);
  }
  static float reduce_max(Reg x) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
  }
  static float reduce_add(Reg x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // Lane i = the sum of v[i]'s lanes (pairs, 64-bit halves, then 128-bit halves).
  static Reg transpose_sum(const Reg (&v)[kWidth]) {
    Reg a[4], b[2];
    for (int i = 0; i < 4; ++i) a[i] = add(_mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 2; ++i) {
      const __m256d x = _mm256_castps_pd(a[2 * i]), y = _mm256_castps_pd(a[2 * i + 1]);
      b[i] = add(_mm256_castpd_ps(_mm256_unpacklo_pd(x, y)), _mm256_castpd_ps(_mm256_unpackhi_pd(x, y)));
    }
    return add(_mm256_permute2f128_ps(b[0], b[1], 0x20), _mm256_permute2f128_ps(b[0], b[1], 0x31));
  }
  // 8 bf16 / f16 values as floats (exact).
  static Reg load_bf16(const std::uint16_t* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static Reg load_f16(const std::uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  // exp(x) with ~1 ulp error (Cephes expf polynomial); exactly 0 below -87 and for -inf.
  static Reg exp(Reg x) {
    const Reg below = _mm256_cmp_ps(x, set1(-87.0f), _CMP_LT_OQ);
    const Reg xc = _mm256_min_ps(_mm256_max_ps(x, set1(-87.0f)), set1(88.0f));
    const Reg n = _mm256_round_ps(_mm256_mul_ps(xc, set1(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    Reg r = _mm256_fnmadd_ps(n, set1(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    Reg poly = set1(1.9875691500e-4f);
    poly = fmadd(poly, r, set1(1.3981999507e-3f));
    poly = fmadd(poly, r, set1(8.3334519073e-3f));
    poly = fmadd(poly, r, set1(4.1665795894e-2f));
    poly = fmadd(poly, r, set1(1.6666665459e-1f));
    poly = fmadd(poly, r, set1(5.0000001201e-1f));
    poly = fmadd(_mm256_mul_ps(poly, r), r, _mm256_add_ps(r, set1(1.0f)));
    const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    const Reg pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23));
    return _mm256_andnot_ps(below, _mm256_mul_ps(poly, pow2n));
  }
};

inline void convert_to_f32(const void* src, DType dtype, std::int64_t n, float* dst) {
  const auto* half = static_cast<const std::uint16_t*>(src);
  std::int64_t c = 0;
  switch (dtype) {
    case DType::f32: std::memcpy(dst, src, n * sizeof(float)); return;
    case DType::bf16:
      for (; c + 8 <= n; c += 8) {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(half + c)));
        _mm256_storeu_ps(dst + c, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
      }
      for (; c < n; ++c) dst[c] = to_float(bfloat16{half[c]});
      return;
    default:
      for (; c + 8 <= n; c += 8) {
        _mm256_storeu_ps(dst + c, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(half + c))));
      }
      for (; c < n; ++c) dst[c] = to_float(float16{half[c]});
      return;
  }
}

// n fp32 values stored as dtype, bit-identical to dtype.hpp's to_bfloat16 /
// to_float16: round to nearest even, NaN -> the same quiet NaN.
inline void store_row(const float* src, std::int64_t n, DType dtype, void* dst) {
  auto* half = static_cast<std::uint16_t*>(dst);
  std::int64_t c = 0;
  auto narrow = [](__m256i x) {  // eight 32-bit values < 2^16 -> eight uint16
    return _mm_packus_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
  };
  switch (dtype) {
    case DType::f32: std::memcpy(dst, src, n * sizeof(float)); return;
    case DType::bf16:
      for (; c + 8 <= n; c += 8) {
        const __m256 x = _mm256_loadu_ps(src + c);
        const __m256i u = _mm256_castps_si256(x);
        const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
        const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
        const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(half + c), narrow(_mm256_blendv_epi8(rounded, quiet, nan)));
      }
      for (; c < n; ++c) half[c] = to_bfloat16(src[c]).bits;
      return;
    default:
      for (; c + 8 <= n; c += 8) {
        const __m256 x = _mm256_loadu_ps(src + c);
        const __m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(x), 16), _mm256_set1_epi32(0x8000));
        const __m128i quiet = narrow(_mm256_or_si256(sign, _mm256_set1_epi32(0x7e00)));
        const __m256i nan32 = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
        const __m128i nan = _mm_packs_epi32(_mm256_castsi256_si128(nan32), _mm256_extracti128_si256(nan32, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(half + c), _mm_blendv_epi8(h, quiet, nan));
      }
      for (; c < n; ++c) half[c] = to_float16(src[c]).bits;
      return;
  }
}
