// Every header the per-ISA forward files need, included before their target
// region opens so that all shared inline code is compiled for the baseline.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <type_traits>
#include <vector>

#include "core/dropout.hpp"
#include "core/mask.hpp"
#include "core/merge.hpp"
#include "core/sequence.hpp"
#include "cpu/cpu_forward.hpp"
#include "cpu/isa_region.hpp"
#include "flashattn/dtype.hpp"
#include "flashattn/params.hpp"
