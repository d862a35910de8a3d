// flash_attn_with_kvcache in three steps, so tests and the bench can run the
// fp64 reference on exactly the attention a call performs:
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
  // Throws Error naming the argument on any invalid input; reads the int32
  // index tensors, writes nothing.
  KvCacheCall(const TensorView& q, const TensorView& k_cache, const TensorView& v_cache,
              const KvCacheOutputs& outputs, const KvCacheOptions& options);
  KvCacheCall(const KvCacheCall&) = delete;  // params() points into this object
  KvCacheCall& operator=(const KvCacheCall&) = delete;

  // Writes the new keys (rotated) and values at positions cache_seqlens[b] ...
  // and fills the rotated copy of q. Call once.
  void append();

  // The attention over the updated cache: valid after append() when the call
  // appends or rotates, at once otherwise.
  const AttentionParams& params() const { return params_; }

 private:
  // The checks that fill the members below, in the constructor's order.
  void check_lengths(const ArgChecker& c, const KvCacheOptions& o, const CacheShape& cache, std::int64_t batch,
                     std::int64_t seqlen_new);
  void check_cache_rows(const ArgChecker& c, const KvCacheOptions& o, const CacheShape& cache, std::int64_t batch,
                        std::int64_t seqlen_new);
  void check_rotary(const ArgChecker& c, const KvCacheOptions& o, const TensorView& q, const Problem& p,
                    std::int64_t seqlen_new);

  AttentionParams params_;
  TensorView q_, k_new_, v_new_, rotary_cos_, rotary_sin_;
  bool rotary_interleaved_ = true;
  bool rotate_q_per_row_ = false;                 // causal or windowed: q row i at position cache_seqlens + i
  std::vector<std::int64_t> cache_seqlens_;        // (batch,) absolute position of the first new key
  std::vector<std::int32_t> seqlens_k_;            // (batch,) keys attended: params_.seqused_k
  std::vector<std::int32_t> leftpad_, batch_index_;
  std::vector<unsigned char> rotated_q_;           // (batch, seqlen_q, heads, head_dim) in q's dtype
};

}  // namespace flashattn::frontend
