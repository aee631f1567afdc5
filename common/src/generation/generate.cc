#include "tandem/generate.h"

#include <algorithm>
#include <chrono>
#include <functional>
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

// The model's own stop ids (config.json + generation_config.json) plus
// `eos_id` when >= 0: what generation from token ids alone stops at.
TokenRules RulesWithEos(const ModelConfig& config, const GenerationConfig& generation,
                        int32_t eos_id) {
  TokenRules rules = ResolveTokenRules(config, generation, nullptr);
  if (eos_id >= 0 && !rules.IsStop(eos_id)) {
    rules.stop_ids.insert(std::upper_bound(rules.stop_ids.begin(), rules.stop_ids.end(), eos_id),
                          eos_id);
  }
  return rules;
}

// Computes the logits [V] (fp32) of the last of `ids`, fed at `position`.
using StepFn = std::function<absl::StatusOr<at::Tensor>(const std::vector<int32_t>& ids,
                                                        int64_t position)>;

absl::Status CheckRequest(const ModelConfig& c, const std::vector<int32_t>& prompt_ids,
                          const GenerateParams& params) {
  if (prompt_ids.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  if (params.max_new_tokens < 0) return absl::InvalidArgumentError("max_new_tokens must be >= 0");
  TANDEM_RETURN_IF_ERROR(params.sampling.Validate());
  const int64_t capacity = static_cast<int64_t>(prompt_ids.size()) + params.max_new_tokens;
  if (capacity > c.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", prompt_ids.size(), " tokens) + max_new_tokens (", params.max_new_tokens,
        ") exceeds the model's context of ", c.max_position_embeddings));
  }
  return absl::OkStatus();
}

// The decode loop shared by both execution paths: prefill the prompt as one
// batch, then one token at a time.
absl::StatusOr<GenerateStats> Loop(const Tokenizer* tokenizer,
                                   const std::vector<int32_t>& prompt_ids,
                                   const GenerateParams& params, const TokenRules& rules,
                                   const TokenCallback& on_token, const StepFn& step) {
  GenerateStats stats;
  stats.prompt_tokens = static_cast<int64_t>(prompt_ids.size());
  if (params.max_new_tokens == 0) return stats;
  SamplingParams sampling = params.sampling;
  if (sampling.vocab_limit == 0) sampling.vocab_limit = rules.vocab_limit;
  Sampler sampler(sampling);
  std::optional<StreamDecoder> decoder;
  if (tokenizer != nullptr) decoder.emplace(*tokenizer);

  const Clock::time_point start = Clock::now();
  std::vector<int32_t> ids = prompt_ids;
  int64_t position = 0;
  for (int32_t step_index = 0; step_index < params.max_new_tokens; ++step_index) {
    TANDEM_ASSIGN_OR_RETURN(at::Tensor logits, step(ids, position));
    position += static_cast<int64_t>(ids.size());
    GeneratedToken token;
    TANDEM_ASSIGN_OR_RETURN(token.id, sampler.Sample(logits, &token.probability));
    if (step_index == 0) stats.prefill_seconds = SecondsSince(start);
    if (params.stop_at_eos && rules.IsStop(token.id)) break;
    if (decoder) {
      TANDEM_ASSIGN_OR_RETURN(token.text, decoder->Push(token.id));
      stats.text += token.text;
    }
    stats.ids.push_back(token.id);
    ++stats.generated_tokens;
    if (on_token && !on_token(token)) break;
    ids.assign(1, token.id);
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

absl::StatusOr<GenerateStats> Generate(const Model& model, const Tokenizer* tokenizer,
                                       const std::vector<int32_t>& prompt_ids,
                                       const GenerateParams& params, const TokenRules& rules,
                                       const TokenCallback& on_token) {
  const ModelConfig& c = model.config();
  if (model.layer_begin() != 0 || model.layer_end() != c.num_hidden_layers) {
    return absl::FailedPreconditionError("GenerateFull needs every layer loaded");
  }
  TANDEM_RETURN_IF_ERROR(CheckRequest(c, prompt_ids, params));
  at::InferenceMode inference;
  const int64_t capacity = static_cast<int64_t>(prompt_ids.size()) + params.max_new_tokens;
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<KVCache> cache, model.NewCache(capacity));
  return Loop(tokenizer, prompt_ids, params, rules, on_token,
              [&](const std::vector<int32_t>& ids,
                  int64_t position) -> absl::StatusOr<at::Tensor> {
                const int64_t rows = static_cast<int64_t>(ids.size());
                at::Tensor t = at::empty({rows}, at::kLong);
                int64_t* data = t.data_ptr<int64_t>();
                for (int64_t i = 0; i < rows; ++i) data[i] = ids[i];
                TANDEM_ASSIGN_OR_RETURN(at::Tensor hidden, model.Embed(t));
                TANDEM_ASSIGN_OR_RETURN(
                    hidden, model.ForwardLayers(0, c.num_hidden_layers, hidden,
                                                at::arange(position, position + rows, at::kLong),
                                                cache.get()));
                return model.Logits(hidden[rows - 1]);
              });
}

absl::StatusOr<GenerateStats> GenerateFast(const FastDecoder& decoder, const Tokenizer* tokenizer,
                                           const std::vector<int32_t>& prompt_ids,
                                           const GenerateParams& params, const TokenRules& rules,
                                           ThreadPool* pool, const TokenCallback& on_token) {
  const ModelConfig& c = decoder.config();
  if (decoder.layer_begin() != 0 || decoder.layer_end() != c.num_hidden_layers ||
      !decoder.options().load_embedding || !decoder.options().load_head) {
    return absl::FailedPreconditionError("GenerateFull needs every layer, embedding and head");
  }
  TANDEM_RETURN_IF_ERROR(CheckRequest(c, prompt_ids, params));
  at::InferenceMode inference;
  const int64_t capacity = static_cast<int64_t>(prompt_ids.size()) + params.max_new_tokens;
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<KVCache> cache, decoder.NewCache(capacity));
  // Preallocated once: the workspace (prefill chunks of 8 rows), the hidden
  // rows and the logits the sampler reads.
  std::unique_ptr<DecodeWorkspace> workspace = decoder.NewWorkspace(8, pool);
  std::vector<float> hidden(prompt_ids.size() * c.hidden_size);
  at::Tensor logits = at::empty({c.vocab_size}, at::kFloat);
  return Loop(tokenizer, prompt_ids, params, rules, on_token,
              [&](const std::vector<int32_t>& ids,
                  int64_t position) -> absl::StatusOr<at::Tensor> {
                const int64_t rows = static_cast<int64_t>(ids.size());
                TANDEM_RETURN_IF_ERROR(decoder.Embed(ids, hidden.data()));
                TANDEM_RETURN_IF_ERROR(decoder.ForwardLayers(0, c.num_hidden_layers,
                                                             hidden.data(), rows, position,
                                                             cache.get(), workspace.get()));
                TANDEM_RETURN_IF_ERROR(decoder.Logits(hidden.data() + (rows - 1) * c.hidden_size,
                                                      1, logits.data_ptr<float>(),
                                                      workspace.get()));
                return logits;
              });
}

}  // namespace

