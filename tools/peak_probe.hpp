// The arithmetic ceiling the bench reports fractions of (DESIGN.md,
// "Performance method"): the peak of the instruction the kernel's inner
// products use, measured in-process on this machine, all threads at once.
#pragma once

#include <string_view>

#include "flashattn/dtype.hpp"
#include "flashattn/runtime.hpp"

namespace flashattn::tools {

// Which instruction the kernel's inner products run on.
//   fma:      fp32 multiply-add at the ISA's vector width (zmm for avx512 and
//             avx512_bf16, ymm for avx2; mulss + addss for scalar, which is
//             compiled for baseline x86-64 without FMA).
//   bf16_dot: vdpbf16ps on zmm, 64 FLOPs per instruction (avx512_bf16 only).
enum class MathPath { fma, bf16_dot };

// "fma" / "bf16_dot".
std::string_view math_path_name(MathPath path);

// The path the kernel takes: bf16_dot for bf16 inputs on avx512_bf16, else fma.
MathPath math_path_of(Isa isa, DType dtype);

// Peak GFLOP/s of `path` at `isa`'s width, summed over `threads` OpenMP
// threads running at once: a register-blocked loop of independent
// accumulator chains, ~40 ms per thread per trial, best of 3. Each thread is
// timed by its own CPU time, so time spent descheduled (a shared machine)
// does not lower the peak. Throws std::invalid_argument for bf16_dot on an
// ISA other than avx512_bf16. The CPU must support `isa`.
double peak_gflops(Isa isa, MathPath path, int threads);

}  // namespace flashattn::tools
