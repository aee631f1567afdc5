// ModelConfig <-> Hugging Face config.json.
//
// The mapping follows transformers' LlamaConfig / MistralConfig / Qwen2Config and
// the modeling code that consumes them (which biases exist, which defaults apply).
#include "tandem/model_config.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "checkpoint/json_util.h"
#include "nlohmann/json.hpp"
#include "tandem/status_macros.h"

namespace tandem {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// Sizes above this are not real models and would risk overflow downstream.
constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();

absl::Status FieldError(absl::string_view field, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: \"", field, "\" ", msg));
}

// A JSON integer that fits in int64_t.
absl::StatusOr<int64_t> ToInt64(const json& v, absl::string_view field) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return FieldError(field, absl::StrCat("is out of range: ", u));
    }
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return FieldError(field, absl::StrCat("must be an integer, got ", json_util::Abbreviate(v)));
}

// Typed access to the fields of one JSON object. `prefix` qualifies field names in
// errors ("rope_scaling.factor"). A field set to null counts as absent, as in
// transformers (`None`).
class Fields {
 public:
  Fields(const json& object, std::string prefix) : j_(object), prefix_(std::move(prefix)) {}

  const json* Find(const char* key) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool Has(const char* key) const { return Find(key) != nullptr; }
  std::string Name(const char* key) const { return prefix_ + key; }

  // Integer field; absent -> `fallback` (or an error when nullopt).
  absl::StatusOr<int64_t> Int(const char* key, std::optional<int64_t> fallback) const {
    const json* v = Find(key);
    if (v == nullptr) {
      if (fallback) return *fallback;
      return FieldError(Name(key), "is required");
    }
    return ToInt64(*v, Name(key));
  }

  // A size: integer in [1, kMaxSize].
  absl::StatusOr<int64_t> Size(const char* key, std::optional<int64_t> fallback) const {
    TANDEM_ASSIGN_OR_RETURN(int64_t v, Int(key, fallback));
    if (v <= 0) return FieldError(Name(key), absl::StrCat("must be positive, got ", v));
    if (v > kMaxSize) return FieldError(Name(key), absl::StrCat("is too large: ", v));
    return v;
  }

  absl::StatusOr<double> Double(const char* key, std::optional<double> fallback) const {
    const json* v = Find(key);
    if (v == nullptr) {
      if (fallback) return *fallback;
      return FieldError(Name(key), "is required");
    }
    if (!v->is_number()) {
      return FieldError(Name(key),
                        absl::StrCat("must be a number, got ", json_util::Abbreviate(*v)));
    }
    double d = v->get<double>();
    if (!std::isfinite(d)) return FieldError(Name(key), "must be finite");
    return d;
  }

  absl::StatusOr<double> PositiveDouble(const char* key, std::optional<double> fallback) const {
    TANDEM_ASSIGN_OR_RETURN(double d, Double(key, fallback));
    if (!(d > 0)) return FieldError(Name(key), absl::StrCat("must be positive, got ", d));
    return d;
  }

  absl::StatusOr<bool> Bool(const char* key, bool fallback) const {
    const json* v = Find(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) {
      return FieldError(Name(key),
                        absl::StrCat("must be true or false, got ", json_util::Abbreviate(*v)));
    }
    return v->get<bool>();
  }

  absl::StatusOr<std::optional<std::string>> String(const char* key) const {
    const json* v = Find(key);
    if (v == nullptr) return std::optional<std::string>();
    if (!v->is_string()) {
      return FieldError(Name(key),
                        absl::StrCat("must be a string, got ", json_util::Abbreviate(*v)));
    }
    return std::optional<std::string>(v->get<std::string>());
  }

 private:
  const json& j_;
  std::string prefix_;
};

// model_type -> the class transformers instantiates for it.
const char* ArchitectureFor(const std::string& model_type) {
  if (model_type == "mistral") return "MistralForCausalLM";
  if (model_type == "qwen2") return "Qwen2ForCausalLM";
  return "LlamaForCausalLM";
}

