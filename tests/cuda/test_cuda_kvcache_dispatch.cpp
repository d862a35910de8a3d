// flash_attn_with_kvcache on CUDA tensors in the CUDA build, on a machine
// without a usable GPU (every device hidden, as test_cuda_dispatch.cpp):
// host buffers tagged as cuda:0, never read or written. Mixing host and
// device tensors, strided device index tensors and what the host can still
// check (an int cache_seqlens, seqlen_new against the capacity) are
// flashattn::Errors naming the argument; device index contents are not read
// on the host; a valid call fails on the missing device before the append
// is launched. Every buffer is left as it was.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "flashattn/flash_attn_kvcache.hpp"
#include "support/error_case.hpp"
#include "support/kvcache_error_case.hpp"

namespace flashattn::testing {
namespace {

constexpr Device kCuda{DeviceType::cuda, 0};
const std::vector<CacheLayout> kLayouts{CacheLayout::contiguous, CacheLayout::paged};
const KvCacheSpec kBf16{.dtype = DType::bf16};

// The arguments a layout's valid call gives (KvCacheCase's names).
std::vector<std::string> arguments(CacheLayout layout) {
  std::vector<std::string> names{"q",          "k_cache",       "v_cache",      "k",   "v",          "rotary_cos",
                                 "rotary_sin", "cache_seqlens", "alibi_slopes", "out", "softmax_lse"};
  if (layout == CacheLayout::paged) {
    names.push_back("block_table");
  } else {
    names.push_back("cache_batch_idx");
    names.push_back("cache_leftpad");
  }
  return names;
}

void all_on_cuda(KvCacheCase& c, CacheLayout layout) {
  for (const std::string& name : arguments(layout)) c.view(name).device = kCuda;
}

// Like expect_rejected, for the CUDA backend's messages (they do not name an argument).
void expect_backend_error(const std::function<void()>& call, const std::vector<std::string>& details,
                          const BufferPool& pool) {
  const auto before = pool.snapshot();
  try {
    call();
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& d : details) EXPECT_NE(message.find(d), std::string::npos) << message << "\nlacks: " << d;
  }
  EXPECT_TRUE(pool.snapshot() == before) << "a buffer changed";
}

TEST(CudaKvCacheDispatch, EveryTensorMustBeOnQsDevice) {
  for (const CacheLayout layout : kLayouts) {
    for (const std::string& host_arg : arguments(layout)) {
      if (host_arg == "q") continue;
      KvCacheCase c(layout, kBf16);
      SCOPED_TRACE(host_arg);
      all_on_cuda(c, layout);
      c.view(host_arg).device = Device{};
      expect_rejected([&] { c.call(); }, c.prefix(host_arg), {"is on cpu", "expected cuda:0"}, c);
    }
  }
}

TEST(CudaKvCacheDispatch, DeviceTensorsWithHostQAreRejected) {
  for (const CacheLayout layout : kLayouts) {
    KvCacheCase c(layout, kBf16);
    all_on_cuda(c, layout);
    c.q.device = Device{};
    expect_rejected([&] { c.call(); }, c.prefix("k_cache"), {"is on cuda:0", "expected cpu"}, c);
  }
}

TEST(CudaKvCacheDispatch, DeviceIndexTensorsMustBeContiguous) {
  for (const char* arg : {"cache_seqlens", "cache_batch_idx", "cache_leftpad"}) {
    KvCacheCase c(CacheLayout::contiguous, kBf16);
    SCOPED_TRACE(arg);
    const std::int32_t first = c.get_int(arg, 0), second = c.get_int(arg, 1);
    c.view(arg) = c.add(int_tensor({first, -1, -1, second}));
    c.view(arg).shape[0] = 2;
    c.view(arg).stride[0] = 3;
    all_on_cuda(c, CacheLayout::contiguous);
    expect_rejected([&] { c.call(); }, c.prefix(arg), {"must be contiguous", "got 3"}, c);
  }
}

// What the host knows is still checked on a device: an int cache_seqlens and seqlen_new against the capacity.
TEST(CudaKvCacheDispatch, HostKnownLengthsAreChecked) {
  for (const CacheLayout layout : kLayouts) {
    KvCacheCase c(layout, kBf16);
    all_on_cuda(c, layout);
    c.seqlens_int = c.capacity + 1;
    expect_rejected([&] { c.call(); }, c.prefix("cache_seqlens"), {"is " + std::to_string(c.capacity + 1)}, c);

    KvCacheCase d(layout, kBf16);
    const TensorView k = d.options.k;
    d.replace("k", k.dtype, {k.shape[0], d.capacity + 1, k.shape[2], k.shape[3]});
    d.replace("v", k.dtype, {k.shape[0], d.capacity + 1, k.shape[2], k.shape[3]});
    all_on_cuda(d, layout);
    expect_rejected([&] { d.call(); }, d.prefix("k"), {"more than the cache's capacity"}, d);
  }
}

// Device index contents cannot be read without synchronising: entries the
// CPU path would reject pass the host's checks (the kernels clamp them), and
// the call stops at the missing device, before the append is launched.
TEST(CudaKvCacheDispatch, DeviceIndexContentsAreNotReadOnTheHost) {
  for (const CacheLayout layout : kLayouts) {
    KvCacheCase c(layout, kBf16);
    c.set_int("cache_seqlens", 0, -5);
    c.set_int("cache_seqlens", 1, 1 << 30);
    if (layout == CacheLayout::paged) {
      c.table(0, 0) = 99999;
    } else {
      c.set_int("cache_batch_idx", 0, 77);
      c.set_int("cache_leftpad", 1, -3);
    }
    all_on_cuda(c, layout);
    expect_backend_error([&] { c.call(); }, {"CUDA device", "none is available"}, c);
  }
}

TEST(CudaKvCacheDispatch, NoDeviceIsAClearErrorBeforeAnyLaunch) {
  for (const CacheLayout layout : kLayouts) {
    KvCacheCase c(layout, kBf16);
    all_on_cuda(c, layout);
    expect_backend_error([&] { c.call(); }, {"CUDA device", "none is available"}, c);
    KvCacheOptions options = c.options;
    options.cache_seqlens = c.seqlens;
    expect_backend_error(
        [&] { flash_attn_with_kvcache_workspace_bytes(c.q, c.k_cache, c.v_cache, c.outputs, options); },
        {"CUDA device", "none is available"}, c);
  }
}

TEST(CudaKvCacheDispatch, F32IsRejectedBeforeAnyLaunch) {
  KvCacheCase c(CacheLayout::paged, KvCacheSpec{.dtype = DType::f32});
  all_on_cuda(c, CacheLayout::paged);
  expect_backend_error([&] { c.call(); }, {"dtype f32", "expected f16 or bf16"}, c);
}

}  // namespace
}  // namespace flashattn::testing
