/* flashattn's C ABI: the flash-attn forward (flashattn::flash_attn) over
 * plain C types, for callers that cannot use the C++ API, e.g. Python
 * through ctypes on a framework's own tensors and stream
 * (scripts/sdpa_compare.py). Built as the shared library libflashattn_c,
 * which exports only these functions.
 *
 *   flashattn_tensor q = {q_ptr, FLASHATTN_DTYPE_BF16, FLASHATTN_DEVICE_CUDA, 0, 4,
 *                         {b, s, h, d}, {s * h * d, h * d, d, 1}};
 *   ...
 *   flashattn_flash_attn_options options = flashattn_flash_attn_default_options();
 *   options.causal = 1;
 *   char message[512];
 *   if (flashattn_flash_attn(&q, &k, &v, &out, NULL, &options, message, sizeof message) != FLASHATTN_OK)
 *     fprintf(stderr, "%s\n", message);
 *
 * Shapes, dtypes and semantics are flashattn::flash_attn's
 * (flashattn/flash_attn.hpp): q (b, sq, h, d), k and v (b, sk, hk, d), out
 * like q, softmax_lse fp32 (b, h, sq); causal and windows are bottom-right.
 * No C++ exception crosses this boundary: each function returns a status
 * and copies the error's message into the caller's buffer. */
#ifndef FLASHATTN_C_API_H
#define FLASHATTN_C_API_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define FLASHATTN_C_EXPORT __attribute__((visibility("default")))
#else
#define FLASHATTN_C_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a struct or signature below changes, so that a caller that
 * declares them itself (ctypes) can refuse a library it does not match. */
#define FLASHATTN_C_API_VERSION 1

enum {
  FLASHATTN_OK = 0,
  FLASHATTN_ERROR = 1,         /* flashattn::Error: a bad argument, or a failed CUDA runtime call */
  FLASHATTN_INTERNAL_ERROR = 2 /* any other C++ exception (e.g. out of memory) */
};

/* Same values as flashattn::DType. */
enum { FLASHATTN_DTYPE_F32 = 0, FLASHATTN_DTYPE_F16 = 1, FLASHATTN_DTYPE_BF16 = 2 };

enum { FLASHATTN_DEVICE_CPU = 0, FLASHATTN_DEVICE_CUDA = 1 };

#define FLASHATTN_C_MAX_NDIM 4

/* A view of caller-owned memory, like flashattn::TensorView. Strides are in
 * elements (as PyTorch's), not bytes; only the last dimension must be
 * contiguous. An optional argument is absent when its pointer is NULL. */
typedef struct flashattn_tensor {
  void* data;
  int32_t dtype;        /* FLASHATTN_DTYPE_* */
  int32_t device_type;  /* FLASHATTN_DEVICE_* */
  int32_t device_index; /* CUDA: the tensor's device (the call runs on the current one) */
  int32_t ndim;         /* 0 to FLASHATTN_C_MAX_NDIM */
  int64_t shape[FLASHATTN_C_MAX_NDIM];
  int64_t stride[FLASHATTN_C_MAX_NDIM];
} flashattn_tensor;

/* flash_attn_func's keyword arguments that the C ABI covers (not yet:
 * dropout, alibi, attn_probs). Start from flashattn_flash_attn_default_options():
 * a zeroed struct would mean window (0, 0), i.e. each query sees one key. */
typedef struct flashattn_flash_attn_options {
  int32_t has_softmax_scale; /* 0: softmax_scale is ignored and 1 / sqrt(d) is used */
  float softmax_scale;
  int32_t causal;       /* bottom-right: query i sees keys j <= i + sk - sq */
  int64_t window_left;  /* -1: unbounded */
  int64_t window_right; /* -1: unbounded */
  float softcap;        /* 0: off */
  void* stream;    /* CUDA: the cudaStream_t the call is enqueued on (NULL: the default stream); never synchronised */
  void* workspace; /* CUDA: split-KV scratch on the tensors' device, NULL: unsplit */
  int64_t workspace_bytes;
} flashattn_flash_attn_options;

FLASHATTN_C_EXPORT int flashattn_c_api_version(void);

/* No softmax scale, not causal, window (-1, -1), no softcap, default stream, no workspace. */
FLASHATTN_C_EXPORT flashattn_flash_attn_options flashattn_flash_attn_default_options(void);

/* flashattn::flash_attn(q, k, v, {out, softmax_lse}, options). softmax_lse
 * may be NULL; options NULL means the defaults. Returns FLASHATTN_OK, or
 * another status with the error's message copied into `message` (truncated
 * to message_bytes - 1 characters and always NUL-terminated; NULL or 0 bytes:
 * not copied). On success `message` holds "". A bad argument is reported
 * before anything is written. */
FLASHATTN_C_EXPORT int flashattn_flash_attn(const flashattn_tensor* q, const flashattn_tensor* k,
                                            const flashattn_tensor* v, const flashattn_tensor* out,
                                            const flashattn_tensor* softmax_lse,
                                            const flashattn_flash_attn_options* options, char* message,
                                            size_t message_bytes);

/* flashattn::flash_attn_workspace_bytes with the same arguments, into
 * *workspace_bytes (0: the call does not split). Nothing is read or written
 * through the tensors' data pointers. */
FLASHATTN_C_EXPORT int flashattn_flash_attn_workspace_bytes(const flashattn_tensor* q, const flashattn_tensor* k,
                                                            const flashattn_tensor* v, const flashattn_tensor* out,
                                                            const flashattn_tensor* softmax_lse,
                                                            const flashattn_flash_attn_options* options,
                                                            int64_t* workspace_bytes, char* message,
                                                            size_t message_bytes);

#ifdef __cplusplus
}
#endif

#endif /* FLASHATTN_C_API_H */
