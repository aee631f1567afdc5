// CloudModel: the cloud's half of a split checkpoint — decoder layers [S, L), the
// final norm and the LM head — and optionally [0, S) with the embedding, so a
// session can be rebuilt from token ids alone (DESIGN.md, "Resync").
//
// Thread-safety: immutable after Create; shared by every session.
#ifndef TANDEM_CLOUD_CLOUD_MODEL_H_
#define TANDEM_CLOUD_CLOUD_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tandem/model.h"

namespace tandem::cloud {

struct CloudModelOptions {
  std::string model_dir;  // Hugging Face checkpoint directory. Required.
  int64_t split = 0;      // S, in [1, L). 0 = exits.json's split / deepest exit.
  // Also load layers [0, S) and the embedding so sessions can resync from token
  // ids (4 bytes a position on the wire instead of a hidden state).
  bool token_resync = true;
  // Compute dtype (ModelOptions::dtype): at::kFloat is the reference.
  at::ScalarType dtype = at::kFloat;
};

class CloudModel {
 public:
  static absl::StatusOr<std::unique_ptr<CloudModel>> Create(const CloudModelOptions& options);
  // From a model already in memory (tests): it must hold [split or 0, L) + head.
  static absl::StatusOr<std::unique_ptr<CloudModel>> FromModel(std::shared_ptr<const Model> model,
                                                               int64_t split);

  const Model& model() const { return *model_; }
  const ModelConfig& config() const { return model_->config(); }
  int64_t split() const { return split_; }
  int64_t num_layers() const { return model_->config().num_hidden_layers; }
  int64_t hidden_size() const { return model_->config().hidden_size; }
  // True when layers [0, S) and the embedding are loaded (token-id resync).
  bool can_embed() const { return model_->layer_begin() == 0 && model_->options().load_embedding; }
  // Hash of the config and split: edge and cloud must agree (ModelFingerprint).
  uint64_t fingerprint() const { return fingerprint_; }

 private:
  CloudModel() = default;
  std::shared_ptr<const Model> model_;
  int64_t split_ = 0;
  uint64_t fingerprint_ = 0;
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_CLOUD_MODEL_H_
