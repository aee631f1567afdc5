#include "tandem/generate.h"

#include <chrono>
#include <optional>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "tandem/status_macros.h"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

absl::StatusOr<GenerateStats> Generate(const Model& model, const Tokenizer* tokenizer,
                                       const std::vector<int32_t>& prompt_ids,
                                       const GenerateParams& params, int32_t eos_id,
                                       const TokenCallback& on_token) {
  const ModelConfig& c = model.config();
  if (model.layer_begin() != 0 || model.layer_end() != c.num_hidden_layers) {
    return absl::FailedPreconditionError("GenerateFull needs every layer loaded");
  }
  if (prompt_ids.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  if (params.max_new_tokens < 0) return absl::InvalidArgumentError("max_new_tokens must be >= 0");
  TANDEM_RETURN_IF_ERROR(params.sampling.Validate());
  const int64_t capacity = static_cast<int64_t>(prompt_ids.size()) + params.max_new_tokens;
  if (capacity > c.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", prompt_ids.size(), " tokens) + max_new_tokens (", params.max_new_tokens,
        ") exceeds the model's context of ", c.max_position_embeddings));
  }
  GenerateStats stats;
  stats.prompt_tokens = static_cast<int64_t>(prompt_ids.size());
  if (params.max_new_tokens == 0) return stats;

  at::InferenceMode inference;
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<KVCache> cache, model.NewCache(capacity));
  Sampler sampler(params.sampling);
  std::optional<StreamDecoder> decoder;
  if (tokenizer != nullptr) decoder.emplace(*tokenizer);

  const Clock::time_point start = Clock::now();
  at::Tensor ids = at::empty({static_cast<int64_t>(prompt_ids.size())}, at::kLong);
  for (size_t i = 0; i < prompt_ids.size(); ++i) ids[i] = prompt_ids[i];
  int64_t position = 0;
  for (int32_t step = 0; step < params.max_new_tokens; ++step) {
    const int64_t rows = ids.size(0);
    TANDEM_ASSIGN_OR_RETURN(at::Tensor hidden, model.Embed(ids));
    TANDEM_ASSIGN_OR_RETURN(
        hidden, model.ForwardLayers(0, c.num_hidden_layers, hidden,
                                    at::arange(position, position + rows, at::kLong), cache.get()));
    position += rows;
    TANDEM_ASSIGN_OR_RETURN(at::Tensor logits, model.Logits(hidden[rows - 1]));
    GeneratedToken token;
    TANDEM_ASSIGN_OR_RETURN(token.id, sampler.Sample(logits, &token.probability));
    if (step == 0) stats.prefill_seconds = SecondsSince(start);
    const bool is_eos = token.id == eos_id;
    if (is_eos && params.stop_at_eos) break;
    if (decoder) {
      TANDEM_ASSIGN_OR_RETURN(token.text, decoder->Push(token.id));
      stats.text += token.text;
    }
    stats.ids.push_back(token.id);
    ++stats.generated_tokens;
    if (on_token && !on_token(token)) break;
    ids = at::full({1}, static_cast<int64_t>(token.id), at::kLong);
  }
  if (decoder) {
    std::string rest = decoder->Flush();
    if (!rest.empty()) {
      stats.text += rest;
      if (on_token) {
        GeneratedToken tail;
        tail.id = -1;
        tail.text = rest;
        on_token(tail);
      }
    }
  }
  stats.decode_seconds = SecondsSince(start) - stats.prefill_seconds;
  return stats;
}

}  // namespace

absl::StatusOr<GenerateStats> GenerateFull(const Model& model, const Tokenizer& tokenizer,
                                           const std::string& prompt,
                                           const GenerateParams& params,
                                           const TokenCallback& on_token) {
  TANDEM_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                          tokenizer.Encode(prompt, params.add_special_tokens));
  try {
    return Generate(model, &tokenizer, ids, params, tokenizer.eos_id(), on_token);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("GenerateFull: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<GenerateStats> GenerateFullIds(const Model& model,
                                              const std::vector<int32_t>& prompt_ids,
                                              const GenerateParams& params, int32_t eos_id,
                                              const TokenCallback& on_token) {
  try {
    return Generate(model, nullptr, prompt_ids, params, eos_id, on_token);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("GenerateFullIds: ", e.what_without_backtrace()));
  }
}

}  // namespace tandem
