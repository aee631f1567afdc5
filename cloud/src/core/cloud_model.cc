#include "tandem/cloud/cloud_model.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "tandem/fingerprint.h"
#include "tandem/model_config.h"
#include "tandem/status_macros.h"

namespace tandem::cloud {
namespace {

namespace fs = std::filesystem;

// The split an edge would use for `dir` when given none (EdgeEngine's rule):
// exits.json's "split", else its deepest exit layer; 0 when neither exists.
absl::StatusOr<int64_t> SplitFromExitsFile(const fs::path& dir) {
  const fs::path path = dir / "exits.json";
  if (!fs::exists(path)) return int64_t{0};
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not a JSON object"));
  }
  if (j.contains("split") && j["split"].is_number_integer()) return j["split"].get<int64_t>();
  int64_t deepest = 0;
  if (j.contains("layers") && j["layers"].is_array()) {
    for (const nlohmann::json& l : j["layers"]) {
      if (l.is_number_integer()) deepest = std::max(deepest, l.get<int64_t>());
    }
  }
  return deepest;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CloudModel>> CloudModel::Create(const CloudModelOptions& options) {
  if (options.model_dir.empty()) {
    return absl::InvalidArgumentError("CloudModelOptions.model_dir is empty");
  }
  const fs::path dir(options.model_dir);
  if (!fs::exists(dir / "config.json")) {
    return absl::NotFoundError(absl::StrCat(
        options.model_dir, " has no config.json (expected a Hugging Face checkpoint directory)"));
  }
  TANDEM_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::FromFile((dir / "config.json").string()));
  const int64_t num_layers = config.num_hidden_layers;
  int64_t split = options.split;
  if (split == 0) {
    TANDEM_ASSIGN_OR_RETURN(split, SplitFromExitsFile(dir));
    if (split == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "no split given and ", options.model_dir, " has no exits.json to take it from"));
    }
  }
  if (split < 1 || split >= num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("split ", split, " must be in [1, ", num_layers,
                                                   "): the cloud runs layers [split, ",
                                                   num_layers, ")"));
  }
  ModelOptions model_options;
  model_options.dtype = options.dtype;
  model_options.layer_begin = options.token_resync ? 0 : split;
  model_options.layer_end = num_layers;
  model_options.load_embedding = options.token_resync;
  model_options.load_head = true;
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                          Model::Load(options.model_dir, model_options));
  return FromModel(std::shared_ptr<const Model>(std::move(model)), split);
}

absl::StatusOr<std::unique_ptr<CloudModel>> CloudModel::FromModel(
    std::shared_ptr<const Model> model, int64_t split) {
  if (model == nullptr) return absl::InvalidArgumentError("CloudModel: no model");
  const int64_t num_layers = model->config().num_hidden_layers;
  if (split < 1 || split >= num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("split ", split, " must be in [1, ", num_layers,
                                                   ")"));
  }
  if (model->layer_begin() > split || model->layer_end() != num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CloudModel: the model holds layers [", model->layer_begin(), ", ", model->layer_end(),
        "), the cloud needs [", split, ", ", num_layers, ")"));
  }
  if (!model->options().load_head) {
    return absl::FailedPreconditionError("CloudModel: the model did not load its final norm and LM head");
  }
  auto cloud = std::unique_ptr<CloudModel>(new CloudModel());
  TANDEM_ASSIGN_OR_RETURN(cloud->fingerprint_, SplitFingerprint(*model, split));
  // The LM head must answer for one row (catches a head that failed to load).
  try {
    TANDEM_ASSIGN_OR_RETURN(at::Tensor probe,
                            model->Logits(at::zeros({1, model->config().hidden_size},
                                                    at::TensorOptions().dtype(at::kFloat))));
    (void)probe;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("CloudModel: ", e.what_without_backtrace()));
  }
  cloud->model_ = std::move(model);
  cloud->split_ = split;
  return cloud;
}

}  // namespace tandem::cloud
