// Model construction (from a checkpoint or at random) and saving: everything that
// knows the Hugging Face tensor names.
#include <cstring>
#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tandem/model.h"
#include "tandem/safetensors.h"
#include "tandem/status_macros.h"

namespace tandem {
namespace {

absl::StatusOr<at::ScalarType> TorchDType(DType d) {
  switch (d) {
    case DType::kF32: return at::kFloat;
    case DType::kF16: return at::kHalf;
    case DType::kBF16: return at::kBFloat16;
    default: return absl::InvalidArgumentError(
        absl::StrCat("weights must be F32, F16 or BF16, found ", DTypeName(d)));
  }
}

absl::StatusOr<DType> SafetensorsDType(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return DType::kF32;
    case at::kHalf: return DType::kF16;
    case at::kBFloat16: return DType::kBF16;
    default: return absl::InvalidArgumentError("can only save float32, float16 or bfloat16");
  }
}

const char* HfDTypeName(at::ScalarType t) {
  switch (t) {
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    default: return "float32";
  }
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

absl::Status Model::BuildWeights(const WeightFetcher& fetch) {
  const ModelConfig& c = config_;
  if (layer_begin_ < 0 || layer_end_ > c.num_hidden_layers || layer_begin_ > layer_end_) {
    return absl::InvalidArgumentError(absl::StrCat("layer range [", layer_begin_, ", ", layer_end_,
                                                   ") is outside the model's ",
                                                   c.num_hidden_layers, " layers"));
  }
  if (options_.dtype != at::kFloat && options_.dtype != at::kBFloat16 &&
      options_.dtype != at::kHalf) {
    return absl::InvalidArgumentError("compute dtype must be float32, bfloat16 or float16");
  }
  const int64_t d = c.hidden_size, hd = c.head_dim;
  const int64_t q_dim = c.num_attention_heads * hd, kv_dim = c.num_key_value_heads * hd;
  using K = WeightKind;
  if (options_.load_embedding || (options_.load_head && c.tie_word_embeddings)) {
    TANDEM_ASSIGN_OR_RETURN(embedding_,
                            fetch("model.embed_tokens.weight", {c.vocab_size, d}, K::kMatrix));
  }
  if (options_.load_head) {
    TANDEM_ASSIGN_OR_RETURN(final_norm_, fetch("model.norm.weight", {d}, K::kNorm));
    if (c.tie_word_embeddings) {
      lm_head_ = embedding_;
    } else {
      TANDEM_ASSIGN_OR_RETURN(lm_head_, fetch("lm_head.weight", {c.vocab_size, d}, K::kMatrix));
    }
  }
  layers_.clear();
  for (int64_t l = layer_begin_; l < layer_end_; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    DecoderLayerWeights w;
    auto get = [&](const std::string& name, std::vector<int64_t> shape, K kind,
                   at::Tensor* out) -> absl::Status {
      TANDEM_ASSIGN_OR_RETURN(*out, fetch(p + name, shape, kind));
      return absl::OkStatus();
    };
    TANDEM_RETURN_IF_ERROR(get("input_layernorm.weight", {d}, K::kNorm, &w.input_norm));
    TANDEM_RETURN_IF_ERROR(get("self_attn.q_proj.weight", {q_dim, d}, K::kMatrix, &w.q_proj));
    TANDEM_RETURN_IF_ERROR(get("self_attn.k_proj.weight", {kv_dim, d}, K::kMatrix, &w.k_proj));
    TANDEM_RETURN_IF_ERROR(get("self_attn.v_proj.weight", {kv_dim, d}, K::kMatrix, &w.v_proj));
    TANDEM_RETURN_IF_ERROR(get("self_attn.o_proj.weight", {d, q_dim}, K::kMatrix, &w.o_proj));
    if (c.attention_bias) {
      TANDEM_RETURN_IF_ERROR(get("self_attn.q_proj.bias", {q_dim}, K::kBias, &w.q_bias));
      TANDEM_RETURN_IF_ERROR(get("self_attn.k_proj.bias", {kv_dim}, K::kBias, &w.k_bias));
      TANDEM_RETURN_IF_ERROR(get("self_attn.v_proj.bias", {kv_dim}, K::kBias, &w.v_bias));
    }
    if (c.attention_output_bias) {
      TANDEM_RETURN_IF_ERROR(get("self_attn.o_proj.bias", {d}, K::kBias, &w.o_bias));
    }
    TANDEM_RETURN_IF_ERROR(
        get("post_attention_layernorm.weight", {d}, K::kNorm, &w.post_attention_norm));
    const int64_t ff = c.intermediate_size;
    TANDEM_RETURN_IF_ERROR(get("mlp.gate_proj.weight", {ff, d}, K::kMatrix, &w.gate_proj));
    TANDEM_RETURN_IF_ERROR(get("mlp.up_proj.weight", {ff, d}, K::kMatrix, &w.up_proj));
    TANDEM_RETURN_IF_ERROR(get("mlp.down_proj.weight", {d, ff}, K::kMatrix, &w.down_proj));
    if (c.mlp_bias) {
      TANDEM_RETURN_IF_ERROR(get("mlp.gate_proj.bias", {ff}, K::kBias, &w.gate_bias));
      TANDEM_RETURN_IF_ERROR(get("mlp.up_proj.bias", {ff}, K::kBias, &w.up_bias));
      TANDEM_RETURN_IF_ERROR(get("mlp.down_proj.bias", {d}, K::kBias, &w.down_bias));
    }
    layers_.push_back(std::move(w));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& dir,
                                                   const ModelOptions& options) {
  const std::filesystem::path root(dir);
  if (!std::filesystem::is_directory(root)) {
    return absl::NotFoundError(absl::StrCat("model directory not found: ", dir));
  }
  TANDEM_ASSIGN_OR_RETURN(ModelConfig config,
                          ModelConfig::FromFile((root / "config.json").string()));
  TANDEM_ASSIGN_OR_RETURN(GenerationConfig generation, GenerationConfig::LoadDir(dir));
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointReader> reader, CheckpointReader::Open(dir));
  auto model = std::unique_ptr<Model>(new Model(std::move(config), options));
  model->generation_config_ = std::move(generation);
  const at::ScalarType dtype = options.dtype;
  auto fetch = [&](const std::string& name, const std::vector<int64_t>& shape,
                   WeightKind) -> absl::StatusOr<at::Tensor> {
    TANDEM_ASSIGN_OR_RETURN(TensorInfo info, reader->Get(name));
    if (info.shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(dir, ": tensor ", name, " has shape ",
                                                     ShapeString(info.shape), ", expected ",
                                                     ShapeString(shape)));
    }
    TANDEM_ASSIGN_OR_RETURN(at::ScalarType src, TorchDType(info.dtype));
    try {
      // Copy out of the mapping (which may be unaligned), then convert.
      at::Tensor t = at::empty(shape, at::TensorOptions().dtype(src));
      std::memcpy(t.data_ptr(), info.data, info.size_bytes);
      return src == dtype ? t : t.to(dtype);
    } catch (const c10::Error& e) {
      return absl::InternalError(absl::StrCat("loading ", name, ": ", e.what_without_backtrace()));
    }
  };
  TANDEM_RETURN_IF_ERROR(model->BuildWeights(fetch));
  return model;
}

absl::StatusOr<std::unique_ptr<Model>> Model::CreateRandom(const ModelConfig& config,
                                                           const ModelOptions& options,
                                                           uint64_t seed) {
  auto model = std::unique_ptr<Model>(new Model(config, options));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto fetch = [&](const std::string&, const std::vector<int64_t>& shape,
                   WeightKind kind) -> absl::StatusOr<at::Tensor> {
    at::TensorOptions opts = at::TensorOptions().dtype(at::kFloat);
    at::Tensor t;
    switch (kind) {
      case WeightKind::kNorm: t = at::ones(shape, opts); break;
      case WeightKind::kBias: t = at::zeros(shape, opts); break;
      case WeightKind::kMatrix: t = at::normal(0.0, 0.02, shape, gen, opts); break;
    }
    return t.to(options.dtype);
  };
  TANDEM_RETURN_IF_ERROR(model->BuildWeights(fetch));
  return model;
}

std::vector<std::pair<std::string, at::Tensor>> Model::NamedParameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  if (embedding_.defined()) out.emplace_back("model.embed_tokens.weight", embedding_);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::string p = absl::StrCat("model.layers.", layer_begin_ + i, ".");
    const DecoderLayerWeights& w = layers_[i];
    auto add = [&](const char* name, const at::Tensor& t) {
      if (t.defined()) out.emplace_back(p + name, t);
    };
    add("input_layernorm.weight", w.input_norm);
    add("self_attn.q_proj.weight", w.q_proj);
    add("self_attn.q_proj.bias", w.q_bias);
    add("self_attn.k_proj.weight", w.k_proj);
    add("self_attn.k_proj.bias", w.k_bias);
    add("self_attn.v_proj.weight", w.v_proj);
    add("self_attn.v_proj.bias", w.v_bias);
    add("self_attn.o_proj.weight", w.o_proj);
    add("self_attn.o_proj.bias", w.o_bias);
    add("post_attention_layernorm.weight", w.post_attention_norm);
    add("mlp.gate_proj.weight", w.gate_proj);
    add("mlp.gate_proj.bias", w.gate_bias);
    add("mlp.up_proj.weight", w.up_proj);
    add("mlp.up_proj.bias", w.up_bias);
    add("mlp.down_proj.weight", w.down_proj);
    add("mlp.down_proj.bias", w.down_bias);
  }
  if (final_norm_.defined()) out.emplace_back("model.norm.weight", final_norm_);
  if (lm_head_.defined() && !config_.tie_word_embeddings) out.emplace_back("lm_head.weight", lm_head_);
  return out;
}

