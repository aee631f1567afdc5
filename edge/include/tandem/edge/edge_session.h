// EdgeSession: the C++ SDK an edge app embeds. It owns the edge half of a
// checkpoint (EdgeEngine), the tokenizer and one preallocated KV cache, and
// streams generated text token by token:
//
//   auto session = tandem::edge::EdgeSession::Create({.model_dir = dir});
//   auto summary = (*session)->Generate("In the beginning", {},
//       [](const tandem::edge::TokenInfo& t) { std::cout << t.text; return true; });
//
// Modes: standalone (EdgeOptions::cloud.address empty) — tokens come from the
// edge's exits, and when none is confident the fallback exit decides; the
// network is never used. Collaborative (cloud.address set) — the session owns a
// CloudLink: every row at S is uploaded in the background, and a token no exit
// is confident about is drafted by the fallback exit and verified by the cloud
// (pipelined speculative verification, cloud_continuation.h): the edge decodes
// on top of up to CloudOptions::max_in_flight drafts while their verdicts are
// on the way, and rolls back when the cloud replaces one. What the app sees
// depends on GenerateOptions::delivery: only verified tokens (the default; under
// greedy decoding the text is token-identical to waiting for every answer), or
// every token at once with rollbacks. A slow, failing or absent cloud is never
// an error: the draft stands (TokenInfo::source says where each token was
// decided) and the link reconnects and resyncs.
//
// Each Generate starts a fresh sequence (no multi-turn state is kept).
//
// Thread-safety: Generate runs on the caller's thread and calls `on_token`
// there; one Generate at a time per session (a concurrent second call fails
// with FailedPrecondition). Cancel() and stats() may be called from any thread
// at any time. No exception leaves this class: libtorch errors become
// absl::Status.
#ifndef TANDEM_EDGE_EDGE_SESSION_H_
#define TANDEM_EDGE_EDGE_SESSION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "tandem/edge/cloud_link.h"
#include "tandem/edge/edge_engine.h"
#include "tandem/edge/edge_options.h"
#include "tandem/sampling.h"
#include "tandem/tokenizer.h"

namespace tandem::edge {

// Per-request options.
struct GenerateOptions {
  // Tokens to generate at most (the prompt is not counted). Generation also
  // stops when the context (EdgeOptions::max_context) is full.
  int32_t max_new_tokens = 64;
  // Applied to the distribution of the exit that decides each token. Default
  // greedy.
  SamplingParams sampling;
  // Generation stops as soon as the text contains one of these; the stop
  // string and anything after it are not streamed. Text that might be the
  // start of a stop string is held back until it is known not to be.
  std::vector<std::string> stop_strings;
  // Stop at a stop id (not streamed): config.json's and generation_config.json's
  // eos_token_id (one or a list) and the tokenizer's EOS (tandem/generation_config.h).
  bool stop_at_eos = true;
  // Add the tokenizer's special tokens (e.g. BOS) to the prompt.
  bool add_special_tokens = true;

