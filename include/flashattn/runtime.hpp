// Process-wide execution settings: backend, instruction set, threads.
// Read once from the environment (FLASHATTN_BACKEND, FLASHATTN_ISA,
// FLASHATTN_NUM_THREADS) at first use; the setters override them. Changing a
// setting while another thread is inside an attention call is not supported.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace flashattn {

// CPU instruction-set paths, lowest first. avx512_bf16 is avx512 plus the
// AVX512_BF16 dot product (vdpbf16ps), used for bf16 inputs; other dtypes
// run the avx512 code under it.
enum class Isa { scalar, avx2, avx512, avx512_bf16 };

enum class Backend { cpu, reference };

std::string_view isa_name(Isa isa);
std::string_view backend_name(Backend backend);
// Parses "scalar" / "avx2" / "avx512" / "avx512_bf16"; throws Error otherwise.
Isa parse_isa(std::string_view name);
Backend parse_backend(std::string_view name);

// ISAs compiled into this library, lowest first.
std::vector<Isa> compiled_isas();
// ISAs this CPU (and OS) can run, lowest first.
std::vector<Isa> supported_isas();
// The ISA in use: the best supported one unless FLASHATTN_ISA or set_isa chose a lower one.
Isa active_isa();
// Throws Error if the CPU cannot run `isa`.
void set_isa(Isa isa);

Backend active_backend();
void set_backend(Backend backend);

// Threads used by the CPU kernels: FLASHATTN_NUM_THREADS, else OpenMP's default.
int num_threads();
// n >= 1, or 0 to return to the default.
void set_num_threads(int n);

// Library version, "major.minor.patch".
std::string version();

}  // namespace flashattn
