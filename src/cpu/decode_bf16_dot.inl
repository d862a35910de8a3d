// The decode score partials of bf16 inputs on AVX512_BF16 (vdpbf16ps):
// each lane pairs two consecutive head_dim elements of q and k, so one
// vdpbf16ps does 32 of a row's products. Included inside namespace
// flashattn::cpu::avx512_bf16 after decode_kernel.inl. head_dim is a
// multiple of 16: a last half chunk is read with a 256-bit load, never
// past the row. (The values product converts V to float: see DecodeKernel.)

template <>
struct DecodePartials<Bf16DotMath> {
  // As DecodePartials<F32Math>::head; q: (Lanes, head_dim) bf16 rows of q_row elements.
  template <DType, int Lanes>
  static void head(const char* k, std::int64_t at, const std::uint16_t* q, std::int64_t q_row, std::int64_t head_dim,
                   Vec::Reg (&acc)[Lanes]) {
    const std::uint16_t* row = reinterpret_cast<const std::uint16_t*>(k) + at;
    for (int l = 0; l < Lanes; ++l) acc[l] = Vec::zero();
    auto step = [&](std::int64_t c, auto load) {
      const __m512i kc = load(row + c);
      for (int l = 0; l < Lanes; ++l)
        acc[l] = _mm512_dpbf16_ps(acc[l], (__m512bh)load(q + l * q_row + c), (__m512bh)kc);
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
