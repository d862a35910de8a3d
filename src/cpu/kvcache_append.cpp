#include "cpu/kvcache_append.hpp"

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/convert.hpp"
#include "core/rotary.hpp"
#include "core/sequence.hpp"

namespace flashattn::cpu {

void kvcache_append(const AttentionParams& p) {
  const DType dtype = p.dtype;
  const std::int64_t bytes = dtype_size(dtype), d = p.head_dim, half = p.rotary.cos ? p.rotary.dim / 2 : 0;
  std::vector<float> row(d), cos(half), sin(half);  // (head_dim,), (rotary_dim / 2,)
  const auto* k_new = static_cast<const char*>(p.k_new);
  const auto* v_new = static_cast<const char*>(p.v_new);
  // params hold the cache as the attention's (read-only) k and v; the append writes it.
  auto* k_cache = static_cast<char*>(const_cast<void*>(p.k));
  auto* v_cache = static_cast<char*>(const_cast<void*>(p.v));
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const core::SequenceExtent seq = core::sequence_extent(p, b);
    for (std::int64_t t = 0; t < p.seqlen_new; ++t) {
      const std::int64_t position = core::cached_keys(p, b) + t, j = position - seq.k_start;
      if (half > 0) {
        core::load_floats(static_cast<const char*>(p.rotary.cos) + position * p.rotary.cos_stride * bytes, dtype, half,
                          cos.data());
        core::load_floats(static_cast<const char*>(p.rotary.sin) + position * p.rotary.sin_stride * bytes, dtype, half,
                          sin.data());
      }
      for (std::int64_t h = 0; h < p.heads_kv; ++h) {
        core::load_floats(k_new + core::element_offset(p.k_new_stride, b, t, h) * bytes, dtype, d, row.data());
        core::rotate_row(row.data(), 2 * half, cos.data(), sin.data(), p.rotary.interleaved);
        core::store_floats(row.data(), dtype, d, k_cache + core::key_offset(p.k_stride, seq, j, h) * bytes);
        std::memcpy(v_cache + core::key_offset(p.v_stride, seq, j, h) * bytes,
                    v_new + core::element_offset(p.v_new_stride, b, t, h) * bytes, p.head_dim_v * bytes);
      }
    }
  }
}

}  // namespace flashattn::cpu
