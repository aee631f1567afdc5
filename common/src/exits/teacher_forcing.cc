#include "exits/teacher_forcing.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "tandem/status_macros.h"
#include "training/autocast_scope.h"

namespace tandem::internal {
namespace {

// Rows of the body (all layers) run as one batch: short windows are packed
// up to this many rows, longer ones run one at a time. Measured on the
// shipped model (seq_len 256, one thread): batches of 2048 rows ran at half
// the speed of 256-row ones, all of the difference in page faults (250k vs
// 33k for 4k tokens) — each batch's tens of MB of activations were returned
// to the kernel by malloc and faulted in again — while the gemm time was the
// same.
constexpr int64_t kBatchRows = 256;
// Logits are produced and reduced this many elements at a time (8 MB of
// fp32): one LM-head product per block, never a [rows, V] tensor for the whole
// batch. Blocks under glibc's mmap threshold (32 MB) are recycled by malloc
// instead of being mapped and faulted in afresh each time.
constexpr int64_t kLogitBlockElements = int64_t{1} << 21;
// Rows reduced by one task: 32 rows of a 8k vocabulary are 1 MB per
// temporary, small enough to stay in L2 between the passes below.
constexpr int64_t kSummaryBlockElements = int64_t{1} << 18;

// Reduces logits rows [begin, end) into out rows [offset + begin, offset + end).
void SummarizeBlock(const at::Tensor& logits, const at::Tensor& targets, HeadRows& out,
                    int64_t begin, int64_t end, int64_t offset) {
  const int64_t n = end - begin;
  at::Tensor x = logits.narrow(0, begin, n);
  auto [top, index] = x.max(-1, /*keepdim=*/true);
  at::Tensor shifted = x - top;           // <= 0, the argmax at 0
  at::Tensor e = shifted.exp();
  at::Tensor sum = e.sum(-1);             // >= 1
  at::Tensor log_sum = sum.log();
  // sum p log p = sum(e * shifted) / sum - log(sum)
  at::Tensor weighted = e.mul_(shifted).sum(-1);
  at::Tensor target_shifted = shifted.gather(1, targets.narrow(0, begin, n).unsqueeze(1)).squeeze(1);
  shifted.scatter_(1, index, -std::numeric_limits<float>::infinity());
  at::Tensor second = std::get<0>(shifted.max(-1));  // top-2 logit minus top-1, <= 0
  at::Tensor inv = sum.reciprocal();
  out.token.narrow(0, offset + begin, n).copy_(index.squeeze(1));
  out.max_prob.narrow(0, offset + begin, n).copy_(inv);
  out.margin.narrow(0, offset + begin, n).copy_((1.0 - second.exp()) * inv);
  out.neg_entropy.narrow(0, offset + begin, n).copy_(weighted * inv - log_sum);
  out.nll.narrow(0, offset + begin, n).copy_(log_sum - target_shifted);
}

int64_t WindowsPerBatch(int64_t seq_len) { return std::max<int64_t>(1, kBatchRows / seq_len); }

}  // namespace

const at::Tensor& HeadRows::confidence(ConfidenceMeasure m) const {
  switch (m) {
    case ConfidenceMeasure::kMaxProb: return max_prob;
    case ConfidenceMeasure::kMargin: return margin;
    case ConfidenceMeasure::kEntropy: return neg_entropy;
  }
  return max_prob;
}

HeadRows AllocateHeadRows(int64_t n) {
  HeadRows out;
  out.token = at::empty({n}, at::kLong);
  out.max_prob = at::empty({n}, at::kFloat);
  out.margin = at::empty({n}, at::kFloat);
  out.neg_entropy = at::empty({n}, at::kFloat);
  out.nll = at::empty({n}, at::kFloat);
  return out;
}

void SummarizeLogitsInto(const at::Tensor& logits_in, const at::Tensor& targets, HeadRows& out,
                         int64_t row_offset) {
  at::Tensor logits = logits_in.to(at::kFloat).contiguous();
  const int64_t n = logits.size(0);
  const int64_t vocab = logits.size(1);
  const int64_t block = std::max<int64_t>(1, kSummaryBlockElements / std::max<int64_t>(1, vocab));
  const int64_t blocks = (n + block - 1) / block;
  // One block per task; each task's ops then run single-threaded (ATen does
  // not nest parallel regions), which beats splitting every small op.
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t begin = b * block, end = std::min(n, (b + 1) * block);
      SummarizeBlock(logits, targets, out, begin, end, row_offset);
    }
  });
}

