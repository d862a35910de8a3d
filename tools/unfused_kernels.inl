// The vector loops of the unfused baseline (unfused_baseline.cpp): a GEMM
// micro-kernel, a masked row softmax and its backward, written as plain
// loops that the compiler vectorises. Included once per ISA, inside that ISA's target region
// and an anonymous namespace, after defining
//   FLASHATTN_UNFUSED_ROWS  rows of A per micro-tile
//   FLASHATTN_UNFUSED_COLS  columns per micro-tile (= the packed panel width)
//   FLASHATTN_UNFUSED_FMA   1 when the region has FMA (else mul + add)

constexpr int kTileRows = FLASHATTN_UNFUSED_ROWS;
constexpr int kTileCols = FLASHATTN_UNFUSED_COLS;

// a * b + c; one rounding where the ISA has FMA.
inline float madd(float a, float b, float c) {
#if FLASHATTN_UNFUSED_FMA
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

// tile (Rows, kTileCols) = a (Rows, depth) . panel (depth, kTileCols); a's
// element (r, p) is a[r * row_stride + p * depth_stride] (depth_stride 1, or
// 1 across rows for a transposed a). The accumulators stay in registers:
// every loop bound is a constant.
template <int Rows>
void micro_tile(const float* a, std::int64_t row_stride, std::int64_t depth_stride, const float* panel,
                std::int64_t depth, float* tile) {
  float acc[Rows][kTileCols] = {};  // (Rows, kTileCols)
  for (std::int64_t p = 0; p < depth; ++p) {
    const float* b = panel + p * kTileCols;
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      const float x = a[r * row_stride + p * depth_stride];
#pragma GCC unroll 64
      for (int j = 0; j < kTileCols; ++j) acc[r][j] = madd(x, b[j], acc[r][j]);
    }
  }
  for (int r = 0; r < Rows; ++r)
    for (int j = 0; j < kTileCols; ++j) tile[r * kTileCols + j] = acc[r][j];
}

// rows in [1, kTileRows].
void micro_tile_rows(int rows, const float* a, std::int64_t row_stride, std::int64_t depth_stride,
                     const float* panel, std::int64_t depth, float* tile) {
  static_assert(kTileRows == 4, "one case per row count below");
  switch (rows) {
    case 1: return micro_tile<1>(a, row_stride, depth_stride, panel, depth, tile);
    case 2: return micro_tile<2>(a, row_stride, depth_stride, panel, depth, tile);
    case 3: return micro_tile<3>(a, row_stride, depth_stride, panel, depth, tile);
    default: return micro_tile<4>(a, row_stride, depth_stride, panel, depth, tile);
  }
}

// exp(x) for x in [-87, 0] (Cephes' expf polynomial, ~1 ulp), branch-free
// so that the loops calling it vectorise; x below -87 gives exp(-87).
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + kRoundMagic) - kRoundMagic;
  const float r = madd(n, 2.12194440e-4f, madd(n, -0.693359375f, x));  // x - n ln2, ln2 in two parts
  float p = 1.9875691500e-4f;
  p = madd(p, r, 1.3981999507e-3f);
  p = madd(p, r, 8.3334519073e-3f);
  p = madd(p, r, 4.1665795894e-2f);
  p = madd(p, r, 1.6666665459e-1f);
  p = madd(p, r, 5.0000001201e-1f);
  p = madd(p * r, r, r) + 1.0f;
  const std::int32_t exponent_bits = (static_cast<std::int32_t>(n) + 127) << 23;  // 2^n
  return p * std::bit_cast<float>(exponent_bits);
}

// Max and sum of x[0, n), n >= 1, in kLanes independent partial results:
// without reassociation the compiler vectorises only that form.
constexpr int kLanes = 16;

float max_of(const float* x, std::int64_t n) {
  float lanes[kLanes];
  std::fill(lanes, lanes + kLanes, x[0]);
  std::int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] = x[j + l] > lanes[l] ? x[j + l] : lanes[l];
  for (; j < n; ++j) lanes[0] = x[j] > lanes[0] ? x[j] : lanes[0];
  return *std::max_element(lanes, lanes + kLanes);
}

// sum_j term(j) for j in [0, n).
template <typename Term>
float lane_sum(std::int64_t n, Term term) {
  float lanes[kLanes] = {};
  std::int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += term(j + l);
  for (; j < n; ++j) lanes[0] += term(j);
  float sum = 0;
  for (float lane : lanes) sum += lane;
  return sum;
}

float sum_of(const float* x, std::int64_t n) {
  return lane_sum(n, [x](std::int64_t j) { return x[j]; });
}

float dot_of(const float* x, const float* y, std::int64_t n) {
  return lane_sum(n, [x, y](std::int64_t j) { return x[j] * y[j]; });
}

// row (seqlen_k,): the scores of one query row, in place -> its softmax
// over the kept keys [kept.begin, kept.end), 0 elsewhere (all 0 when none).
void softmax_row(float* row, std::int64_t seqlen_k, core::KeyRange kept) {
  if (kept.empty()) {
    std::fill(row, row + seqlen_k, 0.0f);
    return;
  }
  std::fill(row, row + kept.begin, 0.0f);
  std::fill(row + kept.end, row + seqlen_k, 0.0f);
  float* keys = row + kept.begin;  // (kept keys,)
  const std::int64_t count = kept.end - kept.begin;
  const float max = max_of(keys, count);
  for (std::int64_t j = 0; j < count; ++j) keys[j] = exp_nonpositive(keys[j] - max);
  const float inverse = 1.0f / sum_of(keys, count);
  for (std::int64_t j = 0; j < count; ++j) keys[j] *= inverse;
}

// prob and grad (seqlen_k,): one row of P and of dP = dO V^T -> grad = dS =
// P (dP - D), D = sum_j P_j dP_j, over the kept keys; 0 elsewhere.
void softmax_backward_row(const float* prob, float* grad, std::int64_t seqlen_k, core::KeyRange kept) {
  if (kept.empty()) {
    std::fill(grad, grad + seqlen_k, 0.0f);
    return;
  }
  std::fill(grad, grad + kept.begin, 0.0f);
  std::fill(grad + kept.end, grad + seqlen_k, 0.0f);
  const float* p = prob + kept.begin;
  float* g = grad + kept.begin;  // (kept keys,)
  const std::int64_t count = kept.end - kept.begin;
  const float big_d = dot_of(p, g, count);
  for (std::int64_t j = 0; j < count; ++j) g[j] = p[j] * (g[j] - big_d);
}