  // Collaborative mode: what on_token receives.
  enum class Delivery {
    // Only tokens whose fate is known (exit-decided, verified by the cloud, or
    // kept after their verification failed), in order. Under greedy decoding
    // the text equals the blocking policy's.
    kConfirmed,
    // Every token as soon as it is decoded, drafts included
    // (TokenInfo::provisional); when the cloud replaces a draft, on_rollback
    // says what to take back, then the replacement and what follows stream.
    // For UIs that redraw.
    kEager,
  };
  Delivery delivery = Delivery::kConfirmed;
};

// What an eager-delivery rollback takes back (GenerateOptions::kEager).
struct Rollback {
  int64_t position = 0;  // first position taken back (the replaced draft's)
  int64_t tokens = 0;    // streamed tokens taken back
  int64_t bytes = 0;     // bytes of streamed text taken back (from the end)
};

// One streamed token.
struct TokenInfo {
  // The token id; -1 for the final text-only record that carries text still
  // held back at the end (an incomplete character, a non-matching stop prefix).
  int32_t id = 0;
  // Text that became final with this token (may be empty).
  std::string text;
  int64_t position = 0;  // position of the token in the sequence
  TokenSource source = TokenSource::kExit;
  // Exit layer whose head decided (== split for the deepest), kCloudLayer for
  // the cloud.
  int64_t exit_layer = 0;
  float confidence = 0.0f;   // the deciding head's confidence
  float probability = 0.0f;  // probability of `id` under that head
  double seconds = 0.0;      // wall time of the decode step that produced it
  // Eager delivery: streamed before the cloud's verdict (may be rolled back).
  bool provisional = false;
  // source kCloud: the edge's draft was confirmed (false: the cloud replaced it).
  bool draft_accepted = false;
};

enum class StopReason {
  kMaxTokens,    // max_new_tokens reached
  kEos,          // a stop id (EOS) was generated
  kStopString,   // a stop string appeared
  kCallback,     // on_token returned false
  kCancelled,    // Cancel() was called
  kContextFull,  // the KV cache is full
};
const char* StopReasonName(StopReason r);

// Token counts by how they were decided.
struct ExitCounts {
  std::map<int64_t, int64_t> exited;    // exit layer -> tokens whose confidence passed there
  std::map<int64_t, int64_t> fallback;  // layer -> tokens decided by the fallback
  int64_t cloud = 0;                    // tokens the cloud decided
  int64_t total() const;
};

// Pipelined verification over one Generate (collaborative mode).
struct SpeculationStats {
  int64_t drafts = 0;          // tokens submitted to the cloud for verification
  int64_t accepted = 0;        // drafts the cloud confirmed
  int64_t rejected = 0;        // drafts the cloud replaced (each one rollback)
  int64_t unverified = 0;      // drafts kept without a verdict (deadline, link down)
  int64_t rolled_back = 0;     // tokens dropped by rollbacks (drafts and what followed)
  int64_t wasted_steps = 0;    // decode steps whose work a rollback discarded
  double wait_seconds = 0.0;   // decode thread blocked waiting for verdicts
  double mean_in_flight = 0.0; // drafts awaiting a verdict, averaged over decode steps
  int32_t final_window = 0;    // the adaptive window's limit at the end
};

struct GenerationSummary {
  std::vector<int32_t> ids;  // generated ids (EOS excluded)
  std::string text;          // exactly the concatenation of streamed text
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  StopReason stop_reason = StopReason::kMaxTokens;
  ExitCounts counts;
  double prefill_seconds = 0.0;  // prompt prefill + first token decision
  double decode_seconds = 0.0;   // every later step (excluding on_token)
  double total_seconds = 0.0;    // wall time of the whole call
  int64_t bytes_to_sink = 0;     // hidden-state bytes handed to the ContextSink
  // Collaborative mode: what the cloud link did during this call (zero in
  // standalone mode).
  CloudLinkStats cloud;
  SpeculationStats speculation;
};

// Cumulative over a session's Generate calls.
struct SessionStats {
  int64_t generations = 0;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  ExitCounts counts;
  std::map<int64_t, double> confidence_sum;  // deciding layer -> sum of confidences
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;   // decode steps after the first token
  int64_t decode_steps = 0;      // tokens timed in decode_seconds
  int64_t bytes_to_sink = 0;
  double seconds_per_token() const { return decode_steps ? decode_seconds / decode_steps : 0.0; }
};

class EdgeSession {
 public:
  // Loads the engine (EdgeEngine::Create) and the tokenizer of
  // options.model_dir, and allocates the KV cache. Errors as EdgeEngine::Create,
  // plus the tokenizer's (NotFound without tokenizer.json / tokenizer.model).
  static absl::StatusOr<std::unique_ptr<EdgeSession>> Create(const EdgeOptions& options);
  EdgeSession(const EdgeSession&) = delete;
  EdgeSession& operator=(const EdgeSession&) = delete;
  ~EdgeSession();

  // Generates a continuation of `prompt`, calling `on_token` (may be empty) on
  // this thread for every token; returning false stops generation. Errors:
  // InvalidArgument for an empty prompt, a prompt longer than the context, bad
  // options; FailedPrecondition when another Generate is running; Internal for
  // a libtorch failure. A stop (EOS, stop string, cancel, ...) is not an error:
  // see GenerationSummary::stop_reason.
  absl::StatusOr<GenerationSummary> Generate(
      const std::string& prompt, const GenerateOptions& options,
      const std::function<bool(const TokenInfo&)>& on_token = nullptr,
      const std::function<void(const Rollback&)>& on_rollback = nullptr);

  // Same on token ids (no tokenizer involved: TokenInfo::text stays empty and
  // stop strings are ignored; EOS still stops when stop_at_eos).
  absl::StatusOr<GenerationSummary> GenerateIds(
      const std::vector<int32_t>& prompt_ids, const GenerateOptions& options,
      const std::function<bool(const TokenInfo&)>& on_token = nullptr,
      const std::function<void(const Rollback&)>& on_rollback = nullptr);

  // Asks the running Generate to stop before its next decode step (it returns
  // OK with stop_reason kCancelled). Callable from any thread; a Cancel that
  // arrives while no Generate runs is forgotten.
  void Cancel();

  SessionStats stats() const;
  const EdgeEngine& engine() const { return *engine_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  // The cloud link in collaborative mode, else null.
  const CloudLink* cloud_link() const { return link_.get(); }

 private:
  EdgeSession() = default;
  absl::StatusOr<GenerationSummary> Run(const std::vector<int32_t>& prompt_ids,
                                        const GenerateOptions& options, bool with_text,
                                        const std::function<bool(const TokenInfo&)>& on_token,
                                        const std::function<void(const Rollback&)>& on_rollback);

  std::unique_ptr<EdgeEngine> engine_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<CloudLink> link_;  // collaborative mode; outlives sequence_ use
  std::unique_ptr<EdgeSequence> sequence_;  // used by the running Generate only
  CloudOptions cloud_options_;
  std::atomic<bool> running_{false};
  std::atomic<bool> cancel_{false};
  mutable absl::Mutex mu_;
  SessionStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem::edge

#endif  // TANDEM_EDGE_EDGE_SESSION_H_
