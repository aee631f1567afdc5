#include "core/session_table.h"

#include <algorithm>
#include <exception>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "tandem/status_macros.h"

namespace tandem::cloud {
namespace {

constexpr size_t kMaxSessionIdBytes = 256;

absl::Status NotHeld(const std::string& id) {
  return absl::NotFoundError(absl::StrCat(
      "session ", id, " is not held here (never opened, closed, evicted or expired)"));
}

}  // namespace

void Deliver(std::vector<Delivery>* deliveries) {
  for (Delivery& d : *deliveries) {
    if (!d.done) continue;
    try {
      d.done(std::move(d.result));
    } catch (...) {
      // A callback must not throw; never let it take the caller down.
    }
  }
  deliveries->clear();
}

ContextLimits NormalizeLimits(const ContextLimits& limits, const ModelConfig& config) {
  ContextLimits l = limits;
  l.memory_budget_bytes = std::max<int64_t>(l.memory_budget_bytes, 0);
  l.max_sessions = std::max<int64_t>(l.max_sessions, 1);
  if (l.max_positions <= 0) l.max_positions = config.max_position_embeddings;
  if (l.idle_ttl <= absl::ZeroDuration()) l.idle_ttl = absl::InfiniteDuration();
  l.max_queued_rows = std::max<int64_t>(l.max_queued_rows, 1);
  l.max_batch_rows = std::max<int64_t>(l.max_batch_rows, 1);
  l.max_session_batch_rows =
      std::clamp<int64_t>(l.max_session_batch_rows, 0, l.max_batch_rows);
  l.max_sessions_per_identity = std::max<int64_t>(l.max_sessions_per_identity, 0);
  l.max_queued_rows_per_identity = std::max<int64_t>(l.max_queued_rows_per_identity, 0);
  l.rows_per_second_per_identity = std::max(l.rows_per_second_per_identity, 0.0);
  l.rows_burst_per_identity = std::max<int64_t>(l.rows_burst_per_identity, 0);
  l.trim_after_free_bytes = std::max<int64_t>(l.trim_after_free_bytes, 0);
  return l;
}

SessionTable::SessionTable(std::shared_ptr<const CloudModel> model, const ContextLimits& limits)
    : model_(std::move(model)),
      limits_(NormalizeLimits(limits, model_->config())),
      row_bytes_(model_->hidden_size() * static_cast<int64_t>(at::elementSize(
                                             model_->model().options().dtype))),
      expiry_tick_(std::clamp(limits_.idle_ttl / 4, absl::Milliseconds(10), absl::Seconds(1))) {
  next_expiry_ = absl::Now() + expiry_tick_;
}

int64_t SessionTable::CacheBytes(int64_t capacity, int64_t begin, int64_t end) const {
  const ModelConfig& c = model_->config();
  return (end - begin) * 2 * c.num_key_value_heads * capacity * c.head_dim *
         static_cast<int64_t>(at::elementSize(model_->model().options().dtype));
}

int64_t SessionTable::SessionBytes(const Session& s) const {
  int64_t bytes = (s.waiting_rows + s.flight_rows) * row_bytes_;
  if (s.cache) bytes += s.cache->allocated_bytes();
  if (s.prefix) bytes += s.prefix->allocated_bytes();
  return bytes;
}

void SessionTable::Reaccount(Session* s) {
  if (s->dead) return;
  const int64_t now = SessionBytes(*s);
  memory_bytes_ += now - s->bytes;
  s->bytes = now;
}

OwnerState* SessionTable::Owner(const std::string& owner) {
  auto [it, inserted] = owners_.try_emplace(owner);
  if (inserted) {
    it->second.rate.Configure(limits_.rows_per_second_per_identity,
                              limits_.rows_burst_per_identity);
  }
  return &it->second;
}

void SessionTable::AddQueued(Session* s, int64_t rows) {
  queued_rows_ += rows;
  s->owner_state->queued_rows += rows;
}

absl::Status SessionTable::CheckQuota(const Session& s, int64_t rows, absl::Time now) {
  OwnerState& o = *s.owner_state;
  const int64_t max_queued = limits_.max_queued_rows_per_identity;
  if (max_queued > 0 && o.queued_rows + rows > max_queued) {
    ++counters_.quota_refusals;
    return absl::ResourceExhaustedError(absl::StrCat(
        "quota: identity '", s.owner, "' has ", o.queued_rows, " rows queued; ", rows,
        " more would exceed its quota of ", max_queued, " queued rows"));
  }
  if (!o.rate.Allows(rows, now)) {
    ++counters_.quota_refusals;
    return absl::ResourceExhaustedError(absl::StrCat(
        "quota: identity '", s.owner, "' exceeds its rate of ",
        limits_.rows_per_second_per_identity, " rows/s (burst ", o.rate.burst(),
        " rows); slow down and retry"));
  }
  return absl::OkStatus();
}

void SessionTable::NoteFreed(int64_t bytes) {
  if (limits_.trim_after_free_bytes <= 0 || bytes <= 0) return;
  freed_since_trim_ += bytes;
  if (freed_since_trim_ >= limits_.trim_after_free_bytes) trim_wanted_ = true;
}

absl::StatusOr<SessionTable::SessionPtr> SessionTable::FindOwned(const std::string& id,
                                                                  const std::string& owner) const {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return NotHeld(id);
  if (it->second->owner != owner) {
    return absl::PermissionDeniedError(
        absl::StrCat("session ", id, " belongs to another identity"));
  }
  return it->second;
}

std::vector<SessionTable::SessionPtr> SessionTable::EvictionOrder(const Session* keep) const {
  std::vector<SessionPtr> order;
  for (const auto& [id, s] : sessions_) {
    if (s.get() != keep && s->Idle()) order.push_back(s);
  }
  std::sort(order.begin(), order.end(), [](const SessionPtr& a, const SessionPtr& b) {
    return a->last_activity < b->last_activity;
  });
  return order;
}

absl::Status SessionTable::CanMakeRoom(int64_t bytes, const Session* keep) const {
  const int64_t budget = limits_.memory_budget_bytes;
  if (memory_bytes_ + bytes <= budget) return absl::OkStatus();
  int64_t freeable = 0;
  for (const SessionPtr& s : EvictionOrder(keep)) freeable += s->bytes;
  if (memory_bytes_ - freeable + bytes > budget) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "memory budget of ", budget, " bytes exhausted: ", memory_bytes_, " in use, ", bytes,
        " more needed, ", freeable, " held by idle sessions"));
  }
  return absl::OkStatus();
}

