// ExitHeads: the early-exit heads of a checkpoint, stored beside it as
// `tandem_exits.safetensors` (weights) + `exits.json` (layers, thresholds,
// calibration). For each exit layer e the head is
//
//   logits_e(h) = LmHead( RmsNorm_e(h) + up_e(down_e(RmsNorm_e(h))) )
//
// i.e. its own norm, an optional low-rank adapter (rank 0 = none), and the
// model's LM head, shared. The adapter's `up` starts at zero so a fresh head
// equals the final norm + LM head applied at layer e.
//
// Thread-safety: immutable after Load/Create (training mutates the tensors in
// place through NamedParameters); const methods may run concurrently.
#ifndef TANDEM_EXIT_HEADS_H_
#define TANDEM_EXIT_HEADS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "tandem/model.h"

namespace tandem {

// How confident an exit's distribution is.
enum class ConfidenceMeasure {
  kMaxProb,  // probability of the top token
  kMargin,   // top-1 minus top-2 probability
  kEntropy,  // negated entropy in nats (higher = more confident), so that
             // "confidence >= threshold" reads the same for every measure
};
const char* ConfidenceMeasureName(ConfidenceMeasure m);
absl::StatusOr<ConfidenceMeasure> ParseConfidenceMeasure(const std::string& name);

// The calibrated decision rule: exit at layer e when confidence >= threshold.
struct ExitThresholds {
  ConfidenceMeasure measure = ConfidenceMeasure::kMaxProb;
  std::map<int64_t, double> by_layer;  // exit layer -> threshold
  // What calibration promised on held-out text (0 when uncalibrated).
  double target_agreement = 0.0;
  double expected_agreement = 0.0;
  double expected_coverage = 0.0;
};

class ExitHeads {
 public:
  // Fresh heads at `layers` (strictly increasing, each in (0, L]) for `model`,
  // whose final norm must be loaded: norms copy the final norm, adapters of
  // `adapter_rank` have random `down` and zero `up`.
  static absl::StatusOr<std::unique_ptr<ExitHeads>> Create(const Model& model,
                                                           std::vector<int64_t> layers,
                                                           int64_t adapter_rank, uint64_t seed);
  // Loads `dir`/tandem_exits.safetensors + `dir`/exits.json; validates shapes
  // against `model`'s config. NotFound if the directory has no exit heads.
  static absl::StatusOr<std::unique_ptr<ExitHeads>> Load(const std::string& dir,
                                                         const Model& model);
  // Writes both files into `dir` (weights fp32), keeping other keys of an
  // existing exits.json.
  absl::Status Save(const std::string& dir) const;

  const std::vector<int64_t>& layers() const { return layers_; }
  int64_t adapter_rank() const { return adapter_rank_; }
  bool HasLayer(int64_t layer) const;
  const ExitThresholds& thresholds() const { return thresholds_; }
  void set_thresholds(ExitThresholds t) { thresholds_ = std::move(t); }

  // hidden [..., D] at exit `layer` -> logits [..., V] (fp32), using `model`'s
  // LM head. InvalidArgument for a layer without a head.
  absl::StatusOr<at::Tensor> Logits(const Model& model, int64_t layer,
                                    const at::Tensor& hidden) const;

  std::vector<std::pair<std::string, at::Tensor>> NamedParameters() const;

 private:
  struct Head {
    at::Tensor norm;       // [D]
    at::Tensor down, up;   // [r, D], [D, r]; undefined when rank 0
  };
  ExitHeads() = default;
  std::vector<int64_t> layers_;
  std::map<int64_t, Head> heads_;
  int64_t adapter_rank_ = 0;
  ExitThresholds thresholds_;
};

// Confidence of each row of `logits` ([N, V], fp32) under `measure`, and the
// argmax token: returns {confidence [N] fp32, token [N] int64}.
std::pair<at::Tensor, at::Tensor> Confidence(const at::Tensor& logits, ConfidenceMeasure measure);

}  // namespace tandem

#endif  // TANDEM_EXIT_HEADS_H_
