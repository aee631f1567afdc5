// Training of exit heads with the backbone frozen: distillation from the final
// layer's distribution (KL(final || exit)) plus cross-entropy on the data.
#ifndef TANDEM_EXIT_TRAINING_H_
#define TANDEM_EXIT_TRAINING_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tandem/exit_heads.h"
#include "tandem/model.h"

namespace tandem {

struct ExitTrainOptions {
  std::string train_data;  // uint16 token file
  // Token ids to train on instead of reading `train_data` (used when not empty).
  std::vector<int32_t> train_tokens;
  int64_t seq_len = 256;
  int64_t batch_size = 8;
  int64_t max_steps = 1000;
  double max_minutes = 0.0;   // 0 = no wall-time limit
  double learning_rate = 1e-3;
  int64_t warmup_steps = 50;
  double kl_weight = 1.0;     // weight of KL(final || exit)
  double ce_weight = 0.2;     // weight of cross-entropy on the next token
  bool bf16_autocast = false;  // see TrainOptions::bf16_autocast
  uint64_t seed = 1;
  // Polled before every step; returning true stops training: TrainExitHeads
  // then returns Cancelled, and the heads keep the steps already taken.
  std::function<bool()> stop_requested;
};

struct ExitTrainProgress {
  int64_t step = 0;
  int64_t max_steps = 0;
  std::vector<double> kl;  // per exit layer, this step
  std::vector<double> ce;
  double elapsed_seconds = 0.0;
};

// Trains `heads` in place. `model` must hold every layer and the head.
// `on_progress` (may be empty) is called on this thread after every step.
// Returns the steps taken. Errors: FailedPrecondition (partial model),
// NotFound / InvalidArgument for the data (missing file, shorter than one
// window, ids outside the vocabulary), Cancelled (stop_requested), Internal.
absl::StatusOr<int64_t> TrainExitHeads(const Model& model, ExitHeads& heads,
                                       const ExitTrainOptions& options,
                                       const std::function<void(const ExitTrainProgress&)>& on_progress);

}  // namespace tandem

#endif  // TANDEM_EXIT_TRAINING_H_
