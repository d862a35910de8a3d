// Math policy of bf16 inputs on AVX512_BF16: each 32-bit lane holds a pair
// of bf16 along the depth and vdpbf16ps accumulates both products into
// fp32. Included inside namespace flashattn::cpu::avx512_bf16 after the
// AVX-512 vector layer; see micro_kernel.inl for the layouts.
//
// Only what the dot product needs is rounded to bf16: Q, K and V are bf16
// already, the probabilities P are rounded to bf16 for P V (as flash-attn
// does on GPUs); scores, softmax statistics and O stay fp32.
// vdpbf16ps treats bf16 denormals as zero (its inputs here are bf16 tensors
// and probabilities, where that is below the oracle's floor).

// _mm512_permutex2var_epi16(x, kPairLow, y) interleaves the low halves of
// two rows of 32 bf16: element 2c is x[c], element 2c+1 is y[c] (c < 16);
// kPairLow + 16 does the upper halves.
// _mm512_permutexvar_epi16(kInterleave, x) pairs the halves of x: element
// 2c is x[c], element 2c + 1 is x[16 + c].
alignas(64) constexpr std::uint16_t kInterleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                       8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

alignas(64) constexpr std::uint16_t kPairLow[32] = {0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
                                                    8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};

struct Bf16DotMath {
  using Elem = std::uint16_t;  // bf16 bits
  static constexpr int kPack = 2;

  static Vec::Reg broadcast(const Elem* a) {
    std::int32_t pair;
    std::memcpy(&pair, a, sizeof pair);
    return _mm512_castsi512_ps(_mm512_set1_epi32(pair));
  }
  static Vec::Reg load(const Elem* b) { return _mm512_castsi512_ps(_mm512_loadu_si512(b)); }
  static Vec::Reg madd(Vec::Reg acc, Vec::Reg a, Vec::Reg b) {
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_castps_si512(a), (__m512bh)_mm512_castps_si512(b));
  }

  // A row of n bf16 (q or k), zero-padded to n_pad elements.
  static void load_row(const void* src, DType, std::int64_t n, std::int64_t n_pad, Elem* dst) {
    std::memcpy(dst, src, n * sizeof(Elem));
    for (std::int64_t c = n; c < n_pad; ++c) dst[c] = 0;
  }

  // V tile as (n_pad / 2, dv_pad, 2): the pair (V[2t][c], V[2t+1][c]) per lane.
  template <class RowAt>
  static void pack_values(RowAt row_at, DType, std::int64_t n, std::int64_t n_pad, std::int64_t dv, std::int64_t dv_pad,
                          Elem* vp) {
    const __m512i low = _mm512_load_si512(kPairLow);
    const __m512i high = _mm512_add_epi16(low, _mm512_set1_epi16(16));
    for (std::int64_t j = 0; j < n_pad; j += 2) {
      const auto* a = j < n ? static_cast<const Elem*>(row_at(j)) : nullptr;
      const auto* b = j + 1 < n ? static_cast<const Elem*>(row_at(j + 1)) : nullptr;
      Elem* dst = vp + j * dv_pad;
      for (std::int64_t c = 0; c < dv_pad; c += 32) {
        const __mmask32 valid = c < dv ? static_cast<__mmask32>(dv - c >= 32 ? ~0u : (1u << (dv - c)) - 1) : 0;
        const __m512i ra = a ? _mm512_maskz_loadu_epi16(valid, a + c) : _mm512_setzero_si512();
        const __m512i rb = b ? _mm512_maskz_loadu_epi16(valid, b + c) : _mm512_setzero_si512();
        const std::int64_t left = 2 * (dv_pad - c);  // elements of dst still to write
        const __mmask32 first = static_cast<__mmask32>(left >= 32 ? ~0u : (1u << left) - 1);
        _mm512_mask_storeu_epi16(dst + 2 * c, first, _mm512_permutex2var_epi16(ra, low, rb));
        if (left > 32) {
          const __mmask32 second = static_cast<__mmask32>(left - 32 >= 32 ? ~0u : (1u << (left - 32)) - 1);
          _mm512_mask_storeu_epi16(dst + 2 * c + 32, second, _mm512_permutex2var_epi16(ra, high, rb));
        }
      }
    }
  }

  // P^T (key_rows x lanes, fp32, row stride lanes) -> (key_rows / 2, lanes, 2) bf16.
  static const Elem* probabilities(const float* st, std::int64_t key_rows, std::int64_t lanes, Elem* pt) {
    const __m512i order = _mm512_load_si512(kInterleave);
    for (std::int64_t j = 0; j < key_rows; j += 2)
      for (std::int64_t l = 0; l < lanes; l += 16) {
        // Low half: row j, high half: row j + 1; then interleave into pairs.
        const __m512bh both =
            _mm512_cvtne2ps_pbh(_mm512_loadu_ps(st + (j + 1) * lanes + l), _mm512_loadu_ps(st + j * lanes + l));
        _mm512_storeu_si512(pt + j * lanes + 2 * l, _mm512_permutexvar_epi16(order, (__m512i)both));
      }
    return pt;
  }
};
