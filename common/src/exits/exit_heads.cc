#include "tandem/exit_heads.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "tandem/safetensors.h"
#include "tandem/status_macros.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr char kWeightsFile[] = "tandem_exits.safetensors";
constexpr char kConfigFile[] = "exits.json";

std::string Prefix(int64_t layer) { return absl::StrCat("exits.", layer, "."); }

absl::StatusOr<json> ReadJson(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path.string()));
  std::stringstream text;
  text << in.rdbuf();
  json j = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not a JSON object"));
  }
  return j;
}

absl::Status ValidateLayers(const std::vector<int64_t>& layers, const ModelConfig& c) {
  if (layers.empty()) return absl::InvalidArgumentError("no exit layers given");
  int64_t previous = 0;
  for (int64_t l : layers) {
    if (l <= previous || l > c.num_hidden_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "exit layers must be strictly increasing and inside (0, ", c.num_hidden_layers,
          "], got ", l));
    }
    previous = l;
  }
  return absl::OkStatus();
}

}  // namespace

const char* ConfidenceMeasureName(ConfidenceMeasure m) {
  switch (m) {
    case ConfidenceMeasure::kMaxProb: return "max_prob";
    case ConfidenceMeasure::kMargin: return "margin";
    case ConfidenceMeasure::kEntropy: return "neg_entropy";
  }
  return "?";
}

absl::StatusOr<ConfidenceMeasure> ParseConfidenceMeasure(const std::string& name) {
  if (name == "max_prob") return ConfidenceMeasure::kMaxProb;
  if (name == "margin") return ConfidenceMeasure::kMargin;
  if (name == "neg_entropy" || name == "entropy") return ConfidenceMeasure::kEntropy;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown confidence measure '", name, "' (max_prob, margin, neg_entropy)"));
}

std::pair<at::Tensor, at::Tensor> Confidence(const at::Tensor& logits, ConfidenceMeasure measure) {
  at::Tensor logp = at::log_softmax(logits.to(at::kFloat), -1);
  switch (measure) {
    case ConfidenceMeasure::kMaxProb: {
      auto [top, index] = logp.max(-1);
      return {top.exp(), index};
    }
    case ConfidenceMeasure::kMargin: {
      auto [top2, index2] = logp.topk(2, -1);
      at::Tensor p = top2.exp();
      return {p.select(-1, 0) - p.select(-1, 1), index2.select(-1, 0)};
    }
    case ConfidenceMeasure::kEntropy: {
      at::Tensor neg_entropy = (logp.exp() * logp).sum(-1);
      return {neg_entropy, logp.argmax(-1)};
    }
  }
  return {};
}

absl::StatusOr<std::unique_ptr<ExitHeads>> ExitHeads::Create(const Model& model,
                                                             std::vector<int64_t> layers,
                                                             int64_t adapter_rank,
                                                             uint64_t seed) {
  TANDEM_RETURN_IF_ERROR(ValidateLayers(layers, model.config()));
  if (adapter_rank < 0) return absl::InvalidArgumentError("adapter rank must be >= 0");
  at::Tensor final_norm;
  for (const auto& [name, t] : model.NamedParameters()) {
    if (name == "model.norm.weight") final_norm = t;
  }
  if (!final_norm.defined()) {
    return absl::FailedPreconditionError("exit heads start from the final norm: load the head");
  }
  auto heads = std::unique_ptr<ExitHeads>(new ExitHeads());
  heads->layers_ = std::move(layers);
  heads->adapter_rank_ = adapter_rank;
  const int64_t d = model.config().hidden_size;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (int64_t l : heads->layers_) {
    Head h;
    h.norm = final_norm.detach().to(at::kFloat).clone();
    if (adapter_rank > 0) {
      h.down = at::normal(0.0, 1.0 / std::sqrt(static_cast<double>(d)), {adapter_rank, d}, gen,
                          at::TensorOptions().dtype(at::kFloat));
      h.up = at::zeros({d, adapter_rank}, at::kFloat);
    }
    heads->heads_[l] = std::move(h);
  }
  return heads;
}

