// Shared bench pieces (see bench_util.hpp).
#include "bench_util.hpp"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "cli_args.hpp"
#include "core/mask.hpp"

namespace flashattn::tools {

std::int64_t checked_numel(std::initializer_list<std::int64_t> shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (__builtin_mul_overflow(n, d, &n)) throw cli::CliError("bench: the tensors are too large to address");
  }
  return n;
}

void check_fits_in_memory(double bytes) {
  const double physical = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
  if (physical > 0 && bytes > 0.8 * physical) {
    throw cli::CliError("bench: the tensors need " + std::to_string(static_cast<std::int64_t>(bytes / (1 << 30))) +
                        " GiB, more than this machine has");
  }
}

void advise_huge_pages(std::byte* data, std::size_t bytes) {
  const std::size_t whole = bytes / kHugePageBytes * kHugePageBytes;
  if (whole > 0) madvise(data, whole, MADV_HUGEPAGE);
}

void resize_on_huge_pages(Bytes& bytes, std::size_t size) {
  bytes.reserve(size);  // allocated, not yet written: no page is backed
  advise_huge_pages(bytes.data(), bytes.capacity());
  bytes.resize(size);
}

void randomize(Bytes& bytes, DType dtype, std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  const int size = dtype_size(dtype);
  for (std::size_t at = 0; at < bytes.size(); at += size) {
    const float x = normal(rng);
    const std::uint16_t half = dtype == DType::bf16 ? to_bfloat16(x).bits : to_float16(x).bits;
    std::memcpy(bytes.data() + at, dtype == DType::f32 ? static_cast<const void*>(&x) : &half, size);
  }
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// 2 (D + Dv) FLOPs per kept (i, j) pair: q.k and p.v (= 4 D when Dv = D).
double forward_flops(const AttentionParams& params) {
  std::int64_t pairs = 0;
  for (std::int64_t i = 0; i < params.seqlen_q; ++i) {
    const core::KeyRange keys = core::kept_keys(params.mask, i, params.seqlen_q, params.seqlen_k);
    pairs += keys.end - keys.begin;
  }
  return 2.0 * static_cast<double>(params.head_dim + params.head_dim_v) * static_cast<double>(pairs) *
         static_cast<double>(params.batch * params.heads_q);
}

}  // namespace flashattn::tools
