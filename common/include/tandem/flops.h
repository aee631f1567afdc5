// FLOPs of the decoder, counted from the shapes — what the benchmark suite and
// the cloud-only server report as compute per token. Convention: 2 FLOPs per
// multiply-add of every matrix product (q/k/v/o projections, the three SwiGLU
// products, the LM head, and attention's QK^T and PV against the cache). Norms,
// rotary embedding, softmax, activations and biases are not counted (they are
// O(D) per row, under 1% here). Sliding-window attention counts the window.
//
// Thread-safety: pure functions.
#ifndef TANDEM_FLOPS_H_
#define TANDEM_FLOPS_H_

#include <cstdint>

#include "tandem/model_config.h"

namespace tandem {

// One row at position `position` (0-based; it attends to position + 1 keys)
// through layers [begin, end).
double LayerFlops(const ModelConfig& config, int64_t begin, int64_t end, int64_t position);

// Rows at positions [first, first + count) through layers [begin, end) (a
// prefill chunk, or the rows a cloud step runs).
double LayerFlopsRange(const ModelConfig& config, int64_t begin, int64_t end, int64_t first,
                       int64_t count);

// The LM head for one row (D x V).
double LmHeadFlops(const ModelConfig& config);

// A whole generation with the full model: prefill of `prompt_tokens` rows (LM
// head on the last only), then one row per further token, each with the LM
// head. `generated_tokens` counts the prefill's token.
double GenerationFlops(const ModelConfig& config, int64_t prompt_tokens, int64_t generated_tokens);

}  // namespace tandem

#endif  // TANDEM_FLOPS_H_