absl::StatusOr<GenerateStats> GenerateFull(const Model& model, const Tokenizer& tokenizer,
                                           const std::string& prompt,
                                           const GenerateParams& params,
                                           const TokenCallback& on_token) {
  TANDEM_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                          tokenizer.Encode(prompt, params.add_special_tokens));
  try {
    const TokenRules rules =
        ResolveTokenRules(model.config(), model.generation_config(), &tokenizer);
    return Generate(model, &tokenizer, ids, params, rules, on_token);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("GenerateFull: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<GenerateStats> GenerateFullIds(const Model& model,
                                              const std::vector<int32_t>& prompt_ids,
                                              const GenerateParams& params, int32_t eos_id,
                                              const TokenCallback& on_token) {
  try {
    return Generate(model, nullptr, prompt_ids, params,
                    RulesWithEos(model.config(), model.generation_config(), eos_id), on_token);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("GenerateFullIds: ", e.what_without_backtrace()));
  }
}

}  // namespace tandem

namespace tandem {

absl::StatusOr<GenerateStats> GenerateFull(const FastDecoder& decoder, const Tokenizer& tokenizer,
                                           const std::string& prompt,
                                           const GenerateParams& params, ThreadPool* pool,
                                           const TokenCallback& on_token) {
  TANDEM_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                          tokenizer.Encode(prompt, params.add_special_tokens));
  try {
    const TokenRules rules =
        ResolveTokenRules(decoder.config(), decoder.generation_config(), &tokenizer);
    return GenerateFast(decoder, &tokenizer, ids, params, rules, pool, on_token);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("GenerateFull: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<GenerateStats> GenerateFullIds(const FastDecoder& decoder,
                                              const std::vector<int32_t>& prompt_ids,
                                              const GenerateParams& params, int32_t eos_id,
                                              ThreadPool* pool, const TokenCallback& on_token) {
  try {
    return GenerateFast(decoder, nullptr, prompt_ids, params,
                        RulesWithEos(decoder.config(), decoder.generation_config(), eos_id), pool,
                        on_token);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("GenerateFullIds: ", e.what_without_backtrace()));
  }
}

}  // namespace tandem
