// What this CPU can run.
#pragma once

#include <vector>

#include "flashattn/runtime.hpp"

namespace flashattn::dispatch {

// ISAs compiled in and runnable here (CPU and OS support), lowest first.
std::vector<Isa> detect_supported_isas();

}  // namespace flashattn::dispatch
