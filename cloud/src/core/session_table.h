// SessionTable: the context manager's sessions, limits and accounting, behind
// one mutex (internal). The public ContextManager validates inputs and calls
// the request side; the Scheduler calls the work side (WaitForWork / Complete).
//
// Memory accounting: a session costs its [S, L) cache (allocated capacity), its
// [0, S) cache while one exists, and its queued rows (waiting or in the running
// batch; token ids count as the rows they become). Making room evicts idle
// sessions (no Continue waiting or running, not in flight) least recently used
// first, and only when enough can be freed — otherwise nothing is evicted and
// the request is ResourceExhausted.
#ifndef TANDEM_CLOUD_CORE_SESSION_TABLE_H_
#define TANDEM_CLOUD_CORE_SESSION_TABLE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/batch_runner.h"
#include "core/session.h"
#include "tandem/cloud/cloud_model.h"
#include "tandem/cloud/context_manager.h"

namespace tandem::cloud {

// A callback and what to give it, run outside the lock.
struct Delivery {
  ContinueCallback done;
  absl::StatusOr<ContinueResult> result;
};
void Deliver(std::vector<Delivery>* deliveries);

class SessionTable {
 public:
  SessionTable(std::shared_ptr<const CloudModel> model, const ContextLimits& limits);

  const CloudModel& model() const { return *model_; }
  const ContextLimits& limits() const { return limits_; }

  // ---- request side (ContextManager) ----
  absl::StatusOr<int64_t> Open(const std::string& id, const std::string& owner,
                               const SessionOptions& options);
  // Queues a validated chunk (hidden rows, token ids or a Continue) built on
  // speculation branch `branch`. A chunk of an older branch is dropped (a
  // Continue's callback goes to `cancelled` with Cancelled); a newer one is
  // InvalidArgument.
  absl::StatusOr<ContextReceipt> Enqueue(const std::string& id, const std::string& owner,
                                         uint32_t branch, Chunk chunk,
                                         std::vector<Delivery>* cancelled);
  absl::StatusOr<int64_t> Truncate(const std::string& id, const std::string& owner,
                                   int64_t position, std::vector<Delivery>* aborted);
  absl::Status Close(const std::string& id, const std::string& owner,
                     std::vector<Delivery>* cancelled);
  absl::StatusOr<uint64_t> Attach(const std::string& id, const std::string& owner);
  // Drops the queued work of the session if `attachment` is still its latest
  // (ContextManager::Detach); waiting Continues go to `cancelled`.
  absl::StatusOr<int64_t> Detach(const std::string& id, const std::string& owner,
                                 uint64_t attachment, std::vector<Delivery>* cancelled);
  absl::StatusOr<int64_t> Held(const std::string& id, const std::string& owner) const;
  absl::StatusOr<SessionPosition> Position(const std::string& id, const std::string& owner) const;
  absl::StatusOr<std::vector<at::Tensor>> CacheSnapshot(const std::string& id,
                                                        const std::string& owner) const;
  int64_t ExpireIdle();
  bool Drain(absl::Time deadline);
  ContextStats stats() const;

  // ---- work side (Scheduler thread) ----
  // Blocks until there is ready work (fills `items`, true) or Stop (false).
  // Expires idle sessions periodically while waiting. Which work: see
  // SelectWork.
  bool WaitForWork(std::vector<WorkItem>* items);
  // Records a finished batch; what to tell the callbacks goes to `deliveries`.
  void Complete(std::vector<WorkItem>* items, double seconds, std::vector<Delivery>* deliveries);
  // The batch's callbacks have all run: Drain may now return (a drain that
  // returned between Complete and the callbacks would let the server say
  // GoingAway before the answers).
  void Delivered();
  // Makes WaitForWork return false (after the batch in progress, if any).
  void RequestStop();
  // After the scheduler stopped: every waiting Continue, to fail with Cancelled.
  void CancelAll(std::vector<Delivery>* cancelled);

