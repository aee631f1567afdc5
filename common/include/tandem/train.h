// Training of the base model (next-token cross-entropy, optionally with an
// early-exit loss at chosen layers) on a tokenized corpus, with the same Model
// code that serves inference. AdamW, linear warmup + cosine decay, gradient
// clipping, periodic validation, checkpoint/resume, bf16 autocast.
//
// Not thread-safe; runs on the calling thread (intra-op parallelism through
// SetComputeThreads).
#ifndef TANDEM_TRAIN_H_
#define TANDEM_TRAIN_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tandem/model_config.h"

namespace tandem {

struct TrainOptions {
  // Token files: little-endian uint16 ids (see tools/tokenize_corpus.py).
  std::string train_data;
  std::string valid_data;
  // Where the model (HF layout) and the resumable trainer state are written.
  std::string out_dir;
  // Architecture of a fresh model. Ignored when resuming from out_dir.
  ModelConfig config;
  // Continue from out_dir/trainer_state.pt if it exists.
  bool resume = true;

  int64_t seq_len = 256;     // tokens per training window
  int64_t batch_size = 16;   // windows per step
  int64_t max_steps = 10000;
  // Stop (and save) after this much wall time even before max_steps; 0 = none.
  double max_minutes = 0.0;

  double learning_rate = 2e-3;   // peak, after warmup
  double min_lr_ratio = 0.1;     // cosine floor as a fraction of the peak
  int64_t warmup_steps = 200;
  double weight_decay = 0.1;     // matrices only; not norms or biases
  double beta1 = 0.9, beta2 = 0.95;
  double grad_clip = 1.0;        // max global L2 norm of the gradients

  // Early-exit loss (LayerSkip-style): cross-entropy through the final norm and
  // LM head applied at these layers (each in (0, L)), weighted by
  // exit_loss_weight relative to the final layer's loss. Empty = off.
  std::vector<int64_t> exit_layers;
  double exit_loss_weight = 0.0;
  // Exit losses are computed on every exit_loss_stride-th position only.
  int64_t exit_loss_stride = 4;

  // Mixed precision: matmuls in bf16, master weights and optimizer in fp32.
  // Only worth it on CPUs with AVX-512 BF16; without AVX-512, libtorch's bf16
  // matmul is ~100x slower than fp32 (measured: 4096x256x688 takes 1.05 s vs
  // 12 ms), so it is off by default.
  bool bf16_autocast = false;
  int64_t eval_every = 250;    // steps between validation passes; 0 = only at the end
  int64_t eval_windows = 64;   // validation windows (fixed, evenly spaced)
  int64_t save_every = 500;    // steps between checkpoints; 0 = only at the end
  uint64_t seed = 1;
};

struct TrainProgress {
  int64_t step = 0;
  int64_t max_steps = 0;
  double loss = 0.0;           // training loss of this step (final layer)
  double learning_rate = 0.0;
  double tokens_per_second = 0.0;
  double elapsed_seconds = 0.0;
  double eta_seconds = 0.0;
  // Set on validation steps (otherwise negative).
  double valid_loss = -1.0;
  std::vector<double> valid_exit_losses;  // per exit layer, on validation steps
};

struct TrainResult {
  int64_t steps = 0;
  int64_t tokens_seen = 0;
  int64_t parameters = 0;
  double wall_seconds = 0.0;
  double final_valid_loss = 0.0;
};

// Trains, saving to out_dir every save_every steps and at the end.
// `on_progress` is called on the training thread after every step.
absl::StatusOr<TrainResult> TrainModel(const TrainOptions& options,
                                       const std::function<void(const TrainProgress&)>& on_progress);

// Reads a uint16 token file. InvalidArgument if its size is odd or it is empty.
absl::StatusOr<std::vector<uint16_t>> ReadTokenFile(const std::string& path);

}  // namespace tandem

#endif  // TANDEM_TRAIN_H_
