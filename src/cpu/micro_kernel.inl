// The register-blocked micro-kernel of both products of the forward, and the
// fp32 math policy. Included inside namespace flashattn::cpu::<isa> after
// struct Vec.
//
// Layout ("lane-major"): query rows live in vector lanes. Both products are
//   S^T (keys x lanes)  = K  . Q^T      A = K rows,     B = packed Q^T
//   O^T (dv x lanes)   += V^T . P^T     A = V rows,     B = P^T
// so the online softmax runs down the columns (no horizontal reductions),
// K and V are read row by row as broadcast scalars (packing them is a copy
// or a conversion, never a transpose), and only Q is transposed, once.
//
// A Math policy says what one 32-bit lane holds: F32Math one float (FMA),
// Bf16DotMath (bf16_dot_math.inl) a pair of bf16 along the depth (vdpbf16ps).

struct F32Math {
  using Elem = float;
  static constexpr int kPack = 1;  // depth elements per 32-bit lane
  static Vec::Reg broadcast(const Elem* a) { return Vec::set1(*a); }
  static Vec::Reg load(const Elem* b) { return Vec::load(b); }
  static Vec::Reg madd(Vec::Reg acc, Vec::Reg a, Vec::Reg b) { return Vec::fmadd(a, b, acc); }

  // A row of n q or k values as fp32 (f16/bf16 converted), zero-padded to n_pad.
  static void load_row(const void* src, DType dtype, std::int64_t n, std::int64_t n_pad, Elem* dst) {
    convert_to_f32(src, dtype, n, dst);
    for (std::int64_t c = n; c < n_pad; ++c) dst[c] = 0.0f;
  }
  // V tile as (n_pad, dv_pad); row_at(j) is the address of key j's values.
  template <class RowAt>
  static void pack_values(RowAt row_at, DType dtype, std::int64_t n, std::int64_t n_pad, std::int64_t dv,
                          std::int64_t dv_pad, Elem* vp) {
    for (std::int64_t j = 0; j < n; ++j) load_row(row_at(j), dtype, dv, dv_pad, vp + j * dv_pad);
    std::memset(vp + n * dv_pad, 0, (n_pad - n) * dv_pad * sizeof(Elem));
  }
  // P^T is used in place.
  static const Elem* probabilities(const float* st, std::int64_t, std::int64_t, Elem*) { return st; }
};

// acc[r][v] = sum over `steps` depth steps s of
//   broadcast(a[r * a_row + s * a_step]) * load(b[s * b_step + v * kWidth * kPack]).
template <class Math, int Rows, int Cols>
inline void tile_product(std::int64_t steps, const typename Math::Elem* a, std::int64_t a_row, std::int64_t a_step,
                         const typename Math::Elem* b, std::int64_t b_step, Vec::Reg (&acc)[Rows][Cols]) {
  for (int r = 0; r < Rows; ++r)
    for (int v = 0; v < Cols; ++v) acc[r][v] = Vec::zero();
  const typename Math::Elem* rows[Rows];
  for (int r = 0; r < Rows; ++r) rows[r] = a + r * a_row;
  for (std::int64_t s = 0; s < steps; ++s) {
    Vec::Reg bv[Cols];
    for (int v = 0; v < Cols; ++v) bv[v] = Math::load(b + v * Vec::kWidth * Math::kPack);
    for (int r = 0; r < Rows; ++r) {
      const Vec::Reg av = Math::broadcast(rows[r] + s * a_step);
      for (int v = 0; v < Cols; ++v) acc[r][v] = Math::madd(acc[r][v], av, bv[v]);
    }
    b += b_step;
  }
}

// S^T (key_rows x Cols vectors) = K Q^T for one lane block, and every
// product of that shape (the backward's dP^T = V dO^T). k: key rows of
// k_row elements; qt: the block's queries as (depth_steps, lanes, kPack) with
// lane stride ld_q; st: row stride ld_s.
// Every product is multiplied by `scale` as it is stored (one rounding after
// the dot product, like the naive algorithm's scale * (q.k)).
template <class Math, int Cols>
inline void score_product(std::int64_t key_rows, std::int64_t depth_steps, const typename Math::Elem* k,
                          std::int64_t k_row, const typename Math::Elem* qt, std::int64_t ld_q, float* st,
                          std::int64_t ld_s, float scale = 1.0f) {
  constexpr int R = Vec::kRows;
  const Vec::Reg factor = Vec::set1(scale);
  for (std::int64_t j = 0; j < key_rows; j += R) {
    Vec::Reg acc[R][Cols];
    tile_product<Math, R, Cols>(depth_steps, k + j * k_row, k_row, Math::kPack, qt, ld_q * Math::kPack, acc);
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < Cols; ++v) Vec::store(st + (j + r) * ld_s + v * Vec::kWidth, Vec::mul(acc[r][v], factor));
  }
}

// O^T (rows x Cols vectors, row stride Cols * kWidth) = alpha * O^T + V^T P^T
// for one lane block: the tile's sum is formed on its own, then merged
// (blocked summation); alpha = 1 accumulates (the backward's dQ^T += K^T dS^T).
// v: (key_steps, v_row, kPack), rows taken from its first `rows` columns;
// pt: (key_steps, lanes, kPack) with lane stride ld_p; alpha: per lane.
template <class Math, int Cols>
inline void output_product(std::int64_t rows, std::int64_t key_steps, const typename Math::Elem* v,
                           std::int64_t v_row, const typename Math::Elem* pt, std::int64_t ld_p, const float* alpha,
                           float* ot) {
  constexpr int R = Vec::kRows, ld = Cols * Vec::kWidth;
  Vec::Reg a[Cols];
  for (int c = 0; c < Cols; ++c) a[c] = Vec::load(alpha + c * Vec::kWidth);
  for (std::int64_t d = 0; d < rows; d += R) {
    Vec::Reg acc[R][Cols];
    tile_product<Math, R, Cols>(key_steps, v + d * Math::kPack, Math::kPack, v_row * Math::kPack, pt,
                                ld_p * Math::kPack, acc);
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < Cols; ++c) {
        float* o = ot + (d + r) * ld + c * Vec::kWidth;
        Vec::store(o, Vec::fmadd(a[c], Vec::load(o), acc[r][c]));
      }
  }
}

// C (rows x Cols vectors, row stride ldc) += A B with A read as
// broadcast(a[r * a_row + s]) and B as vectors b[s * b_step ...]: the
// backward's dV += P dO and dK += dS Q over the lanes of a chunk.
template <class Math, int Cols>
inline void add_product(std::int64_t rows, std::int64_t depth, const typename Math::Elem* a, std::int64_t a_row,
                        const typename Math::Elem* b, std::int64_t b_step, float* c, std::int64_t ldc) {
  constexpr int R = Vec::kRows;
  for (std::int64_t j = 0; j < rows; j += R) {
    Vec::Reg acc[R][Cols];
    tile_product<Math, R, Cols>(depth, a + j * a_row, a_row, Math::kPack, b, b_step, acc);
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < Cols; ++v) {
        float* out = c + (j + r) * ldc + v * Vec::kWidth;
        Vec::store(out, Vec::add(Vec::load(out), acc[r][v]));
      }
  }
}

// Calls f.template operator()<Cols>() for a runtime cols in [1, the first
// template argument] (default: the micro-kernel's kMaxCols vectors).
template <int Cols = Vec::kMaxCols, class F>
inline void with_cols(int cols, F&& f) {
  if constexpr (Cols > 1) {
    if (cols < Cols) return with_cols<Cols - 1>(cols, f);
  }
  f.template operator()<Cols>();
}
