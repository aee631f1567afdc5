// Measuring exits on held-out text: perplexity of the full model and of each
// exit head, and calibration of exit thresholds — for each confidence measure,
// the agreement-vs-coverage curve of every exit against the full model's greedy
// token, and the thresholds that maximise the share of tokens decided by exits
// while the OVERALL agreement (exited tokens must match the full model's greedy
// token; the rest are the full model's own) stays at or above a target.
//
// Text is cut into non-overlapping windows of seq_len + 1 tokens; each window
// starts a fresh context (teacher forcing inside it). Windows run in batches
// (up to ~2k rows, fewer for large vocabularies) and every head's logits are
// reduced to per-token statistics right away, so memory stays bounded (about
// 64 MB of logits per head at a time) whatever the text's length.
//
// Every function here runs on the calling thread (libtorch's intra-op pool
// does the parallel work; see threads.h), reports progress after each batch
// through an optional ProgressCallback (progress.h) whose `false` stops the
// call with absl::CancelledError, and returns FailedPrecondition unless
// `model` holds every layer and the head, InvalidArgument for a bad seq_len,
// fewer tokens than one window or ids outside the vocabulary, Internal for a
// libtorch failure.
#ifndef TANDEM_CALIBRATION_H_
#define TANDEM_CALIBRATION_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tandem/cpu_features.h"
#include "tandem/exit_heads.h"
#include "tandem/model.h"
#include "tandem/progress.h"

namespace tandem {

struct PerplexityResult {
  int64_t tokens = 0;                     // predicted tokens
  double full_nll = 0.0;                  // mean negative log-likelihood, nats
  std::map<int64_t, double> exit_nll;     // per exit layer
  double unigram_nll = 0.0;               // add-one unigram fitted on `unigram_fit`
};

// `tokens`: held-out ids. `unigram_fit`: ids to fit the unigram baseline on
// (typically the training split); empty = skip the baseline. `heads` may be null.
// `precision`: kFp32 (the default) computes as the runtime does; kBf16 runs the
// matmuls under bf16 autocast, several times faster on CPUs with AVX512_BF16
// or AMX (cpu_features.h) and ~100x slower elsewhere; kAuto picks by the CPU.
// bf16 changes perplexities slightly and can flip argmaxes on near-ties, so
// thresholds that must hold at run time are calibrated in fp32.
absl::StatusOr<PerplexityResult> EvaluatePerplexity(const Model& model, const ExitHeads* heads,
                                                    const std::vector<int32_t>& tokens,
                                                    const std::vector<int32_t>& unigram_fit,
                                                    int64_t seq_len, int64_t max_tokens = 0,
                                                    const ProgressCallback& on_progress = nullptr,
                                                    ComputePrecision precision =
                                                        ComputePrecision::kFp32);

struct CurvePoint {
  double threshold = 0.0;
  double coverage = 0.0;   // share of all tokens whose confidence >= threshold
  double agreement = 0.0;  // among those, share equal to the full model's token
};

struct MeasureCalibration {
  ConfidenceMeasure measure = ConfidenceMeasure::kMaxProb;
  std::map<int64_t, double> thresholds;       // chosen, per exit layer
  std::map<int64_t, double> exit_share;       // share of tokens decided at each exit
  double coverage = 0.0;                      // share decided by any exit
  double agreement = 0.0;                     // overall, with the cascade
  std::map<int64_t, std::vector<CurvePoint>> curves;  // per exit, standalone
};

struct CalibrationResult {
  int64_t tokens = 0;
  double target_agreement = 0.0;
  std::map<int64_t, double> top1_agreement;  // each exit's argmax vs the full model's
  std::vector<MeasureCalibration> measures;
  size_t best = 0;  // index into measures with the highest coverage
  // The best measure's thresholds in ExitHeads form.
  ExitThresholds Chosen() const;
};

struct CalibrationOptions {
  double target_agreement = 0.99;
  int64_t seq_len = 256;
  int64_t max_tokens = 0;  // 0 = all of `tokens`
  // Only exits at layers <= max_layer take part (the split S); -1 = all.
  int64_t max_layer = -1;
  // Points of each standalone curve (MeasureCalibration::curves): thresholds
  // at evenly spaced quantiles of the exit's confidence, lowest first. >= 2.
  int curve_points = 21;
  // Called after each batch of windows (tokens done / total); false cancels.
  ProgressCallback on_progress;
  // See EvaluatePerplexity.
  ComputePrecision precision = ComputePrecision::kFp32;
};

absl::StatusOr<CalibrationResult> Calibrate(const Model& model, const ExitHeads& heads,
                                            const std::vector<int32_t>& tokens,
                                            const CalibrationOptions& options);

// The edge's cascade with fixed `thresholds` on held-out text: the share of
// tokens each exit decides and the overall agreement with the full model.
struct ThresholdEvaluation {
  int64_t tokens = 0;
  double coverage = 0.0;
  double agreement = 0.0;
  std::map<int64_t, double> exit_share;
};
absl::StatusOr<ThresholdEvaluation> EvaluateThresholds(const Model& model, const ExitHeads& heads,
                                                       const ExitThresholds& thresholds,
                                                       const std::vector<int32_t>& tokens,
                                                       int64_t seq_len, int64_t max_tokens = 0,
                                                    const ProgressCallback& on_progress = nullptr,
                                                    ComputePrecision precision =
                                                        ComputePrecision::kFp32);

// A fixed-width text table of curves and chosen thresholds.
std::string FormatCalibration(const CalibrationResult& result);

}  // namespace tandem

#endif  // TANDEM_CALIBRATION_H_