absl::StatusOr<std::string> ModelType(const Fields& f, const json& j) {
  TANDEM_ASSIGN_OR_RETURN(std::optional<std::string> type, f.String("model_type"));
  if (!type) {
    // Some early Llama conversions lack model_type; trust the architecture only
    // when it is unambiguous.
    auto arch = j.find("architectures");
    if (arch != j.end() && arch->is_array()) {
      for (const json& a : *arch) {
        if (a.is_string() && a.get_ref<const std::string&>() == "LlamaForCausalLM") {
          return std::string("llama");
        }
      }
    }
    return FieldError("model_type",
                      "is missing (and \"architectures\" does not name LlamaForCausalLM)");
  }
  if (*type != "llama" && *type != "mistral" && *type != "qwen2") {
    return FieldError("model_type", absl::StrCat("\"", *type,
                                                 "\" is not supported (supported: llama, "
                                                 "mistral, qwen2)"));
  }
  return *type;
}

absl::StatusOr<RopeScaling> ParseRopeScaling(const json& rs, const char* field) {
  RopeScaling out;
  if (rs.is_null()) return out;
  if (!rs.is_object()) {
    return FieldError(field,
                      absl::StrCat("must be an object or null, got ", json_util::Abbreviate(rs)));
  }
  Fields f(rs, absl::StrCat(field, "."));
  // "rope_type" is current; "type" the legacy spelling.
  TANDEM_ASSIGN_OR_RETURN(std::optional<std::string> type, f.String("rope_type"));
  const char* type_field = "rope_type";
  if (!type) {
    TANDEM_ASSIGN_OR_RETURN(type, f.String("type"));
    type_field = "type";
  }
  if (!type) return FieldError(f.Name("rope_type"), "is required");
  if (*type == "default") return out;
  if (*type == "linear") {
    out.type = "linear";
    TANDEM_ASSIGN_OR_RETURN(out.factor, f.PositiveDouble("factor", std::nullopt));
    return out;
  }
  if (*type == "llama3") {
    out.type = "llama3";
    TANDEM_ASSIGN_OR_RETURN(out.factor, f.PositiveDouble("factor", std::nullopt));
    TANDEM_ASSIGN_OR_RETURN(out.low_freq_factor, f.PositiveDouble("low_freq_factor", std::nullopt));
    TANDEM_ASSIGN_OR_RETURN(out.high_freq_factor,
                            f.PositiveDouble("high_freq_factor", std::nullopt));
    if (!(out.high_freq_factor > out.low_freq_factor)) {
      return FieldError(f.Name("high_freq_factor"), "must be greater than low_freq_factor");
    }
    TANDEM_ASSIGN_OR_RETURN(out.original_max_position_embeddings,
                            f.Size("original_max_position_embeddings", std::nullopt));
    return out;
  }
  return FieldError(f.Name(type_field),
                    absl::StrCat("\"", *type, "\" is not supported (supported: linear, llama3)"));
}

void AppendField(std::string* out, const char* key, absl::string_view value) {
  absl::StrAppend(out, key, "=", value, ";");
}
std::string DoubleBits(double d) {
  uint64_t bits;
  static_assert(sizeof(bits) == sizeof(d));
  std::memcpy(&bits, &d, sizeof(d));
  return absl::StrFormat("%016x", bits);
}

}  // namespace

bool operator==(const RopeScaling& a, const RopeScaling& b) {
  return a.type == b.type && a.factor == b.factor && a.low_freq_factor == b.low_freq_factor &&
         a.high_freq_factor == b.high_freq_factor &&
         a.original_max_position_embeddings == b.original_max_position_embeddings;
}

