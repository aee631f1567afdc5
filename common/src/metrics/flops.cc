#include "tandem/flops.h"

#include <algorithm>

namespace tandem {
namespace {

int64_t HeadDim(const ModelConfig& c) {
  return c.head_dim > 0 ? c.head_dim : c.hidden_size / std::max<int64_t>(1, c.num_attention_heads);
}

// Everything but attention against the cache, per row and layer.
double DenseFlopsPerLayer(const ModelConfig& c) {
  const double d = static_cast<double>(c.hidden_size);
  const double hd = static_cast<double>(HeadDim(c));
  const double q = c.num_attention_heads * hd;
  const double kv = c.num_key_value_heads * hd;
  const double projections = d * q + 2 * d * kv + q * d;
  const double mlp = 3 * d * static_cast<double>(c.intermediate_size);
  return 2 * (projections + mlp);
}

double AttentionFlopsPerLayer(const ModelConfig& c, int64_t position) {
  int64_t keys = position + 1;
  if (c.sliding_window > 0) keys = std::min(keys, c.sliding_window);
  // QK^T and PV: heads * head_dim multiply-adds per key, each.
  return 2.0 * 2.0 * static_cast<double>(c.num_attention_heads * HeadDim(c)) *
         static_cast<double>(keys);
}

}  // namespace

double LayerFlops(const ModelConfig& config, int64_t begin, int64_t end, int64_t position) {
  const int64_t layers = std::max<int64_t>(0, end - begin);
  return static_cast<double>(layers) *
         (DenseFlopsPerLayer(config) + AttentionFlopsPerLayer(config, position));
}

double LayerFlopsRange(const ModelConfig& config, int64_t begin, int64_t end, int64_t first,
                       int64_t count) {
  double total = 0;
  for (int64_t p = first; p < first + count; ++p) total += LayerFlops(config, begin, end, p);
  return total;
}

double LmHeadFlops(const ModelConfig& config) {
  return 2.0 * static_cast<double>(config.hidden_size) * static_cast<double>(config.vocab_size);
}

double GenerationFlops(const ModelConfig& config, int64_t prompt_tokens, int64_t generated_tokens) {
  if (prompt_tokens <= 0 || generated_tokens <= 0) return 0;
  const int64_t layers = config.num_hidden_layers;
  // The last generated token is never fed back through the model.
  const int64_t rows = prompt_tokens + generated_tokens - 1;
  return LayerFlopsRange(config, 0, layers, 0, rows) +
         static_cast<double>(generated_tokens) * LmHeadFlops(config);
}

}  // namespace tandem
