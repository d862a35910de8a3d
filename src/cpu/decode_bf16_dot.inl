// The decode micro-kernels of bf16 inputs on AVX512_BF16 (vdpbf16ps): the
// layout of decode_kernel.inl with pairs of bf16 per 32-bit lane. Included
// inside namespace flashattn::cpu::avx512_bf16 after decode_kernel.inl.
//
// S: each lane pairs two consecutive head_dim elements of q and k, so one
// vdpbf16ps does 32 of a row's products. O: each lane pairs keys j and j+1
// of one head_dim element, (V[j][c], V[j+1][c]), against the probability
// pair (P[j], P[j+1]) that Bf16DotMath::probabilities rounds to bf16.
// head_dim and head_dim_v are multiples of 16: a last half chunk is read
// with 256-bit loads, never past the row.

template <>
struct DecodeKernel<Bf16DotMath> {
  // As DecodeKernel<F32Math>::scores; q: (Lanes, head_dim) bf16 rows of q_row elements.
  template <DType, int Lanes>
  static void scores(const DecodeTile& t, const std::uint16_t* q, std::int64_t q_row, std::int64_t head_dim,
                     float scale, float* st) {
    constexpr int kKeys = kW / Lanes;
    const auto* k = static_cast<const std::uint16_t*>(t.k);
    for (std::int64_t j0 = 0; j0 < t.n; j0 += kKeys) {
      for (std::int64_t j = j0; j < std::min(j0 + kKeys, t.n); ++j) prefetch_value_row(t, j);
      const std::uint16_t* rows[kKeys];  // past the tile's end: repeat its last key (score set to -inf by the caller)
      for (int r = 0; r < kKeys; ++r) rows[r] = k + t.k_at[j0 + std::min<std::int64_t>(r, t.n - 1 - j0)];
      Vec::Reg acc[kW];
      for (int i = 0; i < kW; ++i) acc[i] = Vec::zero();
      auto step = [&](std::int64_t c, auto load) {
        __m512i kr[kKeys];
        for (int r = 0; r < kKeys; ++r) kr[r] = load(rows[r] + c);
        for (int l = 0; l < Lanes; ++l) {
          const __m512i ql = load(q + l * q_row + c);
          for (int r = 0; r < kKeys; ++r) acc[r * Lanes + l] = dot(acc[r * Lanes + l], ql, kr[r]);
        }
      };
      std::int64_t c = 0;
      for (; c + 32 <= head_dim; c += 32) step(c, load32);
      if (c < head_dim) step(c, load16);
      Vec::store(st + j0 * Lanes, Vec::mul(Vec::transpose_sum(acc), Vec::set1(scale)));
    }
  }

  // As DecodeKernel<F32Math>::values; pt: P as (key pairs, Lanes, 2) bf16.
  template <DType, int Lanes>
  static void values(const DecodeTile& t, const std::uint16_t* pt, const float* alpha, std::int64_t head_dim_v,
                     float* o, std::int64_t o_row) {
    constexpr int kLanes = Lanes < kDecodeLanes ? Lanes : kDecodeLanes;
    const auto* v = static_cast<const std::uint16_t*>(t.v);
    for (int l0 = 0; l0 < Lanes; l0 += kLanes) {
      for (std::int64_t c0 = 0; c0 < head_dim_v; c0 += kDecodeChunks * kW) {
        const std::int64_t chunks = std::min<std::int64_t>(kDecodeChunks, (head_dim_v - c0) / kW);
        with_cols<kDecodeChunks>(static_cast<int>(chunks), [&]<int Chunks>() {
          Vec::Reg acc[kLanes][Chunks];
          for (int l = 0; l < kLanes; ++l)
            for (int c = 0; c < Chunks; ++c) acc[l][c] = Vec::zero();
          auto add_pair = [&](std::int64_t j, const std::uint16_t* a, const std::uint16_t* b) {
            __m512i pairs[Chunks];
            key_pairs<Chunks>(a, b, pairs);
            for (int l = 0; l < kLanes; ++l) {
              std::int32_t p;
              std::memcpy(&p, pt + j * Lanes + 2 * (l0 + l), sizeof p);
              const __m512i pp = _mm512_set1_epi32(p);
              for (int c = 0; c < Chunks; ++c) acc[l][c] = dot(acc[l][c], pp, pairs[c]);
            }
          };
          const bool prefetch = l0 == 0 && c0 == 0;
          std::int64_t j = 0;
          for (; j + 1 < t.n; j += 2) {
            if (prefetch) prefetch_next_key_row(t, j), prefetch_next_key_row(t, j + 1);
            add_pair(j, v + t.v_at[j] + c0, v + t.v_at[j + 1] + c0);
          }
          if (prefetch && j < t.n) prefetch_next_key_row(t, j);
          if (j < t.n) add_pair(j, v + t.v_at[j] + c0, nullptr);
          merge_decode_block<kLanes, Chunks>(acc, alpha + l0, o + l0 * o_row + c0, o_row);
        });
      }
    }
  }

  static Vec::Reg dot(Vec::Reg acc, __m512i a, __m512i b) { return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b); }
  static __m512i load32(const std::uint16_t* p) { return _mm512_loadu_si512(p); }
  static __m512i load16(const std::uint16_t* p) {
    return _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }

  // Chunks vectors of 16 (a[c], b[c]) pairs: elements [16 u, 16 u + 16) of
  // rows a and b (b null: zeros) in pairs[u].
  template <int Chunks>
  static void key_pairs(const std::uint16_t* a, const std::uint16_t* b, __m512i (&pairs)[Chunks]) {
    const __m512i low = _mm512_load_si512(kPairLow);
    const __m512i high = _mm512_add_epi16(low, _mm512_set1_epi16(16));
    for (int u = 0; u < Chunks; u += 2) {
      if (u + 1 < Chunks) {
        const __m512i x = load32(a + 16 * u), y = b ? load32(b + 16 * u) : _mm512_setzero_si512();
        pairs[u] = _mm512_permutex2var_epi16(x, low, y);
        pairs[u + 1] = _mm512_permutex2var_epi16(x, high, y);
      } else {
        const __m512i x = load16(a + 16 * u), y = b ? load16(b + 16 * u) : _mm512_setzero_si512();
        pairs[u] = _mm512_permutex2var_epi16(x, low, y);
      }
    }
  }
};
