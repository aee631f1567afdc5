// EdgeEngine: the edge's half of a split model — decoder layers [0, S), the
// token embedding, the final norm + LM head (shared by the exit heads) and exit
// heads at E ⊆ (0, S], S ∈ E — plus the exit policy. EdgeSequence: one
// sequence's decode state on top of it (KV cache of [0, S), deferred rows).
//
// The decode step (DESIGN.md, "One decode step on the edge"):
//  1. The new token runs through the layers in order. At each exit e its head's
//     distribution gives a confidence (ExitPolicy::measure); if it is >=
//     the exit's threshold the token is decided there.
//  2. Deferred exact KV: a token decided at e < S has not been through [e, S).
//     Its hidden state at e is kept (a "pending row") and in the next step runs
//     through [e, S) in the same batch as the next token's row, which joins it at
//     layer e; if the next token itself stops before S, the pending row goes on
//     alone to S after the decision. So at the end of every step at most one
//     row — the step's own token — is pending, and every KV entry equals what
//     running all edge layers would give (never a copied state).
//  3. No exit passed by S: the fallback exit (EdgeOptions::fallback) drafts the
//     token. With a CloudContinuation set (collaborative mode) the draft is
//     submitted for verification and returned as *provisional*
//     (StepResult::provisional): the caller may decode on top of it; if the
//     cloud rejects it, Truncate() rolls the sequence back and the cloud's
//     token is fed instead. Without one (standalone mode), or when the cloud
//     cannot be asked, the draft is the token.
//  4. Every row reaching S goes to the ContextSink, in position order.
//  The prompt is prefilled as one batch through [0, S) (never deferred); its
//  last row's exits decide the first token the same way.
//
// Sampling (greedy by default) applies to the distribution of the exit that
// decides the token; the confidence test itself is on that distribution too.
//
// Thread-safety: EdgeEngine is immutable after Create; its const methods may be
// called from any thread, and many sequences may share one engine. EdgeSequence
// is single-threaded (one decode at a time); it borrows the engine, which must
// outlive it.
#ifndef TANDEM_EDGE_EDGE_ENGINE_H_
#define TANDEM_EDGE_EDGE_ENGINE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "tandem/edge/cloud_continuation.h"
#include "tandem/edge/context_sink.h"
#include "tandem/edge/edge_options.h"
#include "tandem/exit_heads.h"
#include "tandem/fast_decoder.h"
#include "tandem/kv_cache.h"
#include "tandem/model.h"
#include "tandem/sampling.h"

namespace tandem::edge {

// The resolved decision rule of an engine.
struct ExitPolicy {
  ConfidenceMeasure measure = ConfidenceMeasure::kMaxProb;
  // One entry per exit layer in E; +infinity = the exit never decides early.
  std::map<int64_t, double> thresholds;
  StandaloneFallback fallback = StandaloneFallback::kDeepest;
};

// How a token was decided.
enum class TokenSource {
  kExit,      // an exit's confidence passed its threshold (exit_layer says which)
  kFallback,  // no exit passed by S; the fallback exit's token (standalone mode)
  kCloud,     // the cloud's continuation (collaborative mode)
};
const char* TokenSourceName(TokenSource s);

// exit_layer value of a token the cloud decided.
inline constexpr int64_t kCloudLayer = -1;

struct StepResult {
  int32_t token = 0;          // the decided id
  int64_t position = 0;       // position `token` will occupy when fed back
  TokenSource source = TokenSource::kExit;
  int64_t exit_layer = 0;     // head that produced `token`; kCloudLayer for the cloud
  float confidence = 0.0f;    // that head's confidence (ExitPolicy::measure); NaN for cloud
  float probability = 0.0f;   // probability of `token` under that head's softmax
  int64_t rows_to_sink = 0;   // rows handed to the ContextSink during this step
  // Collaborative mode: the token is a draft submitted to the cloud for
  // verification (source kFallback until a verdict says otherwise).
  bool provisional = false;
};

class EdgeSequence;

class EdgeEngine {
 public:
  // Loads layers [0, S), the embedding and the head of options.model_dir and the
  // exit heads beside it, and resolves S, E and the policy (see EdgeOptions).
  // Errors: InvalidArgument for an empty model_dir, S outside (0, L], exits
  // outside (0, S], thresholds for layers that are not exits, a bad
  // max_context; NotFound for a directory without config.json or (unless
  // allow_fresh_heads) without exit heads, or an exit with no trained head.
  static absl::StatusOr<std::unique_ptr<EdgeEngine>> Create(const EdgeOptions& options);