int64_t Model::weight_bytes() const {
  int64_t total = 0;
  for (const auto& [name, t] : NamedParameters()) total += t.numel() * t.element_size();
  return total;
}

absl::Status Model::Save(const std::string& dir, at::ScalarType dtype) const {
  if (layer_begin_ != 0 || layer_end_ != config_.num_hidden_layers || !embedding_.defined() ||
      !final_norm_.defined()) {
    return absl::FailedPreconditionError("Save: only a fully loaded model can be saved");
  }
  TANDEM_ASSIGN_OR_RETURN(DType st_dtype, SafetensorsDType(dtype));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("Save: cannot create ", dir, ": ", ec.message()));
  std::vector<at::Tensor> keep;  // owns the converted copies while writing
  std::vector<TensorToWrite> tensors;
  try {
    for (const auto& [name, t] : NamedParameters()) {
      keep.push_back(t.detach().to(dtype).contiguous());
      tensors.push_back({name, st_dtype, keep.back().sizes().vec(), keep.back().data_ptr()});
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("Save: ", e.what_without_backtrace()));
  }
  TANDEM_RETURN_IF_ERROR(WriteSafetensors((std::filesystem::path(dir) / "model.safetensors").string(),
                                          tensors, {{"format", "pt"}}));
  ModelConfig config = config_;
  config.torch_dtype = HfDTypeName(dtype);
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return absl::InternalError(absl::StrCat("Save: cannot write ", path));
  const std::string json = config.ToJson();
  const bool ok = std::fwrite(json.data(), 1, json.size(), f) == json.size();
  if (std::fclose(f) != 0 || !ok) return absl::InternalError(absl::StrCat("Save: write failed: ", path));
  return absl::OkStatus();
}

}  // namespace tandem
