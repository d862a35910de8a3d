// Google Benchmark bodies of the forward's micro-kernels, for one ISA.
// Included inside namespace flashattn::bench::<isa> within its target region,
// after the vector layer and src/cpu/micro_kernel.inl (and bf16_dot_math.inl).
//
// Each benchmark runs one kernel on one key tile held in L1/L2, exactly as
// the tile loop calls it, and reports FLOP/s (2 per multiply-add; a bf16
// dot product counts 4 per lane).

// Buffers of `count` elements filled with small, exactly representable values.
template <class Elem>
struct Buffer {
  explicit Buffer(std::int64_t count)
      : data(static_cast<Elem*>(::operator new(count * sizeof(Elem), std::align_val_t{64}))) {
    for (std::int64_t i = 0; i < count; ++i) {
      const float x = static_cast<float>(i % 7 - 3) * 0.125f;
      if constexpr (sizeof(Elem) == 2) {
        data[i] = to_bfloat16(x).bits;
      } else {
        data[i] = x;
      }
    }
  }
  ~Buffer() { ::operator delete(data, std::align_val_t{64}); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Elem* data;
};

constexpr std::int64_t kTileKeys = 128;

// S^T (128 keys x cols vectors of queries) = K Q^T over head_dim = range(1).
template <class Math>
void score_kernel(benchmark::State& state) {
  const int cols = static_cast<int>(state.range(0));
  const std::int64_t head_dim = state.range(1), lanes = cols * Vec::kWidth;
  const std::int64_t steps = head_dim / Math::kPack;
  Buffer<typename Math::Elem> k(kTileKeys * head_dim), qt(head_dim * lanes);
  Buffer<float> st(kTileKeys * lanes);
  for (auto _ : state) {
    with_cols(cols, [&]<int Cols>() {
      score_product<Math, Cols>(kTileKeys, steps, k.data, steps * Math::kPack, qt.data, lanes, st.data, lanes);
    });
    benchmark::DoNotOptimize(st.data);
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * kTileKeys * head_dim * lanes;
  state.counters["FLOPS"] = benchmark::Counter(flops * state.iterations(), benchmark::Counter::kIsRate);
}

// O^T (head_dim_v = range(1) x cols vectors) = alpha O^T + V^T P^T over 128 keys.
template <class Math>
void output_kernel(benchmark::State& state) {
  const int cols = static_cast<int>(state.range(0));
  const std::int64_t dv = state.range(1), lanes = cols * Vec::kWidth;
  Buffer<typename Math::Elem> v(kTileKeys * dv), pt(kTileKeys * lanes);
  Buffer<float> ot(dv * lanes), alpha(lanes);
  for (std::int64_t i = 0; i < lanes; ++i) alpha.data[i] = 1.0f;
  for (auto _ : state) {
    with_cols(cols, [&]<int Cols>() {
      output_product<Math, Cols>(dv, kTileKeys / Math::kPack, v.data, dv, pt.data, lanes, alpha.data, ot.data);
    });
    benchmark::DoNotOptimize(ot.data);
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * kTileKeys * dv * lanes;
  state.counters["FLOPS"] = benchmark::Counter(flops * state.iterations(), benchmark::Counter::kIsRate);
}

// The vector exp of the softmax, on one tile of scores; reports exps per second.
void exp_kernel(benchmark::State& state) {
  const std::int64_t count = kTileKeys * Vec::kMaxCols * Vec::kWidth;
  Buffer<float> s(count);
  for (auto _ : state) {
    for (std::int64_t i = 0; i < count; i += Vec::kWidth) Vec::store(s.data + i, Vec::exp(Vec::load(s.data + i)));
    benchmark::ClobberMemory();
  }
  state.counters["exps"] = benchmark::Counter(double(count) * state.iterations(), benchmark::Counter::kIsRate);
}

template <class Math>
void register_kernels(const std::string& prefix) {
  for (int cols = 1; cols <= Vec::kMaxCols; ++cols)
    for (std::int64_t d : {64, 128}) {
      benchmark::RegisterBenchmark((prefix + "/score").c_str(), score_kernel<Math>)->Args({cols, d});
      benchmark::RegisterBenchmark((prefix + "/output").c_str(), output_kernel<Math>)->Args({cols, d});
    }
}
