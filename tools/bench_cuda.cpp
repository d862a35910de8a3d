// `flashattn bench --backend cuda`: the CUDA forward on the current device.
// --mode fwd times flash_attn on (b, s, h, d) inputs; --mode decode times
// flash_attn_varlen with one query per sequence over a paged cache
// (block_table, --page-size, split-KV with the workspace the library asks
// for) against the device-to-device copy bandwidth measured in the same
// run. Each time is the median of --repeat (at least 20) runs timed with
// CUDA events after 3 warm-up runs; sampled rows are checked against the
// fp64 reference on the host by the oracle rule. The library is called
// through the params its front-ends fill (run_forward), as in bench.cpp, so
// the host copies get the very same params for the oracle. Built only with
// FLASHATTN_CUDA.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench_options.hpp"
#include "bench_util.hpp"
#include "cli_args.hpp"
#include "cuda/check.hpp"
#include "flashattn/flash_attn.hpp"
#include "flashattn/params.hpp"
#include "frontends/flash_attn_params.hpp"
#include "sampled_oracle.hpp"

namespace flashattn::tools {
namespace {

constexpr int kWarmup = 3;
constexpr std::int64_t kMinTimedRuns = 20;

// A device buffer with a host mirror: fill on the host, upload, run, download.
class Mirrored {
 public:
  explicit Mirrored(std::size_t bytes) : host(bytes) { FLASHATTN_CUDA_CHECK(cudaMalloc(&device_, bytes)); }
  ~Mirrored() { cudaFree(device_); }
  Mirrored(const Mirrored&) = delete;
  Mirrored& operator=(const Mirrored&) = delete;
  void upload() { FLASHATTN_CUDA_CHECK(cudaMemcpy(device_, host.data(), host.size(), cudaMemcpyHostToDevice)); }
  void download() { FLASHATTN_CUDA_CHECK(cudaMemcpy(host.data(), device_, host.size(), cudaMemcpyDeviceToHost)); }
  void* device() const { return device_; }

  Bytes host;