absl::StatusOr<std::unique_ptr<ExitHeads>> ExitHeads::Load(const std::string& dir,
                                                           const Model& model) {
  const fs::path root(dir);
  if (!fs::exists(root / kConfigFile) || !fs::exists(root / kWeightsFile)) {
    return absl::NotFoundError(absl::StrCat(dir, " has no exit heads (", kConfigFile, " + ",
                                            kWeightsFile, ")"));
  }
  TANDEM_ASSIGN_OR_RETURN(json j, ReadJson(root / kConfigFile));
  auto heads = std::unique_ptr<ExitHeads>(new ExitHeads());
  try {
    heads->layers_ = j.at("layers").get<std::vector<int64_t>>();
    heads->adapter_rank_ = j.value("adapter_rank", 0);
    if (j.contains("thresholds") && j["thresholds"].is_object()) {
      const json& t = j["thresholds"];
      TANDEM_ASSIGN_OR_RETURN(heads->thresholds_.measure,
                              ParseConfidenceMeasure(t.value("measure", "max_prob")));
      for (const auto& [layer, value] : t.at("by_layer").items()) {
        heads->thresholds_.by_layer[std::stoll(layer)] = value.get<double>();
      }
      heads->thresholds_.target_agreement = t.value("target_agreement", 0.0);
      heads->thresholds_.expected_agreement = t.value("expected_agreement", 0.0);
      heads->thresholds_.expected_coverage = t.value("expected_coverage", 0.0);
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(dir, "/", kConfigFile, ": ", e.what()));
  }
  TANDEM_RETURN_IF_ERROR(ValidateLayers(heads->layers_, model.config()));
  if (heads->adapter_rank_ < 0) return absl::InvalidArgumentError("adapter_rank must be >= 0");
  TANDEM_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open((root / kWeightsFile).string()));
  const int64_t d = model.config().hidden_size, r = heads->adapter_rank_;
  auto read = [&](const std::string& name, std::vector<int64_t> shape) -> absl::StatusOr<at::Tensor> {
    TANDEM_ASSIGN_OR_RETURN(TensorInfo info, file->Get(name));
    if (info.dtype != DType::kF32 && info.dtype != DType::kF16 && info.dtype != DType::kBF16) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": exit weights must be float"));
    }
    if (info.shape != shape) return absl::InvalidArgumentError(absl::StrCat(name, ": wrong shape"));
    const at::ScalarType src = info.dtype == DType::kF32   ? at::kFloat
                               : info.dtype == DType::kF16 ? at::kHalf
                                                           : at::kBFloat16;
    at::Tensor t = at::empty(shape, src);
    std::memcpy(t.data_ptr(), info.data, info.size_bytes);
    return t.to(at::kFloat);
  };
  for (int64_t l : heads->layers_) {
    Head h;
    TANDEM_ASSIGN_OR_RETURN(h.norm, read(Prefix(l) + "norm.weight", {d}));
    if (r > 0) {
      TANDEM_ASSIGN_OR_RETURN(h.down, read(Prefix(l) + "adapter.down.weight", {r, d}));
      TANDEM_ASSIGN_OR_RETURN(h.up, read(Prefix(l) + "adapter.up.weight", {d, r}));
    }
    heads->heads_[l] = std::move(h);
  }
  return heads;
}

absl::Status ExitHeads::Save(const std::string& dir) const {
  const fs::path root(dir);
  std::vector<at::Tensor> keep;
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, t] : NamedParameters()) {
    keep.push_back(t.detach().to(at::kFloat).contiguous());
    tensors.push_back({name, DType::kF32, keep.back().sizes().vec(), keep.back().data_ptr()});
  }
  TANDEM_RETURN_IF_ERROR(WriteSafetensors((root / kWeightsFile).string(), tensors));
  json j = json::object();
  if (fs::exists(root / kConfigFile)) {
    auto existing = ReadJson(root / kConfigFile);
    if (existing.ok()) j = *existing;
  }
  j["layers"] = layers_;
  j["adapter_rank"] = adapter_rank_;
  if (!thresholds_.by_layer.empty()) {
    json by_layer = json::object();
    for (const auto& [layer, value] : thresholds_.by_layer) by_layer[std::to_string(layer)] = value;
    j["thresholds"] = {{"measure", ConfidenceMeasureName(thresholds_.measure)},
                       {"by_layer", by_layer},
                       {"target_agreement", thresholds_.target_agreement},
                       {"expected_agreement", thresholds_.expected_agreement},
                       {"expected_coverage", thresholds_.expected_coverage}};
  }
  const fs::path tmp = root / (std::string(kConfigFile) + ".tmp");
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp.string()));
  }
  std::error_code ec;
  fs::rename(tmp, root / kConfigFile, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot write exits.json: ", ec.message()));
  return absl::OkStatus();
}

bool ExitHeads::HasLayer(int64_t layer) const { return heads_.count(layer) > 0; }

absl::StatusOr<at::Tensor> ExitHeads::Logits(const Model& model, int64_t layer,
                                             const at::Tensor& hidden) const {
  auto it = heads_.find(layer);
  if (it == heads_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("no exit head at layer ", layer));
  }
  const Head& h = it->second;
  try {
    at::Tensor x = model.RmsNorm(hidden, h.norm);
    if (h.down.defined()) {
      at::Tensor xf = x.to(at::kFloat);
      x = (xf + at::matmul(at::matmul(xf, h.down.t()), h.up.t())).to(x.scalar_type());
    }
    return model.LmHead(x);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("exit head ", layer, ": ", e.what_without_backtrace()));
  }
}

std::vector<std::pair<std::string, at::Tensor>> ExitHeads::NamedParameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [layer, h] : heads_) {
    out.emplace_back(Prefix(layer) + "norm.weight", h.norm);
    if (h.down.defined()) {
      out.emplace_back(Prefix(layer) + "adapter.down.weight", h.down);
      out.emplace_back(Prefix(layer) + "adapter.up.weight", h.up);
    }
  }
  return out;
}

}  // namespace tandem
