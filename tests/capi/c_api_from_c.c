/* The C ABI used from C: compiled as C11 with -pedantic, so c_api.h is
 * checked to be plain C, and called by test_c_api.cpp. */
#include "c_api_from_c.h"

#include <math.h>

#include "flashattn/c_api.h"

/* Causal attention over two queries and two keys (b 1, h 1, d 4, f32):
 * query 0 sees key 0 only, so its output row is v's row 0 exactly. */
int c_causal_first_row_is_v0(char* message, size_t message_bytes) {
  float q[8] = {0.5f, -1.0f, 0.25f, 2.0f, 1.0f, 0.0f, -0.5f, 0.75f};
  float k[8] = {1.0f, 0.5f, -0.25f, 0.0f, -1.0f, 1.5f, 0.5f, 0.25f};
  float v[8] = {3.0f, -2.0f, 0.125f, 7.0f, 1.0f, 1.0f, -1.0f, 4.0f};
  float out[8], lse[2];
  const flashattn_tensor qt = {q, FLASHATTN_DTYPE_F32, FLASHATTN_DEVICE_CPU, 0, 4, {1, 2, 1, 4}, {8, 4, 4, 1}};
  const flashattn_tensor kt = {k, FLASHATTN_DTYPE_F32, FLASHATTN_DEVICE_CPU, 0, 4, {1, 2, 1, 4}, {8, 4, 4, 1}};
  const flashattn_tensor vt = {v, FLASHATTN_DTYPE_F32, FLASHATTN_DEVICE_CPU, 0, 4, {1, 2, 1, 4}, {8, 4, 4, 1}};
  const flashattn_tensor outt = {out, FLASHATTN_DTYPE_F32, FLASHATTN_DEVICE_CPU, 0, 4, {1, 2, 1, 4}, {8, 4, 4, 1}};
  const flashattn_tensor lset = {lse, FLASHATTN_DTYPE_F32, FLASHATTN_DEVICE_CPU, 0, 3, {1, 1, 2, 0}, {2, 2, 1, 0}};
  flashattn_flash_attn_options options = flashattn_flash_attn_default_options();
  int status, i;
  float score0 = 0.0f;
  options.causal = 1;
  status = flashattn_flash_attn(&qt, &kt, &vt, &outt, &lset, &options, message, message_bytes);
  if (status != FLASHATTN_OK) return status;
  for (i = 0; i < 4; ++i) {
    if (out[i] != v[i]) return -1;
    score0 += q[i] * k[i];
  }
  /* lse of a one-key row is its scaled score (scale 1/sqrt(4)). */
  return fabsf(lse[0] - 0.5f * score0) <= 1e-6f ? FLASHATTN_OK : -2;
}

/* A bad call from C: k has 3 heads for q's 2. */
int c_bad_heads(char* message, size_t message_bytes) {
  float buffer[24] = {0};
  const flashattn_tensor q = {buffer, FLASHATTN_DTYPE_F32, FLASHATTN_DEVICE_CPU, 0, 4, {1, 1, 2, 4}, {8, 8, 4, 1}};
  const flashattn_tensor k = {buffer, FLASHATTN_DTYPE_F32, FLASHATTN_DEVICE_CPU, 0, 4, {1, 1, 3, 4}, {12, 12, 4, 1}};
  float out[8];
  const flashattn_tensor o = {out, FLASHATTN_DTYPE_F32, FLASHATTN_DEVICE_CPU, 0, 4, {1, 1, 2, 4}, {8, 8, 4, 1}};
  return flashattn_flash_attn(&q, &k, &k, &o, NULL, NULL, message, message_bytes);
}
