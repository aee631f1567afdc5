// SessionTable's work side: what the Scheduler thread takes and hands back.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/session_table.h"

namespace tandem::cloud {

bool SessionTable::HasWorkOrStop() const { return stopping_ || !ready_.empty(); }

bool SessionTable::WaitForWork(std::vector<WorkItem>* items) {
  items->clear();
  absl::MutexLock lock(&mu_);
  while (true) {
    const absl::Time now = absl::Now();
    if (now >= next_expiry_) {
      ExpireLocked(now);
      next_expiry_ = now + expiry_tick_;
    }
    if (stopping_) return false;
    int64_t rows = 0;
    while (!ready_.empty()) {
      SessionPtr s = ready_.front();
      if (!ReadyToRun(*s)) {  // stale: dropped, or its work was truncated away
        ready_.pop_front();
        s->in_ready = false;
        continue;
      }
      // A session's work is never split; the first session always goes.
      if (!items->empty() && rows + s->waiting_rows > limits_.max_batch_rows) break;
      ready_.pop_front();
      s->in_ready = false;
      WorkItem item;
      item.session = s;
      item.first_position = s->run_end;
      item.rows = s->waiting_rows;
      item.chunks = std::move(s->queue);
      s->queue.clear();
      s->flight_rows = s->waiting_rows;
      s->flight_continues = s->waiting_continues;
      s->waiting_rows = s->waiting_continues = s->waiting_token_chunks = 0;
      s->in_flight = true;
      rows += item.rows;
      items->push_back(std::move(item));
    }
    if (!items->empty()) {
      batch_running_ = true;
      return true;
    }
    mu_.AwaitWithDeadline(absl::Condition(this, &SessionTable::HasWorkOrStop), next_expiry_);
  }
}

void SessionTable::Complete(std::vector<WorkItem>* items, double seconds,
                            std::vector<Delivery>* deliveries) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  ++counters_.batches;
  counters_.compute_seconds += seconds;
  for (WorkItem& item : *items) {
    const SessionPtr& s = item.session;
    s->in_flight = false;
    int64_t continues = 0;
    for (const Chunk& c : item.chunks) continues += c.is_continue() ? 1 : 0;
    pending_continues_ -= continues;
    if (s->dead) {  // closed while it ran: its accounting is already gone
      const absl::Status why = absl::CancelledError(absl::StrCat("session ", s->id, " was closed"));
      for (Chunk& c : item.chunks) {
        if (c.is_continue()) deliveries->push_back({std::move(c.done), why});
      }
      s->cache.reset();
      s->prefix.reset();
      continue;
    }
    s->flight_rows = 0;
    s->flight_continues = 0;
    queued_rows_ -= item.rows;
    if (!item.status.ok()) {
      // The cache may hold part of the rows: the session cannot continue. Drop
      // it; the edge resyncs (NotFound -> ResyncRequired).
      for (Chunk& c : item.chunks) {
        if (c.is_continue()) deliveries->push_back({std::move(c.done), item.status});
      }
      Drop(s, item.status, deliveries);
      ++counters_.failed;
      continue;
    }
    s->run_end += item.rows;
    counters_.rows_run += item.rows;
    const uint32_t branch = s->branch;
    const bool rejected = item.rejected_position >= 0;
    // Under the lock with the rest of the rollback, so no row of the abandoned
    // branch can be queued between the answer and the truncation.
    if (rejected) RollBack(s.get(), item.rejected_position, deliveries);
    const absl::Status superseded = absl::CancelledError(absl::StrCat(
        "superseded: the draft at position ", item.rejected_position, " was rejected"));
    size_t k = 0;
    for (Chunk& c : item.chunks) {
      if (!c.is_continue()) continue;
      if (k < item.results.size()) {
        ContinueResult& r = item.results[k];
        r.branch = r.verdict == Verdict::kRejected ? branch + 1 : branch;
        if (r.verdict == Verdict::kAccepted) ++counters_.drafts_accepted;
        if (r.verdict == Verdict::kRejected) ++counters_.drafts_rejected;
        deliveries->push_back({std::move(c.done), std::move(r)});
        ++counters_.tokens_served;
      } else if (rejected) {
        deliveries->push_back({std::move(c.done), superseded});
        ++counters_.superseded;
      } else {
        deliveries->push_back({std::move(c.done), absl::InternalError("no result was produced")});
      }
      ++k;
    }
    MaybeFreePrefix(s.get());
    Reaccount(s.get());
    s->last_activity = now;
    MarkReadyIfNeeded(s);
  }
  batch_running_ = false;
}

void SessionTable::RollBack(Session* s, int64_t position, std::vector<Delivery>* out) {
  const int64_t keep = position + 1;
  const absl::Status superseded = absl::CancelledError(
      absl::StrCat("superseded: the draft at position ", position, " was rejected"));
  for (Chunk& c : s->queue) {
    if (!c.is_continue()) continue;
    out->push_back({std::move(c.done), superseded});
    ++counters_.superseded;
  }
  counters_.rows_rolled_back += std::max<int64_t>(s->run_end - keep, 0) + s->waiting_rows;
  s->queue.clear();
  pending_continues_ -= s->waiting_continues;
  queued_rows_ -= s->waiting_rows;
  s->waiting_rows = s->waiting_continues = s->waiting_token_chunks = 0;
  s->next_position = keep;
  s->run_end = std::min(s->run_end, keep);
  s->token_end = std::min(s->token_end, keep);
  s->cache->Truncate(keep);
  if (s->prefix) s->prefix->Truncate(keep);
  ++s->branch;
}

void SessionTable::RequestStop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

void SessionTable::CancelAll(std::vector<Delivery>* cancelled) {
  absl::MutexLock lock(&mu_);
  const absl::Status why = absl::CancelledError("the context manager is shutting down");
  for (auto& [id, s] : sessions_) {
    for (Chunk& c : s->queue) {
      if (c.is_continue()) {
        cancelled->push_back({std::move(c.done), why});
        c.done = nullptr;
      }
    }
    pending_continues_ -= s->waiting_continues;
    s->waiting_continues = 0;
  }
}

}  // namespace tandem::cloud
