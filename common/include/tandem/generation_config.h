// GenerationConfig: what a checkpoint says about generating from it, read from
// a Hugging Face `generation_config.json` — its stop (EOS) ids and its default
// sampling settings — and TokenRules, the stop ids and samplable vocabulary
// every generation path (GenerateFull, the edge, the cloud) derives from a
// model and its tokenizer.
//
// Thread-compatible value types.
#ifndef TANDEM_GENERATION_CONFIG_H_
#define TANDEM_GENERATION_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tandem/model_config.h"
#include "tandem/sampling.h"

namespace tandem {

class Tokenizer;

struct GenerationConfig {
  // `eos_token_id` (one id or a list; Llama 3 Instruct lists 128001, 128008,
  // 128009). Empty when the file is absent or names none.
  std::vector<int64_t> eos_token_ids;
  // The checkpoint's default decoding, when the file sets any of do_sample,
  // temperature, top_k, top_p; nullopt otherwise. As in transformers:
  // do_sample false (its default) means greedy whatever the temperature;
  // do_sample true keeps temperature (default 1), top_p (default 1) and top_k
  // (default 50 — transformers' default, not "no limit").
  std::optional<SamplingParams> sampling;

  // Parses the text of a generation_config.json. Wrong types or negative ids
  // are InvalidArgument naming the field; unknown fields are ignored.
  static absl::StatusOr<GenerationConfig> FromJson(const std::string& json_text);
  // Reads `dir`/generation_config.json; an absent file is an empty config (not
  // an error), an unreadable or malformed one is an error naming the path.
  static absl::StatusOr<GenerationConfig> LoadDir(const std::string& dir);
};

// Which ids end a generation and which ids may be sampled, for one model and
// (optionally) its tokenizer.
struct TokenRules {
  // The union of config.json's eos_token_id (one or a list),
  // generation_config.json's eos_token_id and the tokenizer's EOS; sorted,
  // deduplicated, only ids the head can produce. Hugging Face stops at the
  // generation config's ids; taking the union also stops checkpoints that only
  // declare them in config.json (both layouts exist on the Hub).
  std::vector<int32_t> stop_ids;
  // SamplingParams::vocab_limit to use: the tokenizer's size when the LM head
  // has more rows than the tokenizer has ids (those rows can never become
  // text), else 0 (every id).
  int32_t vocab_limit = 0;
  // A sentence for the user when head and tokenizer sizes differ (empty when
  // they agree); binaries print it when they load a model.
  std::string note;

  bool IsStop(int32_t id) const;
};

// `generation` is the model's GenerationConfig (Model::generation_config());
// `tokenizer` may be null (ids only: no tokenizer EOS, no vocabulary mask).
TokenRules ResolveTokenRules(const ModelConfig& config, const GenerationConfig& generation,
                             const Tokenizer* tokenizer);

}  // namespace tandem

#endif  // TANDEM_GENERATION_CONFIG_H_