 private:
  using SessionPtr = std::shared_ptr<Session>;

  absl::StatusOr<SessionPtr> FindOwned(const std::string& id, const std::string& owner) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Bytes a session should be accounted for now; Reaccount applies the change.
  int64_t SessionBytes(const Session& s) const;
  void Reaccount(Session* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t CacheBytes(int64_t capacity, int64_t begin, int64_t end) const;
  // Makes `bytes` more fit in the budget by evicting idle sessions other than
  // `keep`, least recently used first; evicts nothing when that cannot suffice.
  absl::Status MakeRoom(int64_t bytes, const Session* keep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether MakeRoom(bytes, keep) would succeed (ResourceExhausted if not).
  absl::Status CanMakeRoom(int64_t bytes, const Session* keep) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Idle sessions other than `keep`, least recently used first.
  std::vector<SessionPtr> EvictionOrder(const Session* keep) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes `s` from the table; its waiting Continues get `why`.
  void Drop(const SessionPtr& s, const absl::Status& why, std::vector<Delivery>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t ExpireLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeFreePrefix(Session* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A draft was rejected at `position` (Complete): keeps positions [0, position],
  // drops the session's queue (its Continues to `out`, Cancelled) and moves it
  // to the next branch. The session is not in flight.
  void RollBack(Session* s, int64_t position, std::vector<Delivery>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MarkReadyIfNeeded(const SessionPtr& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool ReadyToRun(const Session& s) const;
  bool HasWorkOrStop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fills `items` with this iteration's work from the ready sessions
  // (ContextLimits::max_session_batch_rows: interactive sessions first,
  // round-robin across identities, a bounded share each, leftover budget to
  // sessions already taken).
  void SelectWork(std::vector<WorkItem>* items) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves up to `max_rows` rows from the front of s's queue into `item`
  // (splitting a chunk of context if needed; a Continue is one row) and marks
  // the session in flight. Returns the rows moved.
  int64_t TakeRows(const SessionPtr& s, int64_t max_rows, WorkItem* item)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // queued_rows_ and the owner's queued rows move together.
  void AddQueued(Session* s, int64_t rows) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The identity's quota state (created on first use; identities are few: API
  // keys or certificate names).
  OwnerState* Owner(const std::string& owner) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queued-rows and rate quotas for `rows` more rows of `s`'s owner.
  absl::Status CheckQuota(const Session& s, int64_t rows, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Called after KV caches were freed: returns free heap to the system when
  // enough was freed since the last trim (ContextLimits::trim_after_free_bytes).
  void NoteFreed(int64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool DrainedOrStopped() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::shared_ptr<const CloudModel> model_;
  const ContextLimits limits_;
  const int64_t row_bytes_;         // one hidden row at S in the compute dtype
  const absl::Duration expiry_tick_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, SessionPtr> sessions_ ABSL_GUARDED_BY(mu_);
  std::deque<SessionPtr> ready_ ABSL_GUARDED_BY(mu_);  // may hold stale entries
  int64_t memory_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t queued_rows_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t pending_continues_ ABSL_GUARDED_BY(mu_) = 0;  // waiting + running
  bool batch_running_ ABSL_GUARDED_BY(mu_) = false;
  absl::node_hash_map<std::string, OwnerState> owners_ ABSL_GUARDED_BY(mu_);
  uint64_t iteration_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_attachment_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t freed_since_trim_ ABSL_GUARDED_BY(mu_) = 0;
  bool trim_wanted_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_expiry_ ABSL_GUARDED_BY(mu_);
  ContextStats counters_ ABSL_GUARDED_BY(mu_);  // the counter fields only
};

// Limits with defaults filled in and nonsense clamped (see ContextLimits).
ContextLimits NormalizeLimits(const ContextLimits& limits, const ModelConfig& config);

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_CORE_SESSION_TABLE_H_