absl::StatusOr<HeadRows> SummarizeRows(const Model& model, const ExitHeads* heads, int64_t layer,
                                       const at::Tensor& hidden, const at::Tensor& targets) {
  if (layer != kFinalHead && heads == nullptr) {
    return absl::InvalidArgumentError("an exit head was asked for without exit heads");
  }
  const int64_t n = hidden.size(0);
  const int64_t vocab = model.config().vocab_size;
  HeadRows out = AllocateHeadRows(n);
  const int64_t block = std::max<int64_t>(1, kLogitBlockElements / vocab);
  for (int64_t r0 = 0; r0 < n; r0 += block) {
    const int64_t rows = std::min(block, n - r0);
    const at::Tensor x = hidden.narrow(0, r0, rows);
    TANDEM_ASSIGN_OR_RETURN(at::Tensor logits, layer == kFinalHead
                                                   ? model.Logits(x)
                                                   : heads->Logits(model, layer, x));
    SummarizeLogitsInto(logits, targets.narrow(0, r0, rows), out, r0);
  }
  return out;
}

int64_t TeacherForcedWindows(int64_t tokens, int64_t seq_len, int64_t max_tokens) {
  if (seq_len <= 0) return 0;
  int64_t windows = tokens / (seq_len + 1);
  if (max_tokens > 0) windows = std::min(windows, (max_tokens + seq_len - 1) / seq_len);
  return windows;
}

absl::Status RunTeacherForced(const Model& model, const ExitHeads* heads,
                              const std::vector<int64_t>& exits,
                              const std::vector<int32_t>& tokens, int64_t seq_len,
                              int64_t max_tokens, const ProgressCallback& on_progress,
                              bool bf16_autocast,
                              const std::function<absl::Status(const TeacherForcedBatch&)>& fn) {
  const ModelConfig& c = model.config();
  if (model.layer_begin() != 0 || model.layer_end() != c.num_hidden_layers) {
    return absl::FailedPreconditionError("evaluation needs the whole model");
  }
  if (seq_len <= 0 || seq_len > c.max_position_embeddings) {
    return absl::InvalidArgumentError("seq_len must be in (0, max_position_embeddings]");
  }
  if (static_cast<int64_t>(tokens.size()) < seq_len + 1) {
    return absl::InvalidArgumentError("fewer tokens than one window");
  }
  if (!exits.empty() && heads == nullptr) {
    return absl::InvalidArgumentError("exits requested without exit heads");
  }
  for (size_t i = 0; i < exits.size(); ++i) {
    if (!heads->HasLayer(exits[i]) || (i > 0 && exits[i] <= exits[i - 1])) {
      return absl::InvalidArgumentError(absl::StrCat("no exit head at layer ", exits[i],
                                                     " (exits must increase)"));
    }
  }
  const int64_t windows = TeacherForcedWindows(tokens.size(), seq_len, max_tokens);
  for (int64_t i = 0; i < windows * (seq_len + 1); ++i) {
    const int32_t id = tokens[i];
    if (id < 0 || id >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id,
                                                     " outside the vocabulary of ", c.vocab_size));
    }
  }
  const auto start_time = std::chrono::steady_clock::now();
  const int64_t per_batch = WindowsPerBatch(seq_len);
  const int64_t total = windows * seq_len;
  try {
    at::InferenceMode guard;
    AutocastScope autocast(bf16_autocast);
    const at::Tensor positions = at::arange(seq_len, at::kLong);
    for (int64_t w0 = 0; w0 < windows; w0 += per_batch) {
      const int64_t b = std::min(per_batch, windows - w0);
      at::Tensor batch = at::empty({b, seq_len + 1}, at::kLong);
      int64_t* dst = batch.data_ptr<int64_t>();
      const int32_t* src = tokens.data() + w0 * (seq_len + 1);
      std::copy(src, src + b * (seq_len + 1), dst);
      at::Tensor inputs = batch.narrow(1, 0, seq_len);
      TeacherForcedBatch out;
      out.targets = batch.narrow(1, 1, seq_len).reshape({-1});
      TANDEM_ASSIGN_OR_RETURN(at::Tensor h, model.Embed(inputs.contiguous()));
      int64_t layer = 0;
      for (int64_t e : exits) {
        TANDEM_ASSIGN_OR_RETURN(h, model.ForwardLayers(layer, e, h, positions, nullptr));
        layer = e;
        out.exit_hidden.push_back(h.reshape({-1, c.hidden_size}));
      }
      TANDEM_ASSIGN_OR_RETURN(h, model.ForwardLayers(layer, c.num_hidden_layers, h, positions,
                                                     nullptr));
      out.final_hidden = h.reshape({-1, c.hidden_size});
      TANDEM_RETURN_IF_ERROR(fn(out));
      if (on_progress) {
        Progress p;
        p.done = (w0 + b) * seq_len;
        p.total = total;
        p.elapsed_seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
        if (!on_progress(p)) {
          return absl::CancelledError(absl::StrCat("cancelled after ", p.done, " of ", total,
                                                   " tokens"));
        }
      }
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("teacher-forced pass: ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

}  // namespace tandem::internal
