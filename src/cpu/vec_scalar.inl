// Vector layer of the scalar path: a "vector" of one float.
// Included inside namespace flashattn::cpu::scalar.

struct Vec {
  using Reg = float;
  static constexpr int kWidth = 1;
  static constexpr int kRows = 4;
  static constexpr int kMaxCols = 4;
  static Reg zero() { return 0.0f; }
  static Reg set1(float x) { return x; }
  static Reg load(const float* p) { return *p; }
  static void store(float* p, Reg x) { *p = x; }
  static Reg fmadd(Reg a, Reg b, Reg c) { return a * b + c; }
  static Reg mul(Reg a, Reg b) { return a * b; }
  static Reg add(Reg a, Reg b) { return a + b; }
  static Reg sub(Reg a, Reg b) { return a - b; }
  static Reg max(Reg a, Reg b) { return a > b ? a : b; }
  static Reg abs(Reg a) { return std::fabs(a); }
  static Reg div(Reg a, Reg b) { return a / b; }
  // One rounding without an FMA instruction: the product is exact in double.
  static Reg sub_product(Reg s, Reg a, Reg b) {
    return static_cast<float>(static_cast<double>(s) - static_cast<double>(a) * static_cast<double>(b));
  }
  using IReg = std::uint32_t;
  static IReg iset1(std::uint32_t x) { return x; }
  static IReg iload(const std::uint32_t* p) { return *p; }
  static IReg ixor(IReg a, IReg b) { return a ^ b; }
  static void mulhilo(IReg x, std::uint32_t m, IReg& hi, IReg& lo) {
    const std::uint64_t product = static_cast<std::uint64_t>(x) * m;
    hi = static_cast<std::uint32_t>(product >> 32);
    lo = static_cast<std::uint32_t>(product);
  }
  static Reg kept_weight(IReg word, std::uint32_t drop_below) { return word < drop_below ? 0.0f : 1.0f; }
  static Reg neg_inf_to_zero(Reg x) { return x == -INFINITY ? 0.0f : x; }
  static Reg keep_range(Reg s, const std::int32_t* begin, const std::int32_t* end, std::int32_t j) {
    return (*begin <= j && j < *end) ? s : -INFINITY;
  }
  static float reduce_max(Reg x) { return x; }
  static Reg swap_lanes(Reg x, int) { return x; }  // never called: one lane, no dist below kWidth
  static Reg keep_first(Reg x, int count) { return count > 0 ? x : -INFINITY; }
  static float reduce_add(Reg x) { return x; }
  static Reg transpose_sum(const Reg (&v)[kWidth]) { return v[0]; }
  static Reg load_bf16(const std::uint16_t* p) { return to_float(bfloat16{*p}); }
  static Reg load_f16(const std::uint16_t* p) { return to_float(float16{*p}); }
  static Reg exp(Reg x) { return std::exp(x); }
};

inline void convert_to_f32(const void* src, DType dtype, std::int64_t n, float* dst) {
  switch (dtype) {
    case DType::f32: std::memcpy(dst, src, n * sizeof(float)); break;
    case DType::bf16:
      for (std::int64_t c = 0; c < n; ++c) dst[c] = to_float(static_cast<const bfloat16*>(src)[c]);
      break;
    default:
      for (std::int64_t c = 0; c < n; ++c) dst[c] = to_float(static_cast<const float16*>(src)[c]);
      break;
  }
}

// n fp32 values stored as dtype, rounded to nearest even (dtype.hpp's rules).
inline void store_row(const float* src, std::int64_t n, DType dtype, void* dst) {
  switch (dtype) {
    case DType::f32: std::memcpy(dst, src, n * sizeof(float)); break;
    case DType::bf16:
      for (std::int64_t c = 0; c < n; ++c) static_cast<bfloat16*>(dst)[c] = to_bfloat16(src[c]);
      break;
    default:
      for (std::int64_t c = 0; c < n; ++c) static_cast<float16*>(dst)[c] = to_float16(src[c]);
      break;
  }
}
