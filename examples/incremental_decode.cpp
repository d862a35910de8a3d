// Incremental decoding with a paged KV cache.
//
// A tiny decoder (random weights, fixed seed; 2 layers of GQA attention with
// rotary embeddings and a residual) generates tokens one step at a time for
// a batch of 3 sequences with different prompt lengths. Keys and values live
// in a PagedKVCache of 4-token blocks, so every sequence spans many blocks;
// flash_attn_with_kvcache appends each step's k / v in place and attends
// over the whole prefix. Midway, sequence 0 is forked (beam-search style):
// the branch shares the parent's blocks and continues with the runner-up
// token, and the cache copies the partly filled last block on the next write.
//
// Check: at every step and layer, the paged attention output equals full
// causal attention recomputed with flash_attn over contiguous buffers holding
// every (rotated) key and value so far, i.e. GPT-2's `layer_past` pattern,
// where beam search copies whole buffers. Exits 1 if any error exceeds 1e-5
// relative to the output's scale.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <flashattn/flash_attn_kvcache.hpp>
#include <flashattn/flashattn.hpp>
#include <initializer_list>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

using flashattn::DType;
using flashattn::PagedKVCache;
using flashattn::SequenceId;
using flashattn::TensorView;

constexpr std::int64_t kModel = 64, kHeads = 4, kHeadsKv = 2, kHeadDim = 16, kLayers = 2, kVocab = 97;
constexpr std::int64_t kBlockSize = 4, kNumBlocks = 64, kNewTokens = 24;
constexpr std::int64_t kForkStep = 10;      // sequence 0 then holds 15 tokens: its last block is partly filled
constexpr std::int64_t kMaxPositions = 64;  // rotary table rows
constexpr double kTolerance = 1e-5;

// Row-major (rows, cols) fp32.
struct Matrix {
  std::int64_t rows = 0, cols = 0;
  std::vector<float> data;
  Matrix(std::int64_t r, std::int64_t c) : rows(r), cols(c), data(static_cast<std::size_t>(r * c)) {}
  float* row(std::int64_t i) { return data.data() + i * cols; }
  const float* row(std::int64_t i) const { return data.data() + i * cols; }
};

Matrix random_matrix(std::mt19937& rng, std::int64_t rows, std::int64_t cols) {
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(rows)));
  Matrix m(rows, cols);
  for (float& x : m.data) x = normal(rng);
  return m;
}

Matrix matmul(const Matrix& x, const Matrix& w) {  // (n, in) x (in, out)
  Matrix y(x.rows, w.cols);
  for (std::int64_t i = 0; i < x.rows; ++i)
    for (std::int64_t k = 0; k < x.cols; ++k)
      for (std::int64_t j = 0; j < w.cols; ++j) y.row(i)[j] += x.row(i)[k] * w.row(k)[j];
  return y;
}

Matrix rms_normalized(const Matrix& x) {
  Matrix y = x;
  for (std::int64_t i = 0; i < x.rows; ++i) {
    double sum = 0;
    for (std::int64_t j = 0; j < x.cols; ++j) sum += x.row(i)[j] * x.row(i)[j];
    const float scale = static_cast<float>(1.0 / std::sqrt(sum / x.cols + 1e-6));
    for (std::int64_t j = 0; j < x.cols; ++j) y.row(i)[j] *= scale;
  }
  return y;
}

TensorView view(const Matrix& m, std::initializer_list<std::int64_t> shape) {
  return TensorView::contiguous(m.data.data(), DType::f32, shape);
}

struct Layer {
  Matrix wq, wk, wv, wo;  // (model, heads * dim), (model, heads_kv * dim) x 2, (heads * dim, model)
};

struct Model {
  Matrix embedding;    // (vocab, model)
  Matrix unembedding;  // (model, vocab): hidden state -> logits
  std::vector<Layer> layers;
  Matrix rotary_cos, rotary_sin;  // (positions, head_dim / 2): GPT-NeoX rotary, base 10000

