// ContextManager: the cloud's per-session state and the only way to touch it
// (DESIGN.md, "The cloud"). For every session it keeps
//   - the KV cache of layers [S, L) (and, only while a session is being rebuilt
//     from token ids, a cache of [0, S)),
//   - the queue of uploaded positions whose rows have not run through [S, L) yet,
//   - the sampler (seeded from the Open's sampling params),
//   - its owner (the identity that opened it) and its last activity.
// Continue(p) runs the queued positions < p and p itself through [S, L) — as one
// batch per session, batched across sessions by the Scheduler — samples the
// token that follows p and hands it to the caller's callback.
//
// Limits: a memory budget in bytes over all sessions (KV allocated + queued rows
// + [0, S) caches while they exist), enforced by evicting idle sessions (no
// Continue pending or running) least-recently-used first, and held for
// resident memory by returning freed caches to the system
// (trim_after_free_bytes); an idle TTL; a cap on positions per session; a cap
// on the number of sessions; per-identity quotas (sessions, queued rows,
// rows/s). A session that
// is gone (evicted, expired, never opened here — e.g. another replica or a
// restart) is NotFound: the server answers ResyncRequired and the edge replays.
//
// Isolation: every call names the session AND the owner; a session is only
// reachable by the owner that opened it (PermissionDenied otherwise), and no
// computation ever mixes two sessions' KV.
//
// Batching: the Scheduler's thread takes, per iteration, the ready work of many
// sessions (Continues, and queues that reached max_queued_rows — background
// prefill), up to max_batch_rows rows — fairly: sessions whose next Continue
// is near go first, identities take turns, and a session contributes at most
// max_session_batch_rows rows while others wait (its queue is split across
// iterations) — and runs it as ONE packed forward over
// [S, L) (Model::ForwardLayersPacked: dense work over all rows, attention per
// session against its own cache), then one LM-head call for every row that
// needs a token, then samples per session. Token ids (AddTokens) are run through
// [0, S) on the same thread in the same iteration (also packed across
// sessions), just before their rows join the [S, L) batch.
//
// Token-id resync: the first AddTokens of a session allocates a [0, S) cache
// (counted in the memory budget). Token ids are accepted only while every
// position the session holds came as token ids; the [0, S) cache is freed when
// the session next receives hidden-state context (AddContext or Continue) and
// its queued token ids have run. From then on AddTokens is FailedPrecondition
// until a Truncate(0).
//
// Speculative verification (proto Draft; docs/decisions.md): a Continue may
// carry a draft — the edge's provisional token for position + 1, and the
// distribution it drew it from. The token is then decided by the speculative
// sampling rule (VerifyDraft in tandem/speculative.h) against the session's
// distribution: accepted, or rejected and replaced by the cloud's token. Each
// session has a branch number (0 at Open). AddContext / AddTokens / Continue
// name the branch their rows were built on: an older branch's rows are
// dropped silently (a Continue's callback then gets Cancelled, and counted in
// ContextStats), a newer branch is InvalidArgument. At the first rejection at
// position p in a session's batch, atomically: later Continues of that batch
// are superseded (Cancelled, not sampled), the session is truncated to
// positions [0, p] (its [S, L) cache and any [0, S) cache), every queued chunk
// after p is dropped (its Continues Cancelled) and the branch is incremented —
// so no row of the abandoned branch can be queued afterwards. The server puts
// no Cancelled result on the wire: a superseded or stale Continue gets no reply.
//
// Errors: a request is validated when it is made (non-OK return, nothing
// queued). If the model nevertheless fails on a session's rows, that session's
// callbacks receive the error and the session is dropped (NotFound afterwards,
// the edge resyncs); other sessions in the same batch are unaffected.
//
// Thread-safety: all methods may be called concurrently from any thread.
// Callbacks run on the scheduler thread, or on the thread calling Truncate /
// Close / ~ContextManager when those fail them (and Continue for a request of
// an older branch); never under an internal lock,
// and they must not block. A callback may call back into the ContextManager
// (but not destroy it).
#ifndef TANDEM_CLOUD_CONTEXT_MANAGER_H_
#define TANDEM_CLOUD_CONTEXT_MANAGER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/cloud/cloud_model.h"
#include "tandem/sampling.h"
#include "tandem/speculative.h"

