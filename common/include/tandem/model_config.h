// ModelConfig: the architecture hyper-parameters of a Llama-family checkpoint, read
// from a Hugging Face `config.json`.
//
// Accepted `model_type`s: llama (Llama 1/2/3, TinyLlama, SmolLM), mistral, qwen2.
// Anything else is refused with an error naming the field. A config without
// model_type is read as llama when "architectures" lists LlamaForCausalLM.
// Defaults for absent fields follow transformers' config classes; a field set to
// null counts as absent. Thread-compatible value type.
#ifndef TANDEM_MODEL_CONFIG_H_
#define TANDEM_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem {

// Rotary-embedding frequency scaling (`rope_scaling` in config.json).
struct RopeScaling {
  // "" (none), "linear" or "llama3". Others ("dynamic", "yarn", ...) are refused.
  std::string type;
  double factor = 1.0;
  // llama3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

bool operator==(const RopeScaling& a, const RopeScaling& b);
inline bool operator!=(const RopeScaling& a, const RopeScaling& b) { return !(a == b); }

struct ModelConfig {
  std::string model_type = "llama";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  // Grouped-query attention: defaults to num_attention_heads when absent.
  int64_t num_key_value_heads = 0;
  // Defaults to hidden_size / num_attention_heads when absent.
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 2048;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  // q/k/v projections carry a bias (Qwen2 always; Llama when attention_bias=true).
  bool attention_bias = false;
  // Bias on the attention output projection (Llama's attention_bias also sets it
  // in HF's implementation; Qwen2 has none).
  bool attention_output_bias = false;
  // Bias on the MLP projections (Llama's mlp_bias).
  bool mlp_bias = false;
  // Mistral (and Qwen2 with use_sliding_window on every layer): attention looks
  // back at most this many positions (0 = unlimited). Qwen2 configs that window
  // only some layers (0 < max_window_layers < num_hidden_layers) are refused.
  int64_t sliding_window = 0;
  int64_t bos_token_id = -1;
  // config.json may give one id or a list.
  std::vector<int64_t> eos_token_ids;
  // Dtype the weights were saved in ("float32", "float16", "bfloat16"); informative.
  std::string torch_dtype = "float32";

  // Parses the text of a config.json. Missing required fields, non-positive
  // sizes, inconsistent heads (hidden_size, kv heads dividing heads), an
  // activation other than silu, or an unknown architecture give
  // InvalidArgument naming the field.
  static absl::StatusOr<ModelConfig> FromJson(const std::string& json_text);
  // Reads and parses `path` (a config.json file).
  static absl::StatusOr<ModelConfig> FromFile(const std::string& path);
  // Serializes to HF config.json text (with "architectures", so transformers'
  // AutoConfig / AutoModelForCausalLM read it) that FromJson reads back to an
  // equal config. Combinations config.json cannot express are written in the
  // architecture's own terms: Llama has one attention_bias flag (taken from
  // `attention_bias`), Qwen2's biases are fixed, Mistral has none.
  std::string ToJson() const;

  // Number of query heads sharing one key/value head.
  int64_t kv_group_size() const { return num_attention_heads / num_key_value_heads; }
  // Stable 64-bit hash of the architecture fields (used in model fingerprints):
  // FNV-1a over a canonical, versioned text of every field that changes what the
  // network computes. torch_dtype and the token ids are excluded, so a bf16 and an
  // f32 copy of one model share a fingerprint. Same value on every platform and
  // build; changing the scheme is a wire-format change.
  uint64_t Fingerprint() const;
};

// Field-wise equality (doubles compared exactly).
bool operator==(const ModelConfig& a, const ModelConfig& b);
inline bool operator!=(const ModelConfig& a, const ModelConfig& b) { return !(a == b); }

}  // namespace tandem

#endif  // TANDEM_MODEL_CONFIG_H_