absl::Status SessionTable::MakeRoom(int64_t bytes, const Session* keep) {
  const int64_t budget = limits_.memory_budget_bytes;
  if (memory_bytes_ + bytes <= budget) return absl::OkStatus();
  TANDEM_RETURN_IF_ERROR(CanMakeRoom(bytes, keep));
  for (const SessionPtr& s : EvictionOrder(keep)) {
    if (memory_bytes_ + bytes <= budget) break;
    Drop(s, NotHeld(s->id), nullptr);  // idle: no Continue to fail
    ++counters_.evicted;
  }
  return absl::OkStatus();
}

void SessionTable::Drop(const SessionPtr& s, const absl::Status& why,
                        std::vector<Delivery>* out) {
  if (s->dead) return;
  auto it = sessions_.find(s->id);
  if (it != sessions_.end() && it->second == s) sessions_.erase(it);
  s->dead = true;
  for (Chunk& c : s->queue) {
    if (c.is_continue() && out != nullptr) out->push_back({std::move(c.done), why});
  }
  s->queue.clear();
  pending_continues_ -= s->waiting_continues;  // running ones end in Complete
  AddQueued(s.get(), -(s->waiting_rows + s->flight_rows));
  --s->owner_state->sessions;
  memory_bytes_ -= s->bytes;
  s->waiting_rows = s->waiting_continues = s->waiting_token_chunks = s->flight_rows = 0;
  s->bytes = 0;
  if (!s->in_flight) {
    int64_t freed = 0;
    if (s->cache) freed += s->cache->allocated_bytes();
    if (s->prefix) freed += s->prefix->allocated_bytes();
    s->cache.reset();
    s->prefix.reset();
    NoteFreed(freed);
  }
  // The last session gone: give back whatever was freed since the last trim.
  if (sessions_.empty() && freed_since_trim_ > 0 && limits_.trim_after_free_bytes > 0) {
    trim_wanted_ = true;
  }
}

void SessionTable::MaybeFreePrefix(Session* s) {
  if (s->prefix && !s->in_flight && s->waiting_token_chunks == 0 &&
      s->next_position != s->token_end) {
    NoteFreed(s->prefix->allocated_bytes());
    s->prefix.reset();
  }
}

bool SessionTable::ReadyToRun(const Session& s) const {
  return !s.dead && !s.in_flight &&
         (s.waiting_continues > 0 || s.waiting_rows >= limits_.max_queued_rows);
}

void SessionTable::MarkReadyIfNeeded(const SessionPtr& s) {
  if (!s->in_ready && ReadyToRun(*s)) {
    s->in_ready = true;
    ready_.push_back(s);
  }
}