namespace tandem::cloud {

struct ContextLimits {
  // Bytes over all sessions: KV caches (allocated capacity, [S, L) and any
  // [0, S)) + queued rows (token ids count as the rows they become).
  int64_t memory_budget_bytes = int64_t{1} << 30;
  int64_t max_sessions = 1024;
  // Positions one session may hold (its KV capacity, allocated at Open); 0 =
  // the model's max_position_embeddings. Sessions open with this capacity
  // unless SessionOptions::capacity asks for less.
  int64_t max_positions = 0;
  // A session untouched this long is dropped (never one with a Continue
  // pending). Zero or negative: no TTL.
  absl::Duration idle_ttl = absl::Minutes(10);
  // When a session has this many queued rows the scheduler runs them in the
  // background (no Continue needed), bounding queue memory.
  int64_t max_queued_rows = 128;
  // Rows the scheduler runs through the model in one iteration (over all
  // sessions); a session's queue is split across iterations to respect it
  // (with max_session_batch_rows = 0: never split, and the first session of an
  // iteration may exceed it).
  int64_t max_batch_rows = 256;
  // Fair scheduling (docs/decisions.md, "Hardening: fair scheduling"): rows
  // one session contributes to an iteration before every other ready session
  // has had its share (clamped to max_batch_rows). Sessions whose next
  // Continue is within this many rows go first, round-robin across
  // identities, then the other ready sessions (long backlogs), round-robin
  // across identities; budget left over goes to sessions already in the batch.
  // So a session's backlog of hundreds of rows delays another session's
  // Continue by at most one iteration. Trade-off: smaller = lower latency for
  // short requests under load, more iterations for one long prefill. 0 = the
  // old policy (first come, first served; a session's queue never split) —
  // kept for measurement.
  int64_t max_session_batch_rows = 64;
  // Per-identity quotas (the owner of a session). 0 = no quota. Refusals are
  // ResourceExhausted naming the quota.
  // Sessions one identity may hold; at the quota, opening another evicts the
  // identity's own least recently used idle session, or is refused.
  int64_t max_sessions_per_identity = 0;
  // Rows (context, token ids and Continue rows) queued and not yet run, over
  // the identity's sessions.
  int64_t max_queued_rows_per_identity = 0;
  // Rows per second the identity may upload (a token bucket holding up to
  // rows_burst_per_identity rows; 0 burst = one second's worth).
  double rows_per_second_per_identity = 0;
  int64_t rows_burst_per_identity = 0;
  // After the table frees at least this many bytes of KV cache at once
  // (eviction, expiry, close), return free heap memory to the system
  // (malloc_trim), so resident memory follows the budget. 0 = never.
  int64_t trim_after_free_bytes = int64_t{8} << 20;
};

// What became of a Continue's draft.
enum class Verdict {
  kNone,      // no draft: the token was sampled freely
  kAccepted,  // the token is the draft's
  kRejected,  // the token replaces the draft; the session's branch was incremented
};

// What Continue produces.
struct ContinueResult {
  int64_t position = 0;       // the row that was continued (the token goes at position + 1)
  int32_t token = 0;
  // Of `token` under the temperature-scaled softmax (before top-k / top-p;
  // greedy: the plain softmax), with or without a draft — as Sampler::Sample
  // reports it.
  float probability = 0.0f;
  Verdict verdict = Verdict::kNone;
  uint32_t branch = 0;        // the session's branch after this answer
  int64_t rows_run = 0;       // rows of this session run in the batch (queued + 1)
  double compute_seconds = 0; // wall time of the scheduler iteration that ran it
  // The logits of `position` ([V], fp32) when SessionOptions::return_logits
  // (tests and diagnostics); undefined otherwise.
  at::Tensor logits;
};
using ContinueCallback = std::function<void(absl::StatusOr<ContinueResult>)>;

// A Continue: the row of `position` at S, wanting the token for position + 1.
struct ContinueRequest {
  int64_t position = 0;
  at::Tensor row;                     // [1, D] or [D], any float dtype; copied
  uint32_t branch = 0;                // the branch the row was built on
  // Set: verify this provisional token for position + 1, drawn from its
  // distribution (at most kMaxDraftEntries entries, see ValidateDraft; empty
  // = a greedy draft), instead of sampling freely; the result's verdict says
  // which happened.
  std::optional<DraftToken> draft;
  // Set: the parameters for this token only (validated; the seed is ignored —
  // the generator stays the session's). Unset: the session's.
  std::optional<SamplingParams> sampling;
};

// Where a session stands: what the server reports in Ack / ResyncRequired.
struct SessionPosition {
  int64_t held = 0;       // positions received (run or queued): the next expected
  uint32_t branch = 0;    // the speculation branch
};

// What AddContext / AddTokens did with the rows.
struct ContextReceipt {
  bool stale = false;         // built on an older branch: dropped, nothing queued
  SessionPosition session;    // the session after the call
};

struct SessionOptions {
  SamplingParams sampling;
  // Positions the edge may use; 0 = ContextLimits::max_positions. Larger than
  // the limit is InvalidArgument.
  int64_t capacity = 0;
  // Fill ContinueResult::logits (a [V] copy per token; for tests).
  bool return_logits = false;
};

// Counters since construction, and gauges now.
struct ContextStats {
  int64_t sessions = 0;           // gauge
  int64_t memory_bytes = 0;       // gauge: KV allocated + queued rows
  int64_t queued_rows = 0;        // gauge: over all sessions
  int64_t opened = 0;
  int64_t closed = 0;
  int64_t evicted = 0;            // by the memory budget / session cap (LRU)
  int64_t expired = 0;            // by the TTL
  int64_t failed = 0;             // dropped because the model failed on their rows
  int64_t rows_received = 0;      // context rows accepted (hidden or token; not Continue rows)
  int64_t rows_run = 0;           // rows run through [S, L)
  int64_t tokens_served = 0;      // Continue results delivered
  int64_t drafts_accepted = 0;    // Continues whose draft was accepted
  int64_t drafts_rejected = 0;    // ... rejected (each one a rollback)
  int64_t stale_dropped = 0;      // chunks (context or Continue) of an older branch, dropped
  int64_t superseded = 0;         // Continues cancelled by a rejection before them
  int64_t rows_rolled_back = 0;   // rows run or queued, discarded by a rejection
  int64_t batches = 0;            // scheduler iterations that ran the model
  int64_t abandoned_rows = 0;     // queued rows dropped because their stream ended (Detach)
  int64_t abandoned_continues = 0;  // Continues cancelled because their stream ended
  int64_t quota_refusals = 0;     // requests refused by a per-identity quota
  int64_t memory_trims = 0;       // malloc_trim calls after large frees
  double compute_seconds = 0.0;   // scheduler time inside the model
};

class Scheduler;

class ContextManager {
 public:
  // Starts the scheduler thread. `model` must hold layers [split, L), the final
  // norm and the LM head (and [0, split) + embedding to accept token ids).
  ContextManager(std::shared_ptr<const CloudModel> model, ContextLimits limits);
  // Fails every outstanding Continue with Cancelled and stops the scheduler.
  ~ContextManager();
  ContextManager(const ContextManager&) = delete;
  ContextManager& operator=(const ContextManager&) = delete;

