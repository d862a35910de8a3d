// `flashattn bench --mode decode`: flash_attn_with_kvcache at decoding sizes,
// against the DRAM read bandwidth measured in the same process.
#pragma once

#include "bench_options.hpp"

namespace flashattn::tools {

// Runs one decode row (options already parsed and applied); returns the exit
// status: 0 when the sampled oracle verdict is ok, 1 otherwise.
int run_decode_bench(const BenchOptions& o);

// --backend cuda, --mode fwd or decode (bench_cuda.cpp; CUDA builds only).
int run_cuda_bench(const BenchOptions& o);

}  // namespace flashattn::tools
