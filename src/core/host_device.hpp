// FLASHATTN_HD marks the core's shared pieces (the mask predicate, the
// dropout RNG) callable from CUDA kernels as well as host code: one
// definition for every backend. Plain inline in host-only translation units.
#pragma once

#if defined(__CUDACC__)
#define FLASHATTN_HD __host__ __device__
#else
#define FLASHATTN_HD
#endif
