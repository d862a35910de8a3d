// flash_attn_with_kvcache in three steps, so tests and the bench can run the
// fp64 reference on exactly the attention a call performs (host tensors; on
// CUDA tensors q is rotated by the forward kernel, params.rotary.rotate_q):
//   KvCacheCall call(q, k_cache, v_cache, outputs, options);  // checks, writes nothing
//   call.append();                                           // new k / v into the cache, q rotated
//   run_forward(call.params());                              // attention over the updated cache
#pragma once

#include <cstdint>
#include <vector>

#include "flashattn/flash_attn_kvcache.hpp"
#include "flashattn/params.hpp"

namespace flashattn::frontend {

struct CacheShape;  // what k_cache's shape means (flash_attn_kvcache.cpp)
class ArgChecker;
struct Problem;

class KvCacheCall {
 public:
  // Throws Error naming the argument on any invalid input; reads the host
  // int32 index tensors (device ones are left to the kernels), writes nothing.
  KvCacheCall(const TensorView& q, const TensorView& k_cache, const TensorView& v_cache,
              const KvCacheOutputs& outputs, const KvCacheOptions& options);
  KvCacheCall(const KvCacheCall&) = delete;  // params() points into this object
  KvCacheCall& operator=(const KvCacheCall&) = delete;

  // Writes the new keys (rotated) and values at positions cache_seqlens[b] ...
  // (run_kvcache_append) and, on the CPU, fills the rotated copy of q. Call once.
  void append();

  // The attention over the updated cache: valid after append() when the call
  // appends or rotates, at once otherwise. Its append and rotary fields
  // describe the whole call (run_kvcache_append reads them).
  const AttentionParams& params() const { return params_; }

 private:
  // The checks that fill the members below, in the constructor's order.
  void check_lengths(const ArgChecker& c, const KvCacheOptions& o, const CacheShape& cache, std::int64_t batch,
                     std::int64_t seqlen_new);
  void check_cache_rows(const ArgChecker& c, const KvCacheOptions& o, const CacheShape& cache, std::int64_t batch,
                        std::int64_t seqlen_new);
  void check_rotary(const ArgChecker& c, const KvCacheOptions& o, const TensorView& q, const Problem& p,
                    std::int64_t seqlen_new, bool rotate_q_per_row) const;
  std::int64_t key_bound(const CacheShape& cache, std::int64_t seqlen_new) const;
  void set_lengths(const KvCacheOptions& o, std::int64_t seqlen_new);
  void set_rotary(const KvCacheOptions& o, const Problem& p, bool rotate_q_per_row);
  void rotate_q_copy();

  AttentionParams params_;
  TensorView q_;
  bool on_host_ = true;  // q (and so every tensor) on the CPU
  // Host copies of what was checked (empty where a device tensor was given).
  std::vector<std::int32_t> cache_seqlens_;  // (batch,) keys before the append (a given int repeated)
  std::vector<std::int32_t> leftpad_, batch_index_;
  std::vector<unsigned char> rotated_q_;  // CPU: (batch, seqlen_q, heads, head_dim) in q's dtype
};

}  // namespace flashattn::frontend
