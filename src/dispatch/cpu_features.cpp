#include "dispatch/cpu_features.hpp"

namespace flashattn::dispatch {

// __builtin_cpu_supports also checks that the OS saves the wide registers
// (XGETBV), so a positive answer means the instructions can run.
std::vector<Isa> detect_supported_isas() {
  std::vector<Isa> isas{Isa::scalar};
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (avx2) isas.push_back(Isa::avx2);
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    isas.push_back(Isa::avx512);
    if (__builtin_cpu_supports("avx512bf16")) isas.push_back(Isa::avx512_bf16);
  }
  return isas;
}

}  // namespace flashattn::dispatch
