// Vector layer of the AVX-512 (F, BW, DQ, VL) path: 16 floats.
// Included inside namespace flashattn::cpu::avx512 (and ::avx512_bf16),
// within its target region.

struct Vec {
  using Reg = __m512;
  static constexpr int kWidth = 16;
  // Micro-kernel blocking: 8 rows x 3 vectors = 24 accumulators of 32 zmm;
  // the broadcast operand folds into the FMA ({1to16}).
  static constexpr int kRows = 8;
  static constexpr int kMaxCols = 3;
  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg set1(float x) { return _mm512_set1_ps(x); }
  static Reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Reg x) { _mm512_storeu_ps(p, x); }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  static Reg max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
  static Reg abs(Reg a) { return _mm512_abs_ps(a); }
  static Reg div(Reg a, Reg b) { return _mm512_div_ps(a, b); }
  // s - a * b with one rounding.
  static Reg sub_product(Reg s, Reg a, Reg b) { return _mm512_fnmadd_ps(a, b, s); }
  // x, with -inf replaced by 0 (a row maximum that is safe to subtract).
  static Reg neg_inf_to_zero(Reg x) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, set1(-INFINITY), _CMP_EQ_OQ), x, zero());
  }
  // s where begin[lane] <= j < end[lane], else -inf.
  static Reg keep_range(Reg s, const std::int32_t* begin, const std::int32_t* end, std::int32_t j) {
    const __m512i jv = _mm512_set1_epi32(j);
    const __mmask16 keep = _mm512_cmple_epi32_mask(_mm512_loadu_si512(begin), jv) &
                           _mm512_cmpgt_epi32_mask(_mm512_loadu_si512(end), jv);
    return _mm512_mask_blend_ps(keep, set1(-INFINITY), s);
  }
  // 32-bit integer lanes, for the dropout RNG (vec_philox.inl).
  using IReg = __m512i;
  static IReg iset1(std::uint32_t x) { return _mm512_set1_epi32(static_cast<int>(x)); }
  static IReg iload(const std::uint32_t* p) { return _mm512_loadu_si512(p); }
  static IReg ixor(IReg a, IReg b) { return _mm512_xor_si512(a, b); }
  // hi:lo = x * m (32 x 32 -> 64 bits per lane).
  static void mulhilo(IReg x, std::uint32_t m, IReg& hi, IReg& lo) {
    const IReg mv = iset1(m);
    lo = _mm512_mullo_epi32(x, mv);
    const IReg even = _mm512_mul_epu32(x, mv), odd = _mm512_mul_epu32(_mm512_srli_epi64(x, 32), mv);
    hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  }
  // 1 where word >= drop_below (kept), 0 where dropped.
  static Reg kept_weight(IReg word, std::uint32_t drop_below) {
    return _mm512_maskz_mov_ps(_mm512_cmpge_epu32_mask(word, iset1(drop_below)), set1(1.0f));
  }
  static Reg select_small(Reg x, Reg limit, Reg small, Reg big) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, limit, _CMP_LE_OQ), big, small);
  }
  static Reg copysign(Reg magnitude, Reg sign) {
    const __m512i bit = _mm512_set1_epi32(0x80000000);
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(sign), _mm512_castps_si512(magnitude),
                                                         bit, 0xe4));  // bit ? sign : magnitude
  }
  static float reduce_max(Reg x) { return _mm512_reduce_max_ps(x); }
  // Lane i = x[i ^ dist], dist a power of two below kWidth.
  static Reg swap_lanes(Reg x, int dist) {
    switch (dist) {
      case 8: return _mm512_shuffle_f32x4(x, x, 0x4E);
      case 4: return _mm512_shuffle_f32x4(x, x, 0xB1);
      case 2: return _mm512_permute_ps(x, 0x4E);
      default: return _mm512_permute_ps(x, 0xB1);
    }
  }
  // Lanes [0, count) of x, the others -inf.
  static Reg keep_first(Reg x, int count) {
    const __mmask16 keep = count >= kWidth ? 0xFFFF : static_cast<__mmask16>((1u << std::max(count, 0)) - 1);
    return _mm512_mask_blend_ps(keep, set1(-INFINITY), x);
  }
  static float reduce_add(Reg x) { return _mm512_reduce_add_ps(x); }
  // Lane i = the sum of v[i]'s lanes: 16 horizontal sums in 45 shuffles and
  // adds (pairs, then 64-bit halves, then 128-bit blocks twice).
  static Reg transpose_sum(const Reg (&v)[kWidth]) {
    Reg a[8], b[4], c[2];
    for (int i = 0; i < 8; ++i) a[i] = add(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 4; ++i) {
      const __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
      b[i] = add(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    for (int i = 0; i < 2; ++i)
      c[i] = add(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88), _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
    return add(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
  }
  // 16 bf16 / f16 values as floats (exact).
  static Reg load_bf16(const std::uint16_t* p) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
  static Reg load_f16(const std::uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  // exp(x) with ~1 ulp error (Cephes expf polynomial, scalef for 2^n);
  // exactly 0 below -87 and for -inf.
  static Reg exp(Reg x) {
    const __mmask16 below = _mm512_cmp_ps_mask(x, set1(-87.0f), _CMP_LT_OQ);
    const Reg xc = _mm512_min_ps(_mm512_max_ps(x, set1(-87.0f)), set1(88.0f));
    const Reg n = _mm512_roundscale_ps(_mm512_mul_ps(xc, set1(1.44269504088896341f)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    Reg r = _mm512_fnmadd_ps(n, set1(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    Reg poly = set1(1.9875691500e-4f);
    poly = fmadd(poly, r, set1(1.3981999507e-3f));
    poly = fmadd(poly, r, set1(8.3334519073e-3f));
    poly = fmadd(poly, r, set1(4.1665795894e-2f));
    poly = fmadd(poly, r, set1(1.6666665459e-1f));
    poly = fmadd(poly, r, set1(5.0000001201e-1f));
    poly = fmadd(_mm512_mul_ps(poly, r), r, _mm512_add_ps(r, set1(1.0f)));
    return _mm512_maskz_scalef_ps(static_cast<__mmask16>(~below), poly, n);
  }
};

inline void convert_to_f32(const void* src, DType dtype, std::int64_t n, float* dst) {
  const auto* half = static_cast<const std::uint16_t*>(src);
  std::int64_t c = 0;
  switch (dtype) {
    case DType::f32: std::memcpy(dst, src, n * sizeof(float)); return;
    case DType::bf16:
      for (; c + 16 <= n; c += 16) {
        const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(half + c)));
        _mm512_storeu_ps(dst + c, _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
      }
      for (; c < n; ++c) dst[c] = to_float(bfloat16{half[c]});
      return;
    default:
      for (; c + 16 <= n; c += 16) {
        _mm512_storeu_ps(dst + c, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(half + c))));
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
  switch (dtype) {
    case DType::f32: std::memcpy(dst, src, n * sizeof(float)); return;
    case DType::bf16:
      for (; c + 16 <= n; c += 16) {
        const __m512 x = _mm512_loadu_ps(src + c);
        const __m512i u = _mm512_castps_si512(x);
        const __m512i high = _mm512_srli_epi32(u, 16);
        const __m512i odd = _mm512_and_si512(high, _mm512_set1_epi32(1));
        __m512i bits = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
        bits = _mm512_mask_or_epi32(bits, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), high, _mm512_set1_epi32(0x40));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(half + c), _mm512_cvtepi32_epi16(bits));
      }
      for (; c < n; ++c) half[c] = to_bfloat16(src[c]).bits;
      return;
    default:
      for (; c + 16 <= n; c += 16) {
        const __m512 x = _mm512_loadu_ps(src + c);
        const __m512i sign = _mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(x), 16), _mm512_set1_epi32(0x8000));
        const __m256i quiet = _mm512_cvtepi32_epi16(_mm512_or_si512(sign, _mm512_set1_epi32(0x7e00)));
        const __m256i h = _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(half + c), _mm256_mask_mov_epi16(h, nan, quiet));
      }
      for (; c < n; ++c) half[c] = to_float16(src[c]).bits;
      return;
  }
}