absl::StatusOr<int64_t> SessionTable::Open(const std::string& id, const std::string& owner,
                                           const SessionOptions& options) {
  if (id.empty() || id.size() > kMaxSessionIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a session id must have 1 to ", kMaxSessionIdBytes, " bytes"));
  }
  TANDEM_RETURN_IF_ERROR(options.sampling.Validate());
  if (options.sampling.vocab_limit > model_->model().config().vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("vocab_limit ", options.sampling.vocab_limit, " exceeds the model's ",
                     model_->model().config().vocab_size, " ids"));
  }
  if (options.capacity < 0 || options.capacity > limits_.max_positions) {
    return absl::InvalidArgumentError(absl::StrCat("capacity ", options.capacity,
                                                   " must be in [0, ", limits_.max_positions,
                                                   "] (0 = the server's limit)"));
  }
  const int64_t capacity = options.capacity > 0 ? options.capacity : limits_.max_positions;
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::CancelledError("the context manager is shutting down");
  auto it = sessions_.find(id);
  if (it != sessions_.end()) {
    if (it->second->owner != owner) {
      return absl::PermissionDeniedError(
          absl::StrCat("session ", id, " belongs to another identity"));
    }
    it->second->last_activity = absl::Now();
    return it->second->next_position;
  }
  const int64_t split = model_->split(), layers = model_->num_layers();
  const int64_t bytes = CacheBytes(capacity, split, layers);
  OwnerState* owner_state = Owner(owner);
  const int64_t per_identity = limits_.max_sessions_per_identity;
  if (per_identity > 0 && owner_state->sessions >= per_identity) {
    // The identity's own least recently used idle session makes room.
    SessionPtr victim;
    for (const SessionPtr& s : EvictionOrder(nullptr)) {
      if (s->owner == owner) {
        victim = s;
        break;
      }
    }
    if (victim == nullptr) {
      ++counters_.quota_refusals;
      return absl::ResourceExhaustedError(absl::StrCat(
          "quota: identity '", owner, "' holds ", owner_state->sessions,
          " sessions, its quota; none of them is idle to evict"));
    }
    Drop(victim, NotHeld(victim->id), nullptr);
    ++counters_.evicted;
  }
  if (static_cast<int64_t>(sessions_.size()) >= limits_.max_sessions) {
    std::vector<SessionPtr> order = EvictionOrder(nullptr);
    if (order.empty()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "all ", limits_.max_sessions, " sessions are busy; none is idle to evict"));
    }
    // Evict the least recently used idle session, but only if the new one then fits.
    TANDEM_RETURN_IF_ERROR(CanMakeRoom(bytes, nullptr));
    Drop(order.front(), NotHeld(order.front()->id), nullptr);
    ++counters_.evicted;
  }
  TANDEM_RETURN_IF_ERROR(MakeRoom(bytes, nullptr));
  auto s = std::make_shared<Session>(id, owner, owner_state, options, capacity);
  try {
    TANDEM_ASSIGN_OR_RETURN(s->cache, model_->model().NewCache(capacity, split, layers));
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(absl::StrCat("allocating the KV cache: ", e.what()));
  }
  s->last_activity = absl::Now();
  sessions_.emplace(id, s);
  ++owner_state->sessions;
  Reaccount(s.get());
  ++counters_.opened;
  return int64_t{0};
}