bool operator==(const ModelConfig& a, const ModelConfig& b) {
  return a.model_type == b.model_type && a.vocab_size == b.vocab_size &&
         a.hidden_size == b.hidden_size && a.intermediate_size == b.intermediate_size &&
         a.num_hidden_layers == b.num_hidden_layers &&
         a.num_attention_heads == b.num_attention_heads &&
         a.num_key_value_heads == b.num_key_value_heads && a.head_dim == b.head_dim &&
         a.max_position_embeddings == b.max_position_embeddings && a.rope_theta == b.rope_theta &&
         a.rms_norm_eps == b.rms_norm_eps && a.rope_scaling == b.rope_scaling &&
         a.tie_word_embeddings == b.tie_word_embeddings && a.attention_bias == b.attention_bias &&
         a.attention_output_bias == b.attention_output_bias && a.mlp_bias == b.mlp_bias &&
         a.sliding_window == b.sliding_window && a.bos_token_id == b.bos_token_id &&
         a.eos_token_ids == b.eos_token_ids && a.torch_dtype == b.torch_dtype;
}

absl::StatusOr<ModelConfig> ModelConfig::FromJson(const std::string& json_text) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config.json is not valid JSON: ", e.what()));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json must be a JSON object, got ", j.type_name()));
  }
  try {
    Fields f(j, "");
    ModelConfig c;
    TANDEM_ASSIGN_OR_RETURN(c.model_type, ModelType(f, j));
    const bool is_llama = c.model_type == "llama";
    const bool is_mistral = c.model_type == "mistral";
    const bool is_qwen2 = c.model_type == "qwen2";

    TANDEM_ASSIGN_OR_RETURN(std::optional<std::string> act, f.String("hidden_act"));
    if (act && *act != "silu") {
      return FieldError("hidden_act", absl::StrCat("\"", *act, "\" is not supported (only silu)"));
    }

    TANDEM_ASSIGN_OR_RETURN(c.vocab_size, f.Size("vocab_size", std::nullopt));
    TANDEM_ASSIGN_OR_RETURN(c.hidden_size, f.Size("hidden_size", std::nullopt));
    TANDEM_ASSIGN_OR_RETURN(c.intermediate_size, f.Size("intermediate_size", std::nullopt));
    TANDEM_ASSIGN_OR_RETURN(c.num_hidden_layers, f.Size("num_hidden_layers", std::nullopt));
    TANDEM_ASSIGN_OR_RETURN(c.num_attention_heads, f.Size("num_attention_heads", std::nullopt));
    TANDEM_ASSIGN_OR_RETURN(c.num_key_value_heads,
                            f.Size("num_key_value_heads", c.num_attention_heads));
    if (c.num_attention_heads % c.num_key_value_heads != 0) {
      return FieldError("num_key_value_heads",
                        absl::StrCat(c.num_key_value_heads, " does not divide ",
                                     "num_attention_heads ", c.num_attention_heads));
    }
    if (f.Has("head_dim")) {
      TANDEM_ASSIGN_OR_RETURN(c.head_dim, f.Size("head_dim", std::nullopt));
    } else {
      if (c.hidden_size % c.num_attention_heads != 0) {
        return FieldError("num_attention_heads",
                          absl::StrCat(c.num_attention_heads, " does not divide hidden_size ",
                                       c.hidden_size, " (and no head_dim is given)"));
      }
      c.head_dim = c.hidden_size / c.num_attention_heads;
    }
    if (c.head_dim % 2 != 0) {
      return FieldError("head_dim",
                        absl::StrCat("must be even for rotary embeddings, got ", c.head_dim));
    }

    // transformers' defaults per architecture.
    const int64_t default_max_pos = is_llama ? 2048 : is_mistral ? 4096 * 32 : 32768;
    TANDEM_ASSIGN_OR_RETURN(c.max_position_embeddings,
                            f.Size("max_position_embeddings", default_max_pos));
    TANDEM_ASSIGN_OR_RETURN(c.rms_norm_eps, f.PositiveDouble("rms_norm_eps", 1e-6));

    // rope_theta / rope_scaling; transformers v5 folds both into rope_parameters.
    const json* rope_params = f.Find("rope_parameters");
    if (rope_params != nullptr && !rope_params->is_object()) {
      return FieldError("rope_parameters", "must be an object");
    }
    std::optional<double> theta_fallback = 10000.0;
    if (rope_params != nullptr && !f.Has("rope_theta")) {
      Fields rp(*rope_params, "rope_parameters.");
      TANDEM_ASSIGN_OR_RETURN(double t, rp.PositiveDouble("rope_theta", 10000.0));
      theta_fallback = t;
    }
    TANDEM_ASSIGN_OR_RETURN(c.rope_theta, f.PositiveDouble("rope_theta", theta_fallback));
    if (const json* rs = f.Find("rope_scaling")) {
      TANDEM_ASSIGN_OR_RETURN(c.rope_scaling, ParseRopeScaling(*rs, "rope_scaling"));
    } else if (rope_params != nullptr) {
      TANDEM_ASSIGN_OR_RETURN(c.rope_scaling, ParseRopeScaling(*rope_params, "rope_parameters"));
    }

    TANDEM_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", false));

    if (is_llama) {
      // LlamaAttention: bias=config.attention_bias on q, k, v and o.
      TANDEM_ASSIGN_OR_RETURN(c.attention_bias, f.Bool("attention_bias", false));
      c.attention_output_bias = c.attention_bias;
      TANDEM_ASSIGN_OR_RETURN(c.mlp_bias, f.Bool("mlp_bias", false));
    } else if (is_qwen2) {
      // Qwen2Attention: q, k, v always biased, o never; the MLP has no bias.
      c.attention_bias = true;
      c.attention_output_bias = false;
      c.mlp_bias = false;
    } else {
      // MistralAttention / MistralMLP: no biases at all.
      c.attention_bias = c.attention_output_bias = c.mlp_bias = false;
    }

    if (is_mistral) {
      TANDEM_ASSIGN_OR_RETURN(c.sliding_window, f.Int("sliding_window", 0));
      if (c.sliding_window < 0) {
        return FieldError("sliding_window", "must not be negative");
      }
    } else if (is_qwen2) {
      TANDEM_ASSIGN_OR_RETURN(bool use_sw, f.Bool("use_sliding_window", false));
      if (use_sw) {
        // transformers applies the window to layers >= max_window_layers only.
        TANDEM_ASSIGN_OR_RETURN(int64_t max_window_layers, f.Int("max_window_layers", 28));
        if (max_window_layers <= 0) {
          TANDEM_ASSIGN_OR_RETURN(c.sliding_window, f.Size("sliding_window", 4096));
        } else if (max_window_layers < c.num_hidden_layers) {
          return FieldError("max_window_layers",
                            absl::StrCat(max_window_layers,
                                         ": a sliding window on only some layers is not "
                                         "supported"));
        }  // else: no layer reaches max_window_layers, so no window.
      }
    }

    TANDEM_ASSIGN_OR_RETURN(c.bos_token_id, f.Int("bos_token_id", -1));
    if (const json* eos = f.Find("eos_token_id")) {
      if (eos->is_array()) {
        for (const json& e : *eos) {
          TANDEM_ASSIGN_OR_RETURN(int64_t id, ToInt64(e, "eos_token_id"));
          c.eos_token_ids.push_back(id);
        }
      } else {
        TANDEM_ASSIGN_OR_RETURN(int64_t id, f.Int("eos_token_id", std::nullopt));
        c.eos_token_ids.push_back(id);
      }
    }

    // transformers >= 4.56 writes "dtype" instead of "torch_dtype".
    TANDEM_ASSIGN_OR_RETURN(std::optional<std::string> dtype, f.String("torch_dtype"));
    if (!dtype) {
      TANDEM_ASSIGN_OR_RETURN(dtype, f.String("dtype"));
    }
    if (dtype) c.torch_dtype = *dtype;
    return c;
  } catch (const json::exception& e) {
    // Not expected: every access above checks types first.
    return absl::InternalError(absl::StrCat("config.json: ", e.what()));
  }
}

