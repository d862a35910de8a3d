// flashattn_micro_bench: Google Benchmark runs of the forward's micro-kernels
// for every ISA this CPU supports. Registration of an ISA's benchmarks runs
// only after the CPU check, so nothing of a higher ISA executes on a lower CPU.
#include <benchmark/benchmark.h>

#include "flashattn/runtime.hpp"

namespace flashattn::bench {
namespace avx2 { void register_benchmarks(); }
namespace avx512 { void register_benchmarks(); }
namespace avx512_bf16 { void register_benchmarks(); }
}  // namespace flashattn::bench

int main(int argc, char** argv) {
  using flashattn::Isa;
  for (Isa isa : flashattn::supported_isas()) {
    switch (isa) {
      case Isa::avx2: flashattn::bench::avx2::register_benchmarks(); break;
      case Isa::avx512: flashattn::bench::avx512::register_benchmarks(); break;
      case Isa::avx512_bf16: flashattn::bench::avx512_bf16::register_benchmarks(); break;
      case Isa::scalar: break;
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