 private:
  void* device_ = nullptr;
};

TensorView view(const void* data, DType dtype, std::initializer_list<std::int64_t> shape, bool on_device) {
  return TensorView::contiguous(data, dtype, shape, on_device ? Device{DeviceType::cuda, 0} : Device{});
}

// Median milliseconds of `repeat` runs of fn on `stream`, each between two events.
template <class Fn>
double median_event_ms(std::int64_t repeat, cudaStream_t stream, Fn&& fn) {
  for (int i = 0; i < kWarmup; ++i) fn();
  cudaEvent_t start, stop;
  FLASHATTN_CUDA_CHECK(cudaEventCreate(&start));
  FLASHATTN_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> ms(static_cast<std::size_t>(std::max(repeat, kMinTimedRuns)));
  for (float& t : ms) {
    FLASHATTN_CUDA_CHECK(cudaEventRecord(start, stream));
    fn();
    FLASHATTN_CUDA_CHECK(cudaEventRecord(stop, stream));
    FLASHATTN_CUDA_CHECK(cudaEventSynchronize(stop));
    FLASHATTN_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return median(std::move(ms));
}

// Device-to-device copy bandwidth (bytes read + bytes written per second) of a 1 GiB copy.
double copy_bandwidth_gbps(cudaStream_t stream) {
  constexpr std::size_t kBytes = std::size_t{1} << 30;
  void *src = nullptr, *dst = nullptr;
  FLASHATTN_CUDA_CHECK(cudaMalloc(&src, kBytes));
  FLASHATTN_CUDA_CHECK(cudaMalloc(&dst, kBytes));
  FLASHATTN_CUDA_CHECK(cudaMemsetAsync(src, 1, kBytes, stream));
  const double ms = median_event_ms(kMinTimedRuns, stream, [&] {
    FLASHATTN_CUDA_CHECK(cudaMemcpyAsync(dst, src, kBytes, cudaMemcpyDeviceToDevice, stream));
  });
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * static_cast<double>(kBytes) / (ms * 1e-3) / 1e9;
}

std::string device_name() {
  int device = 0;
  cudaDeviceProp prop{};
  FLASHATTN_CUDA_CHECK(cudaGetDevice(&device));
  FLASHATTN_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  int driver = 0;
  FLASHATTN_CUDA_CHECK(cudaDriverGetVersion(&driver));
  return std::string(prop.name) + ", driver API " + std::to_string(driver / 1000) + "." +
         std::to_string(driver % 1000 / 10);
}

// The sampled oracle on host copies of a run's inputs and outputs.
OracleVerdict check_sample(const AttentionParams& host_params) {
  const std::vector<RowIndex> rows = sample_rows(host_params, 16, 0x5eed);
  return check_rows(host_params, rows);
}

int report(const char* what, double ms, double rate, const char* unit, double ceiling, const char* ceiling_name,
           const OracleVerdict& v) {
  std::printf("%-44s %9.3f ms %9.1f %s", what, ms, rate, unit);
  if (ceiling > 0) std::printf("  %s %.1f  fraction %.3f", ceiling_name, ceiling, rate / ceiling);
  std::printf("  oracle %s (err %.2e, bound %.2e)%s%s\n", v.ok ? "ok" : "FAIL", v.max_abs_err, v.bound,
              v.ok ? "" : ": ", v.failure.c_str());
  return v.ok ? 0 : 1;
}

int run_fwd(const BenchOptions& o, cudaStream_t stream) {
  const std::int64_t hk = o.heads_kv > 0 ? o.heads_kv : o.heads, bytes = dtype_size(o.dtype);
  Mirrored q(checked_numel({o.batch, o.seqlen_q, o.heads, o.head_dim}) * bytes),
      k(checked_numel({o.batch, o.seqlen_k, hk, o.head_dim}) * bytes), v(k.host.size()), out(q.host.size()),
      lse(checked_numel({o.batch, o.heads, o.seqlen_q}) * 4);
  std::mt19937_64 rng(0x5eed);
  for (Mirrored* t : {&q, &k, &v}) {
    randomize(t->host, o.dtype, rng);
    t->upload();
  }
  FlashAttnOptions options{.causal = o.causal, .stream = stream};
  // The call's tensors on the device (run) or their host copies (the oracle's params).
  auto params = [&](bool on_device) {
    auto at = [&](const Mirrored& m) { return on_device ? m.device() : static_cast<const void*>(m.host.data()); };
    const TensorView qv = view(at(q), o.dtype, {o.batch, o.seqlen_q, o.heads, o.head_dim}, on_device);
    const TensorView kv = view(at(k), o.dtype, {o.batch, o.seqlen_k, hk, o.head_dim}, on_device);
    const TensorView vv = view(at(v), o.dtype, {o.batch, o.seqlen_k, hk, o.head_dim}, on_device);
    const FlashAttnOutputs outs{view(at(out), o.dtype, {o.batch, o.seqlen_q, o.heads, o.head_dim}, on_device),
                                view(at(lse), DType::f32, {o.batch, o.heads, o.seqlen_q}, on_device)};
    return frontend::flash_attn_params("bench", qv, kv, vv, outs, options);
  };
  const AttentionParams device = params(true);
  const double ms = median_event_ms(o.repeat, stream, [&] { run_forward(device); });
  out.download();
  lse.download();
  options.stream = nullptr;
  const AttentionParams host = params(false);
  const std::string what = "fwd b" + std::to_string(o.batch) + " h" + std::to_string(o.heads) + "/" +
                           std::to_string(hk) + " s" + std::to_string(o.seqlen_q) + "x" + std::to_string(o.seqlen_k) +
                           " d" + std::to_string(o.head_dim) + (o.causal ? " causal" : "");
  return report(what.c_str(), ms, forward_flops(host) / (ms * 1e-3) / 1e12, "TFLOP/s", 0, "", check_sample(host));
}

// One query per sequence over a paged cache of seqlen_k keys per sequence, pages shuffled.
int run_decode(const BenchOptions& o, cudaStream_t stream) {
  const std::int64_t hk = o.heads_kv > 0 ? o.heads_kv : o.heads, bytes = dtype_size(o.dtype);
  const std::int64_t page = o.page_size > 0 ? o.page_size : 256, per_seq = (o.seqlen_k + page - 1) / page;
  const std::int64_t pages = o.batch * per_seq;
  Mirrored q(checked_numel({o.batch, o.heads, o.head_dim}) * bytes),
      k(checked_numel({pages, page, hk, o.head_dim}) * bytes), v(k.host.size()), out(q.host.size()),
      lse(checked_numel({o.heads, o.batch}) * 4), cu_q((o.batch + 1) * 4), cu_k((o.batch + 1) * 4), table(pages * 4);
  std::mt19937_64 rng(0x5eed);
  for (Mirrored* t : {&q, &k, &v}) randomize(t->host, o.dtype, rng);
  auto* cq = reinterpret_cast<std::int32_t*>(cu_q.host.data());
  auto* ck = reinterpret_cast<std::int32_t*>(cu_k.host.data());
  auto* tb = reinterpret_cast<std::int32_t*>(table.host.data());
  for (std::int64_t b = 0; b <= o.batch; ++b) {
    cq[b] = static_cast<std::int32_t>(b);
    ck[b] = static_cast<std::int32_t>(b * o.seqlen_k);
  }
  std::iota(tb, tb + pages, 0);
  std::shuffle(tb, tb + pages, rng);
  for (Mirrored* t : {&q, &k, &v, &cu_q, &cu_k, &table}) t->upload();

  FlashAttnOptions options{.causal = true, .stream = stream};
  // flash_attn_varlen's params over the device tensors (run) or their host copies (the oracle).
  auto params = [&](bool on_device) {
    auto at = [&](const Mirrored& m) { return on_device ? m.device() : static_cast<const void*>(m.host.data()); };
    const TensorView qv = view(at(q), o.dtype, {o.batch, o.heads, o.head_dim}, on_device);
    const TensorView kv = view(at(k), o.dtype, {pages, page, hk, o.head_dim}, on_device);
    const TensorView vv = view(at(v), o.dtype, {pages, page, hk, o.head_dim}, on_device);
    const FlashAttnOutputs outs{view(at(out), o.dtype, {o.batch, o.heads, o.head_dim}, on_device),
                                view(at(lse), DType::f32, {o.heads, o.batch}, on_device)};
    return frontend::flash_attn_varlen_params("bench", qv, kv, vv, view(at(cu_q), DType::i32, {o.batch + 1}, on_device),
                                              view(at(cu_k), DType::i32, {o.batch + 1}, on_device), 1, o.seqlen_k, outs,
                                              options, {}, view(at(table), DType::i32, {o.batch, per_seq}, on_device));
  };
  AttentionParams device = params(true);
  const std::int64_t workspace_bytes = forward_workspace_bytes(device);
  if (workspace_bytes > 0) FLASHATTN_CUDA_CHECK(cudaMalloc(&device.workspace, workspace_bytes));
  device.workspace_bytes = workspace_bytes;
  const double ms = median_event_ms(o.repeat, stream, [&] { run_forward(device); });
  cudaFree(device.workspace);
  out.download();
  lse.download();
  const double copy_gbps = copy_bandwidth_gbps(stream);

  // The oracle samples fixed-length rows: the same call seen as a (b, 1, h, d) batch.
  options.stream = nullptr;
  AttentionParams host = params(false);
  host.cu_seqlens_q = host.cu_seqlens_k = nullptr;
  host.bounds = {};
  host.bounds.num_pages = pages, host.bounds.pages_per_seq = per_seq;
  host.q_stride.batch = host.q_stride.row;
  host.out_stride.batch = host.out_stride.row;
  host.lse_batch_stride = 1;
  host.seqlen_q = 1;
  const double cache_bytes = 2.0 * static_cast<double>(o.batch * o.seqlen_k * hk * o.head_dim * bytes);
  const std::string what = "decode b" + std::to_string(o.batch) + " h" + std::to_string(o.heads) + "/" +
                           std::to_string(hk) + " sk" + std::to_string(o.seqlen_k) + " d" + std::to_string(o.head_dim) +
                           " page " + std::to_string(page);
  return report(what.c_str(), ms, cache_bytes / (ms * 1e-3) / 1e9, "GB/s", copy_gbps, "d2d copy GB/s",
                check_sample(host));
}

}  // namespace

int run_cuda_bench(const BenchOptions& o) {
  if (o.dtype != DType::bf16 && o.dtype != DType::f16)
    throw cli::CliError("bench --backend cuda: --dtype must be bf16 or f16");
  std::printf("device: %s\n", device_name().c_str());
  cudaStream_t stream;
  FLASHATTN_CUDA_CHECK(cudaStreamCreate(&stream));
  const int status = o.mode == BenchMode::decode ? run_decode(o, stream) : run_fwd(o, stream);
  cudaStreamDestroy(stream);
  return status;
}

}  // namespace flashattn::tools
