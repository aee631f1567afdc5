// SessionTable's work side: what the Scheduler thread takes and hands back.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/session_table.h"
#include "core/memory_release.h"

namespace tandem::cloud {

bool SessionTable::HasWorkOrStop() const { return stopping_ || trim_wanted_ || !ready_.empty(); }

namespace {

// Rows of `s`'s queue up to and including its first Continue; 0 when it has
// none; stops counting past `limit`.
int64_t RowsThroughFirstContinue(const Session& s, int64_t limit) {
  int64_t rows = 0;
  for (const Chunk& c : s.queue) {
    rows += c.rows;
    if (c.is_continue()) return rows;
    if (rows > limit) return rows;
  }
  return 0;
}

}  // namespace

int64_t SessionTable::TakeRows(const SessionPtr& s, int64_t max_rows, WorkItem* item) {
  if (item->session == nullptr) {
    item->session = s;
    item->first_position = s->run_end;
  }
  int64_t taken = 0;
  while (!s->queue.empty() && taken < max_rows) {
    Chunk& c = s->queue.front();
    const int64_t room = max_rows - taken;
    if (c.rows <= room) {
      taken += c.rows;
      if (c.is_continue()) {
        --s->waiting_continues;
        ++s->flight_continues;
      }
      if (c.is_tokens()) --s->waiting_token_chunks;
      item->chunks.push_back(std::move(c));
      s->queue.pop_front();
      continue;
    }
    // Split a chunk of context (a Continue is one row and always fits).
    Chunk head;
    head.first = c.first;
    head.rows = room;
    if (c.is_tokens()) {
      head.ids.assign(c.ids.begin(), c.ids.begin() + room);
      c.ids.erase(c.ids.begin(), c.ids.begin() + room);
    } else {
      head.hidden = c.hidden.narrow(0, 0, room);
      c.hidden = c.hidden.narrow(0, room, c.rows - room);
    }
    c.first += room;
    c.rows -= room;
    taken += room;
    item->chunks.push_back(std::move(head));
  }
  item->rows += taken;
  s->waiting_rows -= taken;
  s->flight_rows += taken;
  s->in_flight = true;
  return taken;
}

void SessionTable::SelectWork(std::vector<WorkItem>* items) {
  // The live ready sessions, in the order they became ready.
  std::vector<SessionPtr> ready;
  for (SessionPtr& s : ready_) {
    if (ReadyToRun(*s)) {
      ready.push_back(std::move(s));
    } else {
      s->in_ready = false;  // stale: dropped, or its work was truncated away
    }
  }
  ready_.clear();
  const int64_t budget = limits_.max_batch_rows;
  const int64_t quantum = limits_.max_session_batch_rows;
  ++iteration_;
  std::vector<bool> taken(ready.size(), false);
  int64_t rows = 0;
  if (quantum <= 0) {
    // First come, first served; a session's queue is never split and the
    // first session always goes.
    for (size_t i = 0; i < ready.size(); ++i) {
      const SessionPtr& s = ready[i];
      if (!items->empty() && rows + s->waiting_rows > budget) break;
      WorkItem item;
      rows += TakeRows(s, s->waiting_rows, &item);
      items->push_back(std::move(item));
      taken[i] = true;
    }
  } else {
    // Interactive sessions (their next Continue within `quantum` rows) before
    // backlogs; within a class, each identity's first session, then each
    // identity's second, ...; identities served least recently first.
    struct Candidate {
      size_t index;
      int cls;
      int64_t round;
      uint64_t owner_served;
    };
    std::vector<Candidate> order;
    absl::flat_hash_map<const OwnerState*, int64_t> rounds[2];
    for (size_t i = 0; i < ready.size(); ++i) {
      const Session& s = *ready[i];
      const int64_t through = RowsThroughFirstContinue(s, quantum);
      const int cls = through > 0 && through <= quantum ? 0 : 1;
      order.push_back({i, cls, rounds[cls][s.owner_state]++, s.owner_state->last_served});
    }
    std::stable_sort(order.begin(), order.end(), [](const Candidate& a, const Candidate& b) {
      if (a.cls != b.cls) return a.cls < b.cls;
      if (a.round != b.round) return a.round < b.round;
      return a.owner_served < b.owner_served;
    });
    for (const Candidate& c : order) {
      if (rows >= budget) break;
      const SessionPtr& s = ready[c.index];
      const int64_t share = std::min(s->waiting_rows, quantum);
      if (rows + share > budget) continue;  // a smaller share may still fit
      WorkItem item;
      rows += TakeRows(s, share, &item);
      items->push_back(std::move(item));
      taken[c.index] = true;
      s->owner_state->last_served = iteration_;
    }
    // Work-conserving: budget nobody else wants goes to the sessions taken.
    for (WorkItem& item : *items) {
      if (rows >= budget) break;
      rows += TakeRows(item.session, budget - rows, &item);
    }
  }
  for (size_t i = 0; i < ready.size(); ++i) {
    if (taken[i]) {
      ready[i]->in_ready = false;
    } else {
      ready_.push_back(std::move(ready[i]));
    }
  }
}

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
    if (trim_wanted_) {
      // Outside the lock: trimming walks every malloc arena.
      trim_wanted_ = false;
      freed_since_trim_ = 0;
      mu_.Unlock();
      ReturnFreeMemory();
      mu_.Lock();
      ++counters_.memory_trims;
      continue;
    }
    SelectWork(items);
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
      int64_t freed = 0;
      if (s->cache) freed += s->cache->allocated_bytes();
      if (s->prefix) freed += s->prefix->allocated_bytes();
      s->cache.reset();
      s->prefix.reset();
      NoteFreed(freed);
      continue;
    }
    s->flight_rows = 0;
    s->flight_continues = 0;
    AddQueued(s.get(), -item.rows);
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
}

void SessionTable::Delivered() {
  absl::MutexLock lock(&mu_);
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
  AddQueued(s, -s->waiting_rows);
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
