// Teacher-forced passes of a whole model (and its exit heads) over held-out
// text, as batched tensor work: the evaluation core shared by
// EvaluatePerplexity, Calibrate and EvaluateThresholds (calibration.h).
//
// Text is cut into non-overlapping windows of seq_len + 1 tokens (inputs are
// the first seq_len, targets the last seq_len); each window is a fresh
// context. Short windows run as one [B, seq_len] batch (up to 256 rows)
// through the body; the consumer then asks for the heads it needs on the rows
// it needs (SummarizeRows): logits are made a block of rows at a time (8 MB)
// and reduced at once to per-token statistics (argmax, max probability,
// top-1 − top-2 margin, negated entropy, NLL of the target).
#ifndef TANDEM_COMMON_SRC_EXITS_TEACHER_FORCING_H_
#define TANDEM_COMMON_SRC_EXITS_TEACHER_FORCING_H_

#include <cstdint>
#include <functional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "tandem/exit_heads.h"
#include "tandem/model.h"
#include "tandem/progress.h"

namespace tandem::internal {

// Per-row statistics of one head's distribution; every tensor is [N].
struct HeadRows {
  at::Tensor token;        // int64, the argmax
  at::Tensor max_prob;     // fp32, probability of the argmax
  at::Tensor margin;       // fp32, top-1 minus top-2 probability
  at::Tensor neg_entropy;  // fp32, sum p log p (nats, <= 0)
  at::Tensor nll;          // fp32, -log p(target)

  // The confidence tensor Confidence(logits, m) would give (same values up to
  // float rounding).
  const at::Tensor& confidence(ConfidenceMeasure m) const;
};

// Uninitialised statistics for n rows.
HeadRows AllocateHeadRows(int64_t n);
// Reduces logits [R, V] (any float dtype) with targets int64 [R] into rows
// [row_offset, row_offset + R) of `out`. Works in row blocks that stay in
// cache, one block per intra-op task; one exp per logit.
void SummarizeLogitsInto(const at::Tensor& logits, const at::Tensor& targets, HeadRows& out,
                         int64_t row_offset);

// One batch of windows after the body: the hidden states each head reads.
struct TeacherForcedBatch {
  at::Tensor targets;                    // int64 [N] (N = windows in the batch * seq_len)
  std::vector<at::Tensor> exit_hidden;   // [N, D] at each requested exit, in order
  at::Tensor final_hidden;               // [N, D] after the last layer (before the final norm)
};

// The final norm + LM head, as opposed to an exit layer, for SummarizeRows.
inline constexpr int64_t kFinalHead = -1;

// Statistics of one head (exit `layer`, or kFinalHead) over rows of hidden
// states [R, D] with their targets [R]: logits are made and reduced a block
// of rows at a time, so no [R, V] tensor exists. `heads` may be null for
// kFinalHead.
absl::StatusOr<HeadRows> SummarizeRows(const Model& model, const ExitHeads* heads, int64_t layer,
                                       const at::Tensor& hidden, const at::Tensor& targets);

// The windows a pass over `tokens` runs: floor(size / (seq_len + 1)), capped
// so that at most ceil(max_tokens / seq_len) windows run when max_tokens > 0.
int64_t TeacherForcedWindows(int64_t tokens, int64_t seq_len, int64_t max_tokens);

// Runs the body over the windows, batch by batch, calling `fn` for each batch
// in text order (it summarizes the heads it needs with SummarizeRows, possibly
// on a subset of rows) and `on_progress` (tokens done / total) after it.
// `exits` (strictly increasing) need heads in `heads` (may be null when
// `exits` is empty). Errors: FailedPrecondition unless `model` holds every
// layer and the head; InvalidArgument for a bad seq_len, too few tokens, ids
// outside the vocabulary; Cancelled when on_progress returns false; Internal
// for a libtorch failure.
// `fn` returns a Status; an error ends the pass with it. With `bf16_autocast`
// the body and `fn` run under bf16 autocast (tandem/cpu_features.h: fast only
// on CPUs with AVX512_BF16 or AMX; argmaxes can differ from fp32 on near-ties).
absl::Status RunTeacherForced(const Model& model, const ExitHeads* heads,
                              const std::vector<int64_t>& exits,
                              const std::vector<int32_t>& tokens, int64_t seq_len,
                              int64_t max_tokens, const ProgressCallback& on_progress,
                              bool bf16_autocast,
                              const std::function<absl::Status(const TeacherForcedBatch&)>& fn);

}  // namespace tandem::internal

#endif  // TANDEM_COMMON_SRC_EXITS_TEACHER_FORCING_H_
