// GenerationConfig <-> Hugging Face generation_config.json, and the token rules
// derived from a model + tokenizer.
#include "tandem/generation_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "absl/strings/str_cat.h"
#include "checkpoint/json_util.h"
#include "nlohmann/json.hpp"
#include "tandem/status_macros.h"
#include "tandem/tokenizer.h"

namespace tandem {
namespace {

using json = nlohmann::json;

constexpr char kFile[] = "generation_config.json";

absl::Status FieldError(const char* field, const std::string& msg) {
  return absl::InvalidArgumentError(absl::StrCat(kFile, ": \"", field, "\" ", msg));
}

const json* Find(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<int64_t> TokenId(const json& v, const char* field) {
  if (!v.is_number_integer()) {
    return FieldError(field, absl::StrCat("must be an integer id, got ", json_util::Abbreviate(v)));
  }
  if (v.is_number_unsigned() ? v.get<uint64_t>() > static_cast<uint64_t>(
                                                       std::numeric_limits<int32_t>::max())
                             : (v.get<int64_t>() < 0 ||
                                v.get<int64_t>() > std::numeric_limits<int32_t>::max())) {
    return FieldError(field, absl::StrCat("is not a token id: ", json_util::Abbreviate(v)));
  }
  return v.get<int64_t>();
}

absl::StatusOr<double> Number(const json& j, const char* field) {
  if (!j.is_number()) {
    return FieldError(field, absl::StrCat("must be a number, got ", json_util::Abbreviate(j)));
  }
  const double v = j.get<double>();
  if (!std::isfinite(v)) return FieldError(field, "must be finite");
  return v;
}

}  // namespace

absl::StatusOr<GenerationConfig> GenerationConfig::FromJson(const std::string& json_text) {
  TANDEM_ASSIGN_OR_RETURN(json j, json_util::Parse(json_text, kFile));
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kFile, " must be a JSON object, got ", j.type_name()));
  }
  GenerationConfig g;
  if (const json* eos = Find(j, "eos_token_id")) {
    if (eos->is_array()) {
      for (const json& e : *eos) {
        TANDEM_ASSIGN_OR_RETURN(int64_t id, TokenId(e, "eos_token_id"));
        g.eos_token_ids.push_back(id);
      }
    } else {
      TANDEM_ASSIGN_OR_RETURN(int64_t id, TokenId(*eos, "eos_token_id"));
      g.eos_token_ids.push_back(id);
    }
  }
  const json* do_sample = Find(j, "do_sample");
  const json* temperature = Find(j, "temperature");
  const json* top_k = Find(j, "top_k");
  const json* top_p = Find(j, "top_p");
  if (do_sample || temperature || top_k || top_p) {
    SamplingParams s;
    bool sample = false;
    if (do_sample) {
      if (!do_sample->is_boolean()) {
        return FieldError("do_sample", absl::StrCat("must be true or false, got ",
                                                    json_util::Abbreviate(*do_sample)));
      }
      sample = do_sample->get<bool>();
    }
    double t = 1.0, p = 1.0;
    int64_t k = 50;
    if (temperature) {
      TANDEM_ASSIGN_OR_RETURN(t, Number(*temperature, "temperature"));
      if (t < 0) return FieldError("temperature", absl::StrCat("must be >= 0, got ", t));
    }
    if (top_p) {
      TANDEM_ASSIGN_OR_RETURN(p, Number(*top_p, "top_p"));
      if (!(p > 0 && p <= 1)) return FieldError("top_p", absl::StrCat("must be in (0, 1], got ", p));
    }
    if (top_k) {
      if (!top_k->is_number_integer() || top_k->get<int64_t>() < 0 ||
          top_k->get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return FieldError("top_k", absl::StrCat("must be an integer >= 0, got ",
                                                json_util::Abbreviate(*top_k)));
      }
      k = top_k->get<int64_t>();
    }
    if (sample && t > 0) {
      s.temperature = static_cast<float>(t);
      s.top_k = static_cast<int32_t>(k);
      s.top_p = static_cast<float>(p);
    }
    g.sampling = s;
  }
  return g;
}

absl::StatusOr<GenerationConfig> GenerationConfig::LoadDir(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / kFile).string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return GenerationConfig();
  absl::StatusOr<std::string> text = json_util::ReadFileToString(path, 1 << 20);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat("'", path, "': ", text.status().message()));
  }
  absl::StatusOr<GenerationConfig> config = FromJson(*text);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat("'", path, "': ", config.status().message()));
  }
  return config;
}

bool TokenRules::IsStop(int32_t id) const {
  return std::binary_search(stop_ids.begin(), stop_ids.end(), id);
}

TokenRules ResolveTokenRules(const ModelConfig& config, const GenerationConfig& generation,
                             const Tokenizer* tokenizer) {
  TokenRules rules;
  const int64_t head_rows = config.vocab_size;
  auto add = [&](int64_t id) {
    if (id >= 0 && id < head_rows) rules.stop_ids.push_back(static_cast<int32_t>(id));
  };
  for (int64_t id : config.eos_token_ids) add(id);
  for (int64_t id : generation.eos_token_ids) add(id);
  if (tokenizer != nullptr) add(tokenizer->eos_id());
  std::sort(rules.stop_ids.begin(), rules.stop_ids.end());
  rules.stop_ids.erase(std::unique(rules.stop_ids.begin(), rules.stop_ids.end()),
                       rules.stop_ids.end());
  if (tokenizer != nullptr) {
    const int64_t ids = tokenizer->vocab_size();
    if (head_rows > ids) {
      rules.vocab_limit = static_cast<int32_t>(ids);
      rules.note = absl::StrCat("the LM head has ", head_rows, " rows but the tokenizer has ",
                                ids, " ids: ids ", ids, "..", head_rows - 1,
                                " cannot become text and are never sampled");
    } else if (head_rows < ids) {
      rules.note = absl::StrCat("the tokenizer has ", ids, " ids but the model only ", head_rows,
                                ": text that encodes to ids >= ", head_rows,
                                " is refused as input");
    }
  }
  return rules;
}

}  // namespace tandem
