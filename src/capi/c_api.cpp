// The C ABI (flashattn/c_api.h): C descriptors to TensorViews, options to
// FlashAttnOptions, and every exception to a status and a message.
#include "flashattn/c_api.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>

#include "flashattn/error.hpp"
#include "flashattn/flash_attn.hpp"

namespace flashattn {
namespace {

static_assert(FLASHATTN_DTYPE_F32 == static_cast<int>(DType::f32) &&
              FLASHATTN_DTYPE_F16 == static_cast<int>(DType::f16) &&
              FLASHATTN_DTYPE_BF16 == static_cast<int>(DType::bf16));
static_assert(FLASHATTN_C_MAX_NDIM <= kMaxRank);

// The C function's name starts every message this file writes, as the
// front-ends' function name starts theirs.
TensorView to_view(const char* function, const char* name, const flashattn_tensor* t) {
  if (t == nullptr) return {};  // absent
  auto fail = [&](const std::string& what) { throw Error(std::string(function) + ": " + name + what); };
  if (t->ndim < 0 || t->ndim > FLASHATTN_C_MAX_NDIM)
    fail(".ndim is " + std::to_string(t->ndim) + ", expected 0 to " + std::to_string(FLASHATTN_C_MAX_NDIM));
  if (t->dtype != FLASHATTN_DTYPE_F32 && t->dtype != FLASHATTN_DTYPE_F16 && t->dtype != FLASHATTN_DTYPE_BF16)
    fail(".dtype is " + std::to_string(t->dtype) + ", expected FLASHATTN_DTYPE_F32, _F16 or _BF16");
  if (t->device_type != FLASHATTN_DEVICE_CPU && t->device_type != FLASHATTN_DEVICE_CUDA)
    fail(".device_type is " + std::to_string(t->device_type) + ", expected FLASHATTN_DEVICE_CPU or _CUDA");
  TensorView view;
  view.data = t->data;
  view.dtype = static_cast<DType>(t->dtype);
  view.device = {t->device_type == FLASHATTN_DEVICE_CUDA ? DeviceType::cuda : DeviceType::cpu, t->device_index};
  view.rank = t->ndim;
  std::copy_n(t->shape, t->ndim, view.shape.begin());
  std::copy_n(t->stride, t->ndim, view.stride.begin());
  return view;
}

FlashAttnOptions to_options(const flashattn_flash_attn_options* o) {
  const flashattn_flash_attn_options c = o != nullptr ? *o : flashattn_flash_attn_default_options();
  FlashAttnOptions options;
  if (c.has_softmax_scale) options.softmax_scale = c.softmax_scale;
  options.causal = c.causal != 0;
  options.window_size = {c.window_left, c.window_right};
  options.softcap = c.softcap;
  options.stream = c.stream;
  options.workspace = c.workspace;
  options.workspace_bytes = c.workspace_bytes;
  return options;
}

void copy_message(const char* text, char* message, std::size_t message_bytes) {
  if (message == nullptr || message_bytes == 0) return;
  const std::size_t length = std::min(std::strlen(text), message_bytes - 1);
  std::memcpy(message, text, length);
  message[length] = '\0';
}

// Runs fn, turning every exception into a status and a message.
template <class Fn>
int guarded(char* message, std::size_t message_bytes, Fn&& fn) {
  try {
    fn();
    copy_message("", message, message_bytes);
    return FLASHATTN_OK;
  } catch (const Error& e) {
    copy_message(e.what(), message, message_bytes);
    return FLASHATTN_ERROR;
  } catch (const std::exception& e) {
    copy_message(e.what(), message, message_bytes);
    return FLASHATTN_INTERNAL_ERROR;
  } catch (...) {
    copy_message("flashattn: unknown exception", message, message_bytes);
    return FLASHATTN_INTERNAL_ERROR;
  }
}

struct CallArgs {
  TensorView q, k, v;
  FlashAttnOutputs outputs;
};

CallArgs to_call(const char* function, const flashattn_tensor* q, const flashattn_tensor* k, const flashattn_tensor* v,
                 const flashattn_tensor* out, const flashattn_tensor* softmax_lse) {
  return {to_view(function, "q", q),
          to_view(function, "k", k),
          to_view(function, "v", v),
          {.out = to_view(function, "out", out), .softmax_lse = to_view(function, "softmax_lse", softmax_lse)}};
}

}  // namespace
}  // namespace flashattn

extern "C" {

int flashattn_c_api_version(void) { return FLASHATTN_C_API_VERSION; }

flashattn_flash_attn_options flashattn_flash_attn_default_options(void) {
  flashattn_flash_attn_options o{};
  o.window_left = o.window_right = -1;
  return o;
}

int flashattn_flash_attn(const flashattn_tensor* q, const flashattn_tensor* k, const flashattn_tensor* v,
                         const flashattn_tensor* out, const flashattn_tensor* softmax_lse,
                         const flashattn_flash_attn_options* options, char* message, size_t message_bytes) {
  return flashattn::guarded(message, message_bytes, [&] {
    const flashattn::CallArgs a = flashattn::to_call("flashattn_flash_attn", q, k, v, out, softmax_lse);
    flashattn::flash_attn(a.q, a.k, a.v, a.outputs, flashattn::to_options(options));
  });
}

int flashattn_flash_attn_workspace_bytes(const flashattn_tensor* q, const flashattn_tensor* k,
                                         const flashattn_tensor* v, const flashattn_tensor* out,
                                         const flashattn_tensor* softmax_lse,
                                         const flashattn_flash_attn_options* options, int64_t* workspace_bytes,
                                         char* message, size_t message_bytes) {
  return flashattn::guarded(message, message_bytes, [&] {
    if (workspace_bytes == nullptr)
      throw flashattn::Error("flashattn_flash_attn_workspace_bytes: workspace_bytes is NULL, expected a pointer");
    const flashattn::CallArgs a = flashattn::to_call("flashattn_flash_attn_workspace_bytes", q, k, v, out, softmax_lse);
    *workspace_bytes = flashattn::flash_attn_workspace_bytes(a.q, a.k, a.v, a.outputs, flashattn::to_options(options));
  });
}

}  // extern "C"