absl::StatusOr<ContextReceipt> SessionTable::Enqueue(const std::string& id,
                                                     const std::string& owner, uint32_t branch,
                                                     Chunk chunk,
                                                     std::vector<Delivery>* cancelled) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::CancelledError("the context manager is shutting down");
  TANDEM_ASSIGN_OR_RETURN(SessionPtr s, FindOwned(id, owner));
  ContextReceipt receipt;
  if (branch < s->branch) {
    // Built on a draft the session rejected: its positions mean nothing now.
    receipt.stale = true;
    receipt.session = {s->next_position, s->branch};
    ++counters_.stale_dropped;
    if (chunk.is_continue()) {
      cancelled->push_back({std::move(chunk.done),
                            absl::CancelledError(absl::StrCat(
                                "request of speculation branch ", branch, ", session ", id,
                                " is at branch ", s->branch))});
    }
    s->last_activity = absl::Now();
    return receipt;
  }
  if (branch > s->branch) {
    return absl::InvalidArgumentError(absl::StrCat("speculation branch ", branch,
                                                   " is ahead of session ", id, "'s branch ",
                                                   s->branch));
  }
  if (chunk.first < s->next_position) {
    return absl::InvalidArgumentError(absl::StrCat(
        "position ", chunk.first, " is a duplicate: session ", id, " already holds positions [0, ",
        s->next_position, ")"));
  }
  if (chunk.first > s->next_position) {
    return absl::InvalidArgumentError(absl::StrCat("position ", chunk.first,
                                                   " is out of order: session ", id,
                                                   " expects position ", s->next_position, " next"));
  }
  if (chunk.first + chunk.rows > s->capacity) {
    return absl::OutOfRangeError(absl::StrCat("positions up to ", chunk.first + chunk.rows - 1,
                                              " exceed the session's capacity of ", s->capacity));
  }
  const absl::Time now = absl::Now();
  TANDEM_RETURN_IF_ERROR(CheckQuota(*s, chunk.rows, now));
  int64_t bytes = chunk.rows * row_bytes_;
  const bool tokens = chunk.is_tokens();
  bool need_prefix = false;
  if (tokens) {
    if (!model_->can_embed()) {
      return absl::FailedPreconditionError(
          "this server does not hold layers [0, S): it cannot take token ids");
    }
    if (!s->AcceptsTokens()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "session ", id, " holds hidden-state context: token ids can only rebuild it from "
          "position 0 (Truncate(0) first) or extend a session built from token ids"));
    }
    need_prefix = s->prefix == nullptr;
    if (need_prefix) bytes += CacheBytes(s->capacity, 0, model_->split());
  }
  TANDEM_RETURN_IF_ERROR(MakeRoom(bytes, s.get()));
  if (need_prefix) {
    try {
      TANDEM_ASSIGN_OR_RETURN(s->prefix, model_->model().NewCache(s->capacity, 0, model_->split()));
    } catch (const std::exception& e) {
      return absl::ResourceExhaustedError(absl::StrCat("allocating the [0, S) cache: ", e.what()));
    }
  }
  const int64_t rows = chunk.rows;
  if (tokens) {
    s->token_end += rows;
    ++s->waiting_token_chunks;
  }
  if (chunk.is_continue()) {
    ++s->waiting_continues;
    ++pending_continues_;
  } else {
    counters_.rows_received += rows;
  }
  s->queue.push_back(std::move(chunk));
  s->waiting_rows += rows;
  s->next_position += rows;
  AddQueued(s.get(), rows);
  s->owner_state->rate.Take(rows, now);
  MaybeFreePrefix(s.get());
  Reaccount(s.get());
  s->last_activity = absl::Now();
  MarkReadyIfNeeded(s);
  receipt.session = {s->next_position, s->branch};
  return receipt;
}

absl::StatusOr<int64_t> SessionTable::Truncate(const std::string& id, const std::string& owner,
                                               int64_t position, std::vector<Delivery>* aborted) {
  if (position < 0) return absl::InvalidArgumentError("Truncate: position must be >= 0");
  absl::MutexLock lock(&mu_);
  TANDEM_ASSIGN_OR_RETURN(SessionPtr s, FindOwned(id, owner));
  // The scheduler owns the caches while it runs this session's batch.
  Session* raw = s.get();
  mu_.Await(absl::Condition(
      +[](Session* x) { return !x->in_flight || x->dead; }, raw));
  if (s->dead) return NotHeld(id);
  const absl::Status why = absl::AbortedError(
      absl::StrCat("session ", id, " was truncated to position ", position));
  std::deque<Chunk> kept;
  for (Chunk& c : s->queue) {
    if (c.is_continue()) {
      aborted->push_back({std::move(c.done), why});
      c.done = nullptr;
      --s->waiting_continues;
      --pending_continues_;
    }
    if (c.first >= position) {
      s->waiting_rows -= c.rows;
      AddQueued(s.get(), -c.rows);
      if (c.is_tokens()) --s->waiting_token_chunks;
      continue;
    }
    if (c.first + c.rows > position) {
      const int64_t keep = position - c.first;
      s->waiting_rows -= c.rows - keep;
      AddQueued(s.get(), -(c.rows - keep));
      if (c.is_tokens()) {
        c.ids.resize(keep);
      } else {
        c.hidden = c.hidden.narrow(0, 0, keep).clone();
      }
      c.rows = keep;
    }
    kept.push_back(std::move(c));
  }
  s->queue = std::move(kept);
  if (position < s->next_position) {
    s->next_position = position;
    s->token_end = std::min(s->token_end, position);
    s->run_end = std::min(s->run_end, position);
    s->cache->Truncate(position);
    if (s->prefix) s->prefix->Truncate(position);
  }
  MaybeFreePrefix(s.get());
  Reaccount(s.get());
  s->last_activity = absl::Now();
  MarkReadyIfNeeded(s);
  return s->next_position;
}