  explicit Model(std::mt19937& rng)
      : embedding(random_matrix(rng, kVocab, kModel)),
        unembedding(random_matrix(rng, kModel, kVocab)),
        rotary_cos(kMaxPositions, kHeadDim / 2),
        rotary_sin(kMaxPositions, kHeadDim / 2) {
    for (std::int64_t l = 0; l < kLayers; ++l) {
      layers.push_back({random_matrix(rng, kModel, kHeads * kHeadDim), random_matrix(rng, kModel, kHeadsKv * kHeadDim),
                        random_matrix(rng, kModel, kHeadsKv * kHeadDim),
                        random_matrix(rng, kHeads * kHeadDim, kModel)});
    }
    for (std::int64_t p = 0; p < kMaxPositions; ++p)
      for (std::int64_t c = 0; c < kHeadDim / 2; ++c) {
        const double angle = static_cast<double>(p) * std::pow(10000.0, -2.0 * static_cast<double>(c) / kHeadDim);
        rotary_cos.row(p)[c] = static_cast<float>(std::cos(angle));
        rotary_sin.row(p)[c] = static_cast<float>(std::sin(angle));
      }
  }

  // GPT-NeoX rotary of one head row at `position`, as the kernel applies it (fp32).
  void rotate(float* x, std::int64_t position) const {
    const float* cos = rotary_cos.row(position);
    const float* sin = rotary_sin.row(position);
    for (std::int64_t c = 0; c < kHeadDim / 2; ++c) {
      const float a = x[c], b = x[c + kHeadDim / 2];
      x[c] = a * cos[c] - b * sin[c];
      x[c + kHeadDim / 2] = b * cos[c] + a * sin[c];
    }
  }
};

// The reference's cache of one sequence and layer: every rotated key and
// every value so far, contiguous, (length, heads_kv, head_dim) each.
struct LayerPast {
  std::vector<float> k, v;
};

struct Sequence {
  SequenceId id;                // in the paged cache
  std::vector<LayerPast> past;  // the contiguous reference, per layer
  std::vector<int> tokens;      // prompt + generated
  int next = 0;                 // token to feed at the next step
  int runner_up = 0;            // second-best next token (for the fork)
};

// Full causal attention of the new rows of one sequence over its whole
// prefix, recomputed from the contiguous buffers (after appending the new
// rotated keys and values to them): the paged output must match it.
double check_against_full_attention(const Model& model, LayerPast& past, std::int64_t cached, const Matrix& q,
                                    const Matrix& k, const Matrix& v, const Matrix& out, std::int64_t first_row,
                                    std::int64_t n) {
  Matrix q_rotated(n, kHeads * kHeadDim);
  for (std::int64_t t = 0; t < n; ++t) {
    std::copy(q.row(first_row + t), q.row(first_row + t) + q.cols, q_rotated.row(t));
    for (std::int64_t h = 0; h < kHeads; ++h) model.rotate(q_rotated.row(t) + h * kHeadDim, cached + t);
    std::vector<float> k_row(k.row(first_row + t), k.row(first_row + t) + k.cols);
    for (std::int64_t h = 0; h < kHeadsKv; ++h) model.rotate(k_row.data() + h * kHeadDim, cached + t);
    past.k.insert(past.k.end(), k_row.begin(), k_row.end());
    past.v.insert(past.v.end(), v.row(first_row + t), v.row(first_row + t) + v.cols);
  }
  const std::int64_t length = cached + n;
  Matrix expected(n, kHeads * kHeadDim);
  flashattn::flash_attn(view(q_rotated, {1, n, kHeads, kHeadDim}),
                        TensorView::contiguous(past.k.data(), DType::f32, {1, length, kHeadsKv, kHeadDim}),
                        TensorView::contiguous(past.v.data(), DType::f32, {1, length, kHeadsKv, kHeadDim}),
                        {.out = view(expected, {1, n, kHeads, kHeadDim})}, {.causal = true});
  double max_diff = 0, scale = 0;
  for (std::int64_t t = 0; t < n; ++t)
    for (std::int64_t j = 0; j < out.cols; ++j) {
      max_diff = std::max(max_diff, static_cast<double>(std::abs(out.row(first_row + t)[j] - expected.row(t)[j])));
      scale = std::max(scale, static_cast<double>(std::abs(expected.row(t)[j])));
    }
  return max_diff / scale;
}

