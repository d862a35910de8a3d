// flashattn quick start: causal, sliding-window GQA attention on the CPU.
// Built and run by the install test (tests/install) against an installed
// flashattn found with find_package, exactly as a user would.
#include <flashattn/flashattn.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  using flashattn::DType;
  using flashattn::TensorView;
  const std::int64_t batch = 2, seqlen = 128, heads = 8, heads_kv = 2, head_dim = 64;

  // Caller-owned buffers in flash-attn's (batch, seqlen, heads, head_dim) layout.
  std::vector<float> q(batch * seqlen * heads * head_dim), k(batch * seqlen * heads_kv * head_dim);
  std::vector<float> v(k.size()), out(q.size()), lse(batch * heads * seqlen);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = std::sin(0.01f * i);
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = std::cos(0.02f * i), v[i] = std::sin(0.03f * i + 0.5f);

  auto view = [](std::vector<float>& x, std::initializer_list<std::int64_t> shape) {
    return TensorView::contiguous(x.data(), DType::f32, shape);
  };
  // Like flash_attn_func(q, k, v, causal=True, window_size=(64, 0)), keeping the log-sum-exp.
  flashattn::flash_attn(view(q, {batch, seqlen, heads, head_dim}), view(k, {batch, seqlen, heads_kv, head_dim}),
                        view(v, {batch, seqlen, heads_kv, head_dim}),
                        {.out = view(out, {batch, seqlen, heads, head_dim}), .softmax_lse = view(lse, {batch, heads, seqlen})},
                        {.causal = true, .window_size = {64, 0}});
  // Row 0 of a causal mask sees key 0 only: its output is v's first row and lse its only score.
  std::printf("out[0] = %.6f (v[0] = %.6f), lse[0] = %.6f\n", out[0], v[0], lse[0]);

  // Bad input throws flashattn::Error before anything is written.
  try {
    flashattn::flash_attn(view(q, {batch, seqlen, heads, head_dim}), view(k, {batch, seqlen, 3, head_dim}),
                          view(v, {batch, seqlen, 3, head_dim}), {.out = view(out, {batch, seqlen, heads, head_dim})});
  } catch (const flashattn::Error& e) {
    std::printf("error: %s\n", e.what());
  }
  return out[0] == v[0] ? 0 : 1;
}
