// Opens / closes a region of code compiled for one instruction set.
//
// Why a pragma and not per-file -m flags: inline functions and templates
// from shared headers (std, src/core) get emitted into every translation
// unit that uses them, and the linker keeps one copy. With per-file flags
// that copy might be the AVX-512 one and crash a CPU without AVX-512. Each
// ISA file therefore includes every shared header first, with the baseline
// flags, and only then opens its target region for its own namespace.
#pragma once

#define FLASHATTN_PRAGMA(x) _Pragma(#x)

#if defined(__clang__)
#define FLASHATTN_ISA_BEGIN(features) \
  FLASHATTN_PRAGMA(clang attribute push(__attribute__((target(features))), apply_to = function))
#define FLASHATTN_ISA_END FLASHATTN_PRAGMA(clang attribute pop)
#else
#define FLASHATTN_ISA_BEGIN(features) \
  FLASHATTN_PRAGMA(GCC push_options)  \
  FLASHATTN_PRAGMA(GCC target(features))
#define FLASHATTN_ISA_END FLASHATTN_PRAGMA(GCC pop_options)
#endif

// Target strings of the compiled ISAs (also used by the feature check).
#define FLASHATTN_TARGET_AVX2 "avx2,fma,f16c"
#define FLASHATTN_TARGET_AVX512 "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"
#define FLASHATTN_TARGET_AVX512_BF16 "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,avx512bf16"