// One step for a batch of sequences, each getting the same number n of new
// tokens (its prompt at prefill, its next token when decoding): reserve,
// run every layer with the in-place append, commit. Returns the largest
// relative error against the contiguous reference.
double run_step(const Model& model, PagedKVCache& cache, std::vector<Sequence*> batch,
                const std::vector<std::vector<int>>& new_tokens) {
  const auto b = static_cast<std::int64_t>(batch.size());
  const auto n = static_cast<std::int64_t>(new_tokens[0].size());
  std::vector<SequenceId> ids;
  for (Sequence* s : batch) ids.push_back(s->id);
  // Room for n tokens per sequence: blocks taken, shared last blocks copied.
  PagedKVCache::Reservation step = cache.reserve(ids, n);

  Matrix x(b * n, kModel);  // (b * n, model): the new tokens' hidden states
  for (std::int64_t i = 0; i < b; ++i)
    for (std::int64_t t = 0; t < n; ++t) {
      const float* e = model.embedding.row(new_tokens[i][t]);
      std::copy(e, e + kModel, x.row(i * n + t));
    }
  double error = 0;
  for (std::int64_t l = 0; l < kLayers; ++l) {
    const Layer& layer = model.layers[l];
    const Matrix xn = rms_normalized(x);
    Matrix q = matmul(xn, layer.wq), k = matmul(xn, layer.wk), v = matmul(xn, layer.wv);
    Matrix out(b * n, kHeads * kHeadDim);
    // Appends rotated k and v at positions cache_seqlens[i] ... of each
    // sequence's pages, then attends causally over all its keys.
    flashattn::flash_attn_with_kvcache(view(q, {b, n, kHeads, kHeadDim}), cache.k_cache(l), cache.v_cache(l),
                                       {.out = view(out, {b, n, kHeads, kHeadDim})},
                                       {.k = view(k, {b, n, kHeadsKv, kHeadDim}),
                                        .v = view(v, {b, n, kHeadsKv, kHeadDim}),
                                        .rotary_cos = view(model.rotary_cos, {kMaxPositions, kHeadDim / 2}),
                                        .rotary_sin = view(model.rotary_sin, {kMaxPositions, kHeadDim / 2}),
                                        .cache_seqlens = step.cache_seqlens(),
                                        .block_table = step.block_table(),
                                        .causal = true,
                                        .rotary_interleaved = false});
    for (std::int64_t i = 0; i < b; ++i) {
      const std::int64_t cached = step.tables().seqlen(i);
      error = std::max(error, check_against_full_attention(model, batch[i]->past[l], cached, q, k, v, out, i * n, n));
    }
    const Matrix projected = matmul(out, layer.wo);
    for (std::size_t j = 0; j < x.data.size(); ++j) x.data[j] += projected.data[j];
  }
  step.commit();  // every layer holds the n new tokens: the lengths advance

  // Greedy next token from each sequence's last hidden state.
  const Matrix logits = matmul(rms_normalized(x), model.unembedding);
  for (std::int64_t i = 0; i < b; ++i) {
    const float* row = logits.row(i * n + n - 1);
    std::vector<int> order(kVocab);
    for (int w = 0; w < kVocab; ++w) order[w] = w;
    std::partial_sort(order.begin(), order.begin() + 2, order.end(), [&](int a, int c) { return row[a] > row[c]; });
    batch[i]->tokens.insert(batch[i]->tokens.end(), new_tokens[i].begin(), new_tokens[i].end());
    batch[i]->next = order[0];
    batch[i]->runner_up = order[1];
  }
  return error;
}

// "0 1 7 10": a sequence's block table.
std::string block_list(const PagedKVCache& cache, SequenceId id) {
  std::string list;
  for (std::int32_t block : cache.block_ids(id)) list += (list.empty() ? "" : " ") + std::to_string(block);
  return list;
}