  // Opens `session_id` for `owner`, or resumes it if this owner already holds
  // it (a resume keeps the options the session was opened with). Returns the number of positions held (the next position the session
  // expects): 0 for a new session. PermissionDenied if another owner holds it;
  // ResourceExhausted if it cannot fit even after evicting every idle session;
  // InvalidArgument for an empty id or bad options.
  absl::StatusOr<int64_t> Open(const std::string& session_id, const std::string& owner,
                               const SessionOptions& options);

  // Forgets every position >= `position` (the edge restarted its sequence or
  // resyncs from there). Returns the positions now held. Queued rows past it
  // are dropped. Fails pending Continues of the session with Aborted (their
  // rows before `position` stay as context). If the scheduler is running the
  // session's work, waits for that batch to finish first. The speculation
  // branch is unchanged.
  absl::StatusOr<int64_t> Truncate(const std::string& session_id, const std::string& owner,
                                   int64_t position);

  // Queues `rows` ([N, D], any float dtype; copied) for positions
  // first_position .. first_position + N - 1. first_position must equal the
  // next expected position (InvalidArgument otherwise — out of order or
  // duplicate); OutOfRange past the session's capacity; NotFound when the
  // session is gone.
  absl::Status AddContext(const std::string& session_id, const std::string& owner,
                          int64_t first_position, const at::Tensor& rows);
  // The same, for rows built on speculation branch `branch`: rows of an older
  // branch are dropped (OK, receipt.stale; validated first all the same), a
  // newer branch is InvalidArgument. The 4-argument form is branch 0.
  absl::StatusOr<ContextReceipt> AddContext(const std::string& session_id,
                                            const std::string& owner, int64_t first_position,
                                            const at::Tensor& rows, uint32_t branch);

