// Vector layer of the scalar path: a "vector" of one float.
// Included inside namespace flashattn::cpu::scalar.

struct Vec {
  using Reg = float;
  static constexpr int kWidth = 1;
  static Reg zero() { return 0.0f; }
  static Reg set1(float x) { return x; }
  static Reg load(const float* p) { return *p; }
  static void store(float* p, Reg x) { *p = x; }
  static Reg fmadd(Reg a, Reg b, Reg c) { return a * b + c; }
  static Reg mul(Reg a, Reg b) { return a * b; }
  static Reg add(Reg a, Reg b) { return a + b; }
  static Reg max(Reg a, Reg b) { return a > b ? a : b; }
  static float reduce_max(Reg x) { return x; }
  static float reduce_add(Reg x) { return x; }
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
