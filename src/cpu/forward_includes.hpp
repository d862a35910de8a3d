// Every header the per-ISA forward files need, included before their target
// region opens so that all shared inline code is compiled for the baseline.
#pragma once

// GCC 12 reports the intrinsics' own undefined-register placeholders
// (_mm512_undefined_ps: `__m512 __Y = __Y;`) as uninitialized once they
// are inlined deep enough (GCC PR 105593, fixed in 13). Silenced for the
// header's lines only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

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
#include "core/split.hpp"
#include "cpu/cpu_forward.hpp"
#include "cpu/isa_region.hpp"
#include "flashattn/dtype.hpp"
#include "flashattn/params.hpp"