  // From parts already in memory (tests, benchmarks): `model` must hold layers
  // [0, split) with embedding and head; `heads` must have every layer of
  // `policy.thresholds` (which defines E and must contain `split`). With
  // `weights`, the layers and heads run on the decode path in that format
  // (EdgeOptions::weights), on `pool` (borrowed, may be null).
  static absl::StatusOr<std::unique_ptr<EdgeEngine>> FromParts(
      std::shared_ptr<const Model> model, std::shared_ptr<const ExitHeads> heads, int64_t split,
      ExitPolicy policy, int64_t max_context = 0,
      std::optional<WeightFormat> weights = std::nullopt, ThreadPool* pool = nullptr);

  EdgeEngine(const EdgeEngine&) = delete;
  EdgeEngine& operator=(const EdgeEngine&) = delete;

  int64_t split() const { return split_; }
  // E, ascending; back() == split().
  const std::vector<int64_t>& exit_layers() const { return exit_layers_; }
  const ExitPolicy& policy() const { return policy_; }
  const Model& model() const { return *model_; }
  const ExitHeads& heads() const { return *heads_; }
  // The decode path's weights (EdgeOptions::weights), or null on libtorch.
  const FastDecoder* fast_decoder() const { return fast_.get(); }
  // Positions a sequence's cache holds by default.
  int64_t max_context() const { return max_context_; }

  // A fresh sequence whose cache holds `capacity` positions (0 = max_context()),
  // allocated now. `sink` (may be null) is borrowed and must outlive it.
  absl::StatusOr<std::unique_ptr<EdgeSequence>> NewSequence(int64_t capacity = 0,
                                                            ContextSink* sink = nullptr) const;

 private:
  friend class EdgeSequence;  // reads the decode path's exit heads
  EdgeEngine() = default;
  std::shared_ptr<const Model> model_;
  std::shared_ptr<const ExitHeads> heads_;
  std::shared_ptr<const FastDecoder> fast_;       // null = libtorch path
  std::map<int64_t, FastExitHead> fast_heads_;    // by exit layer, with fast_
  ThreadPool* pool_ = nullptr;                    // borrowed, may be null
  int64_t split_ = 0;
  std::vector<int64_t> exit_layers_;
  ExitPolicy policy_;
  int64_t max_context_ = 0;
};

class EdgeSequence {
 public:
  EdgeSequence(const EdgeSequence&) = delete;
  EdgeSequence& operator=(const EdgeSequence&) = delete;

  // Starts a new sequence: clears the cache, tells the sink OnBegin, prefills
  // `prompt` through [0, S) as one batch and decides the first token.
  // InvalidArgument for an empty prompt, ids outside the vocabulary or bad
  // sampling params; OutOfRange when the prompt does not fit the cache.
  absl::StatusOr<StepResult> Start(absl::Span<const int32_t> prompt,
                                   const SamplingParams& sampling = {});

  // Feeds `token` (normally the last StepResult's) at position() and decides
  // the next one. OutOfRange when the cache is full; FailedPrecondition before
  // Start. On an error the sequence must be restarted.
  absl::StatusOr<StepResult> Step(int32_t token);

  // Pushes any pending row through [e, S) to the sink (end of a sequence, or
  // before handing the context to someone else). Afterwards every fed position
  // is in every edge layer.
  absl::Status Flush();

  // Tells the sink the sequence ended (ContextSink::OnFinish). Idempotent.
  void Finish();

  // Overrides thresholds for this sequence from now on (exit layer -> threshold;
  // exits not named keep theirs). A latency-aware policy relaxes thresholds at
  // run time through this. InvalidArgument for a layer that is not an exit.
  absl::Status set_thresholds(const std::map<int64_t, double>& thresholds);