  // Same with token ids: the cloud computes their rows through [0, S) itself
  // (token-id resync). FailedPrecondition when the model cannot (no [0, S)).
  absl::Status AddTokens(const std::string& session_id, const std::string& owner,
                         int64_t first_position, const std::vector<int32_t>& ids);
  absl::StatusOr<ContextReceipt> AddTokens(const std::string& session_id,
                                           const std::string& owner, int64_t first_position,
                                           const std::vector<int32_t>& ids, uint32_t branch);

  // Asks for the token after `position`, whose row at S is `row` ([1, D] or
  // [D]). `position` must equal the next expected position (every earlier row
  // was sent as context). `done` is called exactly once. A non-OK return means
  // `done` will not be called.
  absl::Status Continue(const std::string& session_id, const std::string& owner,
                        int64_t position, const at::Tensor& row, ContinueCallback done);
  // The general form (the one above is branch 0, no draft, the session's
  // sampling). A draft is checked with ValidateDraft and the sampling override
  // with SamplingParams::Validate (InvalidArgument). A request of an older
  // branch is not queued: it returns OK and `done` gets Cancelled on the
  // calling thread before Continue returns; a newer branch is InvalidArgument.
  // A Continue queued on the branch that a rejection before it abandons gets
  // Cancelled on the scheduler thread.
  absl::Status Continue(const std::string& session_id, const std::string& owner,
                        ContinueRequest request, ContinueCallback done);

  // The server's stream for a session: Attach (after Open) returns a token
  // naming this attachment; Detach(token) when that stream ends drops the
  // session's queued work — context rows not run yet and waiting Continues
  // (their callbacks get Cancelled) — so nobody's compute goes to answers no
  // one will read. The session itself stays (positions run so far, and any
  // batch already running) for a resume until the TTL. A Detach whose token
  // is not the session's latest attachment (a newer stream took the session
  // over) does nothing. Returns the rows dropped; NotFound / PermissionDenied
  // as Held.
  absl::StatusOr<uint64_t> Attach(const std::string& session_id, const std::string& owner);
  absl::StatusOr<int64_t> Detach(const std::string& session_id, const std::string& owner,
                                 uint64_t attachment);

  // Drops the session (its pending Continues fail with Cancelled).
  absl::Status Close(const std::string& session_id, const std::string& owner);

  // Expires sessions idle longer than the TTL (also done by the scheduler
  // periodically). Returns how many were dropped.
  int64_t ExpireIdle();

  // Waits until no Continue is pending or `deadline` passes; true when drained.
  bool Drain(absl::Time deadline);

  // Positions held by a session (received: run or queued, i.e. the next
  // position it expects), or NotFound / PermissionDenied.
  absl::StatusOr<int64_t> Held(const std::string& session_id, const std::string& owner) const;
  // Held() and the session's speculation branch, read together.
  absl::StatusOr<SessionPosition> Position(const std::string& session_id,
                                           const std::string& owner) const;

  // A copy of the session's [S, L) KV cache, for tests and diagnostics: for
  // each layer S .. L-1 its keys then its values, each [kv_heads, length,
  // head_dim] in the compute dtype. Waits for a running batch of the session,
  // like Truncate. NotFound / PermissionDenied as Held.
  absl::StatusOr<std::vector<at::Tensor>> CacheSnapshot(const std::string& session_id,
                                                        const std::string& owner) const;

  ContextStats stats() const;
  const CloudModel& model() const;
  const ContextLimits& limits() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
  std::unique_ptr<Scheduler> scheduler_;
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_CONTEXT_MANAGER_H_
