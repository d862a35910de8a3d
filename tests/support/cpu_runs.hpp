// Whether this CPU runs an ISA's kernels (tests of per-ISA code skip the rest).
#pragma once

#include "flashattn/runtime.hpp"

namespace flashattn::testing {

inline bool cpu_runs(Isa isa) {
  for (Isa supported : supported_isas())
    if (supported == isa) return true;
  return false;
}

}  // namespace flashattn::testing