absl::Status SessionTable::Close(const std::string& id, const std::string& owner,
                                 std::vector<Delivery>* cancelled) {
  absl::MutexLock lock(&mu_);
  TANDEM_ASSIGN_OR_RETURN(SessionPtr s, FindOwned(id, owner));
  Drop(s, absl::CancelledError(absl::StrCat("session ", id, " was closed")), cancelled);
  ++counters_.closed;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> SessionTable::Attach(const std::string& id, const std::string& owner) {
  absl::MutexLock lock(&mu_);
  TANDEM_ASSIGN_OR_RETURN(SessionPtr s, FindOwned(id, owner));
  s->attachment = ++next_attachment_;
  return s->attachment;
}

absl::StatusOr<int64_t> SessionTable::Detach(const std::string& id, const std::string& owner,
                                             uint64_t attachment,
                                             std::vector<Delivery>* cancelled) {
  absl::MutexLock lock(&mu_);
  TANDEM_ASSIGN_OR_RETURN(SessionPtr s, FindOwned(id, owner));
  if (s->attachment != attachment) return int64_t{0};  // a newer stream serves it
  const absl::Status why =
      absl::CancelledError(absl::StrCat("session ", id, ": its stream ended"));
  const int64_t rows = s->waiting_rows;
  for (Chunk& c : s->queue) {
    if (!c.is_continue()) continue;
    cancelled->push_back({std::move(c.done), why});
    ++counters_.abandoned_continues;
  }
  counters_.abandoned_rows += rows;
  s->queue.clear();
  pending_continues_ -= s->waiting_continues;
  AddQueued(s.get(), -rows);
  // The queue is the tail of the session's positions: it now ends where the
  // rows run (or running) end.
  s->next_position -= rows;
  s->token_end = std::min(s->token_end, s->next_position);
  s->waiting_rows = s->waiting_continues = s->waiting_token_chunks = 0;
  MaybeFreePrefix(s.get());
  Reaccount(s.get());
  return rows;
}

absl::StatusOr<int64_t> SessionTable::Held(const std::string& id, const std::string& owner) const {
  absl::MutexLock lock(&mu_);
  TANDEM_ASSIGN_OR_RETURN(SessionPtr s, FindOwned(id, owner));
  return s->next_position;
}

absl::StatusOr<SessionPosition> SessionTable::Position(const std::string& id,
                                                       const std::string& owner) const {
  absl::MutexLock lock(&mu_);
  TANDEM_ASSIGN_OR_RETURN(SessionPtr s, FindOwned(id, owner));
  return SessionPosition{s->next_position, s->branch};
}

absl::StatusOr<std::vector<at::Tensor>> SessionTable::CacheSnapshot(
    const std::string& id, const std::string& owner) const {
  absl::MutexLock lock(&mu_);
  TANDEM_ASSIGN_OR_RETURN(SessionPtr s, FindOwned(id, owner));
  Session* raw = s.get();
  mu_.Await(absl::Condition(+[](Session* x) { return !x->in_flight || x->dead; }, raw));
  if (s->dead || s->cache == nullptr) return NotHeld(id);
  std::vector<at::Tensor> out;
  for (int64_t layer = s->cache->layer_begin(); layer < s->cache->layer_end(); ++layer) {
    out.push_back(s->cache->keys(layer).clone());
    out.push_back(s->cache->values(layer).clone());
  }
  return out;
}

int64_t SessionTable::ExpireLocked(absl::Time now) {
  std::vector<SessionPtr> expired;
  for (const auto& [id, s] : sessions_) {
    if (s->Idle() && now - s->last_activity > limits_.idle_ttl) expired.push_back(s);
  }
  for (const SessionPtr& s : expired) Drop(s, NotHeld(s->id), nullptr);
  counters_.expired += static_cast<int64_t>(expired.size());
  return static_cast<int64_t>(expired.size());
}

int64_t SessionTable::ExpireIdle() {
  absl::MutexLock lock(&mu_);
  return ExpireLocked(absl::Now());
}

bool SessionTable::DrainedOrStopped() const {
  return stopping_ || (pending_continues_ == 0 && !batch_running_ && ready_.empty());
}

bool SessionTable::Drain(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithDeadline(absl::Condition(this, &SessionTable::DrainedOrStopped), deadline);
  return pending_continues_ == 0 && !batch_running_;
}

ContextStats SessionTable::stats() const {
  absl::MutexLock lock(&mu_);
  ContextStats out = counters_;
  out.sessions = static_cast<int64_t>(sessions_.size());
  out.memory_bytes = memory_bytes_;
  out.queued_rows = queued_rows_;
  return out;
}

}  // namespace tandem::cloud