  // Forgets every position >= `position` (0 < position <= position()): the KV
  // cache of every edge layer, deferred rows, and — through
  // ContextSink::OnTruncate — what the sink holds. The next Step feeds the
  // token at `position`. Used to roll back provisional tokens the cloud
  // rejected. InvalidArgument outside that range, FailedPrecondition before
  // Start.
  absl::Status Truncate(int64_t position);

  // The blocking policy for callers driving a sequence step by step: waits
  // for the verdict on `step` (the result of the latest Start/Step, when
  // provisional) and returns the decided token — the cloud's (source kCloud)
  // or, without a verdict by the request's deadline, the draft (kFallback).
  // A rejection needs no rollback here (nothing was fed on top of the draft).
  // Returns `step` unchanged when it is not provisional.
  absl::StatusOr<StepResult> AwaitVerdict(const StepResult& step);

  // Collaborative mode seam (cloud_continuation.h): borrowed, may be null (=
  // standalone). `timeout` is each request's deadline after its Submit;
  // `draft_top_k` (>= 1) bounds the draft distribution sent under sampling.
  void set_cloud(CloudContinuation* cloud, absl::Duration timeout, int draft_top_k = 8) {
    cloud_ = cloud;
    cloud_timeout_ = timeout;
    draft_top_k_ = draft_top_k < 1 ? 1 : draft_top_k;
  }

  // Tokens fed so far (prompt + stepped tokens) = the next token's position.
  int64_t position() const { return position_; }
  int64_t capacity() const;
  // Rows decided at an early exit whose layers [e, S) have not run yet.
  int64_t pending_rows() const;
  // The KV cache of layers [0, S). Layer l holds position() - (pending rows
  // whose exit layer is <= l) positions.
  const KVCache& cache() const { return *cache_; }
  // Bytes of hidden states handed to the sink since Start.
  int64_t bytes_to_sink() const { return bytes_to_sink_; }
  const EdgeEngine& engine() const { return engine_; }

 private:
  friend class EdgeEngine;
  // Rows at consecutive positions waiting at exit layer `layer`.
  struct PendingGroup {
    int64_t layer = 0;
    int64_t first_position = 0;
    at::Tensor rows;  // [n, D], hidden state at `layer`
  };
  struct Candidate {
    int64_t layer = 0;
    float confidence = 0.0f;
    at::Tensor logits;  // [1, V] fp32
  };
  EdgeSequence(const EdgeEngine& engine, std::unique_ptr<KVCache> cache, ContextSink* sink);

  // Runs `fresh` (rows at layer 0 for positions position()...) and every
  // pending group up to S. With `decide`, the last fresh row's exits decide a
  // token into `result`; with `may_defer` that row stops at its exit.
  absl::Status Advance(const at::Tensor& fresh, bool decide, bool may_defer,
                       StepResult* result);
  // The three calls that differ between the libtorch and the decode path.
  absl::StatusOr<at::Tensor> Embed(absl::Span<const int32_t> ids) const;
  absl::StatusOr<at::Tensor> Forward(int64_t begin, int64_t end, const at::Tensor& x,
                                     int64_t first_position);
  absl::StatusOr<at::Tensor> ExitLogits(int64_t layer, const at::Tensor& row);
  absl::Status Decide(const std::vector<Candidate>& candidates, bool passed,
                      const at::Tensor& row_at_split, StepResult* result);
  void HandToSink(int64_t first_position, const at::Tensor& rows, StepResult* result);

  const EdgeEngine& engine_;
  std::unique_ptr<KVCache> cache_;
  std::unique_ptr<DecodeWorkspace> workspace_;  // decode path only
  ContextSink* sink_;
  CloudContinuation* cloud_ = nullptr;
  absl::Duration cloud_timeout_ = absl::Seconds(1);
  int draft_top_k_ = 8;
  std::optional<Sampler> sampler_;
  SamplingParams sampling_;
  std::vector<double> thresholds_;     // aligned with engine_.exit_layers()
  std::vector<PendingGroup> pending_;  // ascending positions; layers non-increasing
  int64_t sink_next_ = 0;              // next position the sink expects
  int64_t position_ = 0;
  int64_t bytes_to_sink_ = 0;
  bool started_ = false;
  bool finished_ = true;
};

}  // namespace tandem::edge

#endif  // TANDEM_EDGE_EDGE_ENGINE_H_