// Largest difference between the pages (read back token by token) and the
// reference's contiguous rotated keys and values; infinite if the lengths differ.
double cached_kv_difference(const PagedKVCache& cache, const std::map<int, Sequence>& sequences) {
  double worst = 0;
  Matrix k(kHeadsKv, kHeadDim), v(kHeadsKv, kHeadDim);
  for (const auto& [name, s] : sequences)
    for (std::int64_t l = 0; l < kLayers; ++l) {
      if (static_cast<std::size_t>(cache.length(s.id) * kHeadsKv * kHeadDim) != s.past[l].k.size()) return INFINITY;
      for (std::int64_t p = 0; p < cache.length(s.id); ++p) {
        cache.read_token(s.id, l, p, view(k, {kHeadsKv, kHeadDim}), view(v, {kHeadsKv, kHeadDim}));
        for (std::int64_t j = 0; j < kHeadsKv * kHeadDim; ++j) {
          const std::size_t at = static_cast<std::size_t>(p * kHeadsKv * kHeadDim + j);
          worst = std::max({worst, std::abs(static_cast<double>(k.data[j]) - s.past[l].k[at]),
                            std::abs(static_cast<double>(v.data[j]) - s.past[l].v[at])});
        }
      }
    }
  return worst;
}

}  // namespace

int main() {
  std::mt19937 rng(2024);
  const Model model(rng);
  PagedKVCache cache({.num_layers = kLayers,
                      .num_blocks = kNumBlocks,
                      .block_size = kBlockSize,
                      .heads_kv = kHeadsKv,
                      .head_dim = kHeadDim,
                      .dtype = DType::f32});
  std::map<int, Sequence> sequences;  // by name: 0, 1, 2, then the fork 3
  const std::vector<std::vector<int>> prompts = {{5, 17, 42, 8, 3}, {11, 2, 90, 61, 7, 7, 33, 20, 4}, {70, 12}};

  double worst = 0;
  std::printf("step  batch  lengths          blocks used  max rel. error\n");
  auto report = [&](const std::string& step, std::int64_t b, double error) {
    std::string lengths;
    for (const auto& [name, s] : sequences) lengths += std::to_string(cache.length(s.id)) + " ";
    std::printf("%-5s %5lld  %-16s %11lld  %.2e\n", step.c_str(), static_cast<long long>(b), lengths.c_str(),
                static_cast<long long>(kNumBlocks - cache.num_free_blocks()), error);
    worst = std::max(worst, error);
  };

  // Prefill: each prompt through the cache on its own (prompt lengths differ,
  // and one call appends the same number of tokens to every sequence).
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    Sequence& s = sequences[static_cast<int>(i)];
    s.id = cache.add_sequence();
    s.past.resize(kLayers);
    report("p" + std::to_string(i), 1, run_step(model, cache, {&s}, {prompts[i]}));
  }

  // Decode: one token per sequence per step, the whole batch in one call per layer.
  for (std::int64_t step = 0; step < kNewTokens; ++step) {
    if (step == kForkStep) {
      // Beam search keeps a second hypothesis of sequence 0: the fork shares
      // all its blocks (nothing is copied now) and continues with the
      // runner-up token. The reference copies its contiguous buffers.
      Sequence& branch = sequences[3] = sequences[0];
      branch.id = cache.fork(sequences[0].id);
      branch.next = sequences[0].runner_up;
      std::printf("fork: sequence 0 (%lld tokens) -> 3; both tables: %s\n",
                  static_cast<long long>(cache.length(branch.id)), block_list(cache, branch.id).c_str());
    }
    std::vector<Sequence*> batch;
    std::vector<std::vector<int>> next;
    for (auto& [name, s] : sequences) batch.push_back(&s), next.push_back({s.next});
    report(std::to_string(step), static_cast<std::int64_t>(batch.size()), run_step(model, cache, batch, next));
    if (step == kForkStep) {  // the first write after the fork: one holder copied the shared, partly filled block
      std::printf("      copy-on-write: sequence 0: %s, sequence 3: %s\n", block_list(cache, sequences[0].id).c_str(),
                  block_list(cache, sequences[3].id).c_str());
    }
  }

  for (const auto& [name, s] : sequences) {
    std::printf("sequence %d:", name);
    for (int t : s.tokens) std::printf(" %d", t);
    std::printf("\n");
  }
  const double cache_difference = cached_kv_difference(cache, sequences);
  const bool ok = worst <= kTolerance && cache_difference <= kTolerance;
  std::printf("max relative error of attention %.2e, max difference of cached k/v %.2e (tolerance %.0e): %s\n", worst,
              cache_difference, kTolerance, ok ? "ok" : "MISMATCH");
  return ok ? 0 : 1;
}
