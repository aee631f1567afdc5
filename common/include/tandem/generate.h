// Full-model generation: the reference every collaborative mode is compared
// against ("edge-only full" in DESIGN.md). Prefills the prompt as one batch, then
// decodes one token at a time with a KV cache.
#ifndef TANDEM_GENERATE_H_
#define TANDEM_GENERATE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tandem/fast_decoder.h"
#include "tandem/model.h"
#include "tandem/sampling.h"
#include "tandem/tokenizer.h"

namespace tandem {

struct GenerateParams {
  // Tokens to generate at most (the prompt is not counted).
  int32_t max_new_tokens = 64;
  SamplingParams sampling;
  // Stop at a stop id (not reported as text): config.json's eos_token_id (one
  // or a list), generation_config.json's and the tokenizer's EOS
  // (ResolveTokenRules in generation_config.h).
  bool stop_at_eos = true;
  // Add the tokenizer's special tokens (e.g. BOS) to the prompt.
  bool add_special_tokens = true;
};

struct GeneratedToken {
  int32_t id = 0;
  // Text that became final with this token (may be empty mid-character).
  std::string text;
  // Probability of the token under the model's softmax.
  float probability = 0.0f;
};

struct GenerateStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0.0;  // includes the first token
  double decode_seconds = 0.0;   // everything after the first token
  std::vector<int32_t> ids;      // generated ids
  std::string text;              // generated text
};

// Called on the generating thread for each token; return false to stop early.
using TokenCallback = std::function<bool(const GeneratedToken&)>;

// Requires a model with every layer, the embedding and the head loaded. Errors:
// empty prompt, prompt + max_new_tokens beyond max_position_embeddings, bad
// sampling params, non-finite logits (a NaN or +inf: the model is broken).
// Ids the tokenizer cannot decode (head rows beyond its size) are never
// sampled unless params.sampling.vocab_limit says otherwise.
absl::StatusOr<GenerateStats> GenerateFull(const Model& model, const Tokenizer& tokenizer,
                                           const std::string& prompt,
                                           const GenerateParams& params,
                                           const TokenCallback& on_token = nullptr);

// The same on token ids, without a tokenizer (no text): stops at the model's
// own stop ids (config.json + generation_config.json) and at eos_id if >= 0.
absl::StatusOr<GenerateStats> GenerateFullIds(const Model& model,
                                              const std::vector<int32_t>& prompt_ids,
                                              const GenerateParams& params, int32_t eos_id,
                                              const TokenCallback& on_token = nullptr);

// The same on the edge decode path (fast_decoder.h): `decoder` must hold every
// layer, the embedding and the head. `pool` (borrowed, may be null = this
// thread only) runs its kernels; identical tokens to the Model overloads with
// WeightFormat::kF32 up to ties within 1e-4 in the logits.
absl::StatusOr<GenerateStats> GenerateFull(const FastDecoder& decoder, const Tokenizer& tokenizer,
                                           const std::string& prompt,
                                           const GenerateParams& params, ThreadPool* pool,
                                           const TokenCallback& on_token = nullptr);
absl::StatusOr<GenerateStats> GenerateFullIds(const FastDecoder& decoder,
                                              const std::vector<int32_t>& prompt_ids,
                                              const GenerateParams& params, int32_t eos_id,
                                              ThreadPool* pool,
                                              const TokenCallback& on_token = nullptr);

}  // namespace tandem

#endif  // TANDEM_GENERATE_H_
