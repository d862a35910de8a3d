// The decode score partials of bf16 inputs on AVX512_BF16 (vdpbf16ps):
// each lane pairs two consecutive head_dim elements of q and k, so one
// vdpbf16ps does 32 of a row's products. Included inside namespace
// flashattn::cpu::avx512_bf16 after decode_kernel.inl. head_dim is a
// multiple of 16: a last half chunk is read with a 256-bit load, never
// past the row. (The values product converts V to float: see DecodeKernel.)

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
  static __m512i load16(const std::uint16_t* p) {
    return _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
};