absl::StatusOr<ModelConfig> ModelConfig::FromFile(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(std::string text, json_util::ReadFileToString(path));
  absl::StatusOr<ModelConfig> config = FromJson(text);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat("'", path, "': ", config.status().message()));
  }
  return config;
}

std::string ModelConfig::ToJson() const {
  ordered_json j;
  j["architectures"] = {ArchitectureFor(model_type)};
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  if (rope_scaling.type == "linear") {
    // "type" + "factor" only: readable by old transformers as well as new.
    j["rope_scaling"] = {{"type", "linear"}, {"factor", rope_scaling.factor}};
  } else if (rope_scaling.type == "llama3") {
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", rope_scaling.factor},
        {"low_freq_factor", rope_scaling.low_freq_factor},
        {"high_freq_factor", rope_scaling.high_freq_factor},
        {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["tie_word_embeddings"] = tie_word_embeddings;
  if (model_type == "llama") {
    j["attention_bias"] = attention_bias;
    j["mlp_bias"] = mlp_bias;
  } else if (model_type == "mistral") {
    j["sliding_window"] = sliding_window > 0 ? ordered_json(sliding_window) : ordered_json();
  } else if (model_type == "qwen2") {
    j["use_sliding_window"] = sliding_window > 0;
    j["sliding_window"] = sliding_window > 0 ? ordered_json(sliding_window) : ordered_json();
    j["max_window_layers"] = sliding_window > 0 ? 0 : num_hidden_layers;
  }
  j["bos_token_id"] = bos_token_id >= 0 ? ordered_json(bos_token_id) : ordered_json();
  if (eos_token_ids.empty()) {
    j["eos_token_id"] = nullptr;
  } else if (eos_token_ids.size() == 1) {
    j["eos_token_id"] = eos_token_ids[0];
  } else {
    j["eos_token_id"] = eos_token_ids;
  }
  j["torch_dtype"] = torch_dtype;
  j["use_cache"] = true;
  // Names or dtypes are ASCII in practice; never throw on odd bytes.
  return j.dump(2, ' ', false, ordered_json::error_handler_t::replace) + "\n";
}

uint64_t ModelConfig::Fingerprint() const {
  // Canonical text of the fields that change what the network computes. Not
  // torch_dtype (storage only) nor token ids (tokenizer matters, not the net).
  // Version tag first so a future change of this scheme changes every hash.
  std::string s = "tandem.ModelConfig.v1;";
  AppendField(&s, "model_type", model_type);
  AppendField(&s, "vocab_size", absl::StrCat(vocab_size));
  AppendField(&s, "hidden_size", absl::StrCat(hidden_size));
  AppendField(&s, "intermediate_size", absl::StrCat(intermediate_size));
  AppendField(&s, "num_hidden_layers", absl::StrCat(num_hidden_layers));
  AppendField(&s, "num_attention_heads", absl::StrCat(num_attention_heads));
  AppendField(&s, "num_key_value_heads", absl::StrCat(num_key_value_heads));
  AppendField(&s, "head_dim", absl::StrCat(head_dim));
  AppendField(&s, "max_position_embeddings", absl::StrCat(max_position_embeddings));
  AppendField(&s, "rope_theta", DoubleBits(rope_theta));
  AppendField(&s, "rms_norm_eps", DoubleBits(rms_norm_eps));
  AppendField(&s, "rope_scaling.type", rope_scaling.type);
  if (!rope_scaling.type.empty()) {
    AppendField(&s, "rope_scaling.factor", DoubleBits(rope_scaling.factor));
  }
  if (rope_scaling.type == "llama3") {
    AppendField(&s, "rope_scaling.low_freq_factor", DoubleBits(rope_scaling.low_freq_factor));
    AppendField(&s, "rope_scaling.high_freq_factor", DoubleBits(rope_scaling.high_freq_factor));
    AppendField(&s, "rope_scaling.original_max_position_embeddings",
                absl::StrCat(rope_scaling.original_max_position_embeddings));
  }
  AppendField(&s, "tie_word_embeddings", tie_word_embeddings ? "1" : "0");
  AppendField(&s, "attention_bias", attention_bias ? "1" : "0");
  AppendField(&s, "attention_output_bias", attention_output_bias ? "1" : "0");
  AppendField(&s, "mlp_bias", mlp_bias ? "1" : "0");
  AppendField(&s, "sliding_window", absl::StrCat(sliding_window));

  // FNV-1a, 64-bit.
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace tandem
