#include "link/link_core.h"

#include <algorithm>
#include <utility>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "wire_convert.h"

namespace tandem::edge::link {

LinkCore::LinkCore(const CloudOptions& options, const CodecSpec& codec, ModelIdentity model)
    : options_(options),
      codec_(codec),
      model_(std::move(model)),
      backoff_(options.reconnect_initial_backoff) {}

// --- the sequence -------------------------------------------------------------

void LinkCore::Begin(const SequenceInfo& info, std::string session_id, absl::Time now) {
  (void)now;
  FailAll(absl::CancelledError("a new sequence began"));
  verdicts_.clear();
  active_ = true;
  ++generation_;
  session_id_ = std::move(session_id);
  info_ = info;
  ids_.clear();
  rows_.clear();
  row_firsts_.clear();
  row_count_ = 0;
  releasable_ = 0;
  unsent_since_ = absl::InfiniteFuture();
  fence_ = -1;
  resume_limit_ = -1;
  sent_next_ = 0;
  // A stream of the previous sequence is stale: Poll retires it (Close) and
  // opens one for this sequence.
  if (state_ == State::kReady || state_ == State::kOpening) state_ = State::kDown;
  next_connect_ = absl::InfinitePast();  // a new sequence tries at once
  attempts_ = 0;
  tokens_refused_ = false;
  backoff_ = options_.reconnect_initial_backoff;
  ++version_;
}

void LinkCore::Input(int64_t first_position, absl::Span<const int32_t> ids) {
  if (first_position == static_cast<int64_t>(ids_.size())) {
    ids_.insert(ids_.end(), ids.begin(), ids.end());
  }
  releasable_ = history_size();  // a new step: nobody asks about older rows
  ++version_;
}

void LinkCore::Context(int64_t first_position, const at::Tensor& rows, absl::Time now) {
  if (first_position != history_size() || rows.size(0) == 0) return;
  if (sent_next_ >= releasable_) unsent_since_ = now;
  rows_.push_back(rows.detach().to(at::kFloat).contiguous().clone());
  row_firsts_.push_back(first_position);
  row_count_ += rows.size(0);
  releasable_ = history_size() - 1;
  ++version_;
}

void LinkCore::Truncate(int64_t position) {
  position = std::max<int64_t>(position, 0);
  if (static_cast<int64_t>(ids_.size()) > position) ids_.resize(position);
  while (!rows_.empty() && row_firsts_.back() >= position) {
    rows_.pop_back();
    row_firsts_.pop_back();
  }
  if (!rows_.empty() && row_firsts_.back() + rows_.back().size(0) > position) {
    rows_.back() = rows_.back().narrow(0, 0, position - row_firsts_.back()).clone();
  }
  row_count_ = std::min<size_t>(row_count_, position);
  releasable_ = std::min(releasable_, position);
  for (auto it = requests_.lower_bound(position); it != requests_.end();) {
    ++stats_.abandoned_requests;
    it = requests_.erase(it);
  }
  verdicts_.erase(std::remove_if(verdicts_.begin(), verdicts_.end(),
                                 [position](const CloudVerdict& v) { return v.position >= position; }),
                  verdicts_.end());
  if (fence_ >= 0 && position <= fence_) fence_ = -1;
  if (sent_next_ > position) {
    // The server holds rows the edge just dropped, and nothing told it to drop
    // them: start a new stream that resumes at `position` (Open truncates).
    resume_limit_ = resume_limit_ < 0 ? position : std::min(resume_limit_, position);
    if (stream_open_) broken_ = true;
    sent_next_ = position;
  }
  ++version_;
}

void LinkCore::Finish() {
  FailAll(absl::CancelledError("the sequence ended"));
  verdicts_.clear();
  releasable_ = history_size();
  active_ = false;
  ++generation_;
  ++version_;
}

absl::Status LinkCore::Submit(const ContinueRequest& request, absl::Time deadline,
                              absl::Time now) {
  ++stats_.requests;
  auto refuse = [this](absl::Status status) {
    ++stats_.failed_requests;
    stats_.last_error = status.ToString();
    return status;
  };
  if (!active_) return refuse(absl::FailedPreconditionError("no sequence is active on the cloud link"));
  const int64_t p = request.position;
  if (p < 0 || p >= history_size() || requests_.count(p) > 0) {
    return refuse(absl::InternalError(absl::StrCat("Continue for position ", p,
                                                   ": not a new row the link was given")));
  }
  if (!request.hidden_at_split.defined() || request.hidden_at_split.numel() != model_.hidden_size) {
    return refuse(absl::InvalidArgumentError("Continue needs one row of the hidden size"));
  }
  if (p < sent_next_ && state_ == State::kReady) {
    return refuse(absl::FailedPreconditionError("the row was already uploaded as context"));
  }
  // The sequence's first connection is worth waiting for (the request waits
  // for it up to its deadline); a link that failed and reconnects in the
  // background is not: the edge decides at once.
  const bool first_connection = state_ != State::kReady && (attempts_ == 0 ||
                                                            state_ == State::kConnecting ||
                                                            state_ == State::kOpening);
  if (state_ != State::kReady && !first_connection) {
    return refuse(absl::UnavailableError("the cloud is not connected"));
  }
  Request r;
  r.id = ++next_request_id_;
  r.position = p;
  r.row = request.hidden_at_split.detach().reshape({1, -1}).to(at::kFloat).contiguous().clone();
  r.draft_token = request.draft_token;
  r.draft = request.draft;
  r.sampling = request.sampling;
  r.submitted = now;
  r.deadline = deadline;
  requests_.emplace(p, std::move(r));
  ++version_;
  return absl::OkStatus();
}

std::vector<CloudVerdict> LinkCore::TakeVerdicts() {
  std::vector<CloudVerdict> out(std::make_move_iterator(verdicts_.begin()),
                                std::make_move_iterator(verdicts_.end()));
  verdicts_.clear();
  return out;
}

void LinkCore::Verdict(Request& request, const absl::Status& status, int32_t token, bool accepted,
                       absl::Time now) {
  CloudVerdict v;
  v.position = request.position;
  v.status = status;
  v.token = token;
  v.accepted = accepted;
  if (status.ok()) {
    ++stats_.cloud_tokens;
    ++(accepted ? stats_.drafts_accepted : stats_.drafts_rejected);
    stats_.request_seconds += absl::ToDoubleSeconds(now - request.submitted);
  } else {
    ++stats_.failed_requests;
    stats_.last_error = status.ToString();
  }
  verdicts_.push_back(std::move(v));
  ++version_;
}

void LinkCore::Fail(int64_t position, const absl::Status& status) {
  auto it = requests_.find(position);
  if (it == requests_.end()) return;
  Verdict(it->second, status, 0, false, absl::InfinitePast());
  requests_.erase(it);
}

void LinkCore::FailAll(const absl::Status& status) {
  while (!requests_.empty()) Fail(requests_.begin()->first, status);
}

void LinkCore::Unsend(int64_t position) {
  for (auto it = requests_.lower_bound(position); it != requests_.end(); ++it) {
    it->second.sent = false;
  }
}

// --- the stream ---------------------------------------------------------------

void LinkCore::Backoff(absl::Time now) {
  next_connect_ = now + backoff_;
  backoff_ = std::min(backoff_ * 2, options_.reconnect_max_backoff);
}

void LinkCore::Broken(absl::Time now) {
  (void)now;
  broken_ = true;
  if (state_ == State::kOpening || state_ == State::kReady) state_ = State::kDown;
  FailAll(absl::UnavailableError("the connection to the cloud was lost"));
  ++version_;
}

wire::ClientMessage LinkCore::Opened(uint64_t* stream_id) {
  // Resuming the same sequence on a new stream: the cloud may still hold what
  // was sent (it says so, or asks for a resync).
  int64_t resume = stream_generation_ == generation_ ? sent_next_ : 0;
  if (resume_limit_ >= 0) resume = std::min(resume, resume_limit_);
  resume_limit_ = -1;
  wire::ClientMessage message;
  wire::Open* open = message.mutable_open();
  open->set_protocol_version(wire::kProtocolVersion);
  open->set_model_fingerprint(model_.fingerprint);
  open->set_split(static_cast<uint32_t>(model_.split));
  for (int64_t e : model_.exit_layers) open->add_exit_layers(static_cast<uint32_t>(e));
  wire::ToProto(codec_, open->mutable_codec());
  wire::ToProto(info_.sampling, open->mutable_sampling());
  open->set_session_id(session_id_);
  open->set_capacity(static_cast<uint32_t>(info_.capacity));
  open->set_resume_next_position(static_cast<uint32_t>(resume));
  stats_.bytes_up += static_cast<int64_t>(message.ByteSizeLong());
  ++stats_.connects;
  ++attempts_;
  // The first stream of a sequence opens a session the server has never seen
  // (a fresh id, at position 0, branch 0), so it needs no answer before it
  // sends: the server reads the stream in order, and rows and drafts follow the
  // Open at once (saves a round trip per generation). Any later stream of the
  // sequence waits for the Ack, which says what the server still holds and on
  // which branch.
  const bool fresh_session = stream_generation_ != generation_;
  state_ = fresh_session ? State::kReady : State::kOpening;
  if (fresh_session) branch_ = 0;
  stream_open_ = true;
  stream_id_ += 1;
  *stream_id = stream_id_;
  stream_generation_ = generation_;
  broken_ = false;
  epoch_ = 0;
  sent_next_ = resume;
  Unsend(0);
  ++version_;
  return message;
}

void LinkCore::ConnectFailed(absl::Time now) {
  ++attempts_;
  ++stats_.connect_failures;
  state_ = State::kDown;
  FailAll(absl::UnavailableError("cannot connect to the cloud"));
  Backoff(now);
  ++version_;
}

void LinkCore::StreamBroken(uint64_t stream_id, absl::Time now) {
  if (stream_id != stream_id_ || stream_id == 0) return;
  if (state_ == State::kDown && broken_) return;
  Broken(now);
}

void LinkCore::Disconnected(absl::Time now) {
  const bool was_broken = broken_;
  state_ = State::kDown;
  stream_open_ = false;
  stream_id_ += 1;  // anything the old stream's reader still reports is ignored
  broken_ = false;
  // Drafts already sent on it will not be answered; unsent ones (a new
  // sequence waiting for its first stream) go on the next.
  std::vector<int64_t> lost;
  for (const auto& [position, r] : requests_) {
    if (r.sent) lost.push_back(position);
  }
  for (int64_t p : lost) Fail(p, absl::UnavailableError("the stream to the cloud was closed"));
  // A stream retired on purpose (a resume point moved back) reconnects at once.
  if (was_broken && active_ && resume_limit_ < 0) Backoff(now);
  ++version_;
}

void LinkCore::Received(uint64_t stream_id, const wire::ServerMessage& message, absl::Time now) {
  stats_.bytes_down += static_cast<int64_t>(message.ByteSizeLong());
  if (stream_id != stream_id_ || stream_generation_ != generation_ || !active_) return;
  switch (message.kind_case()) {
    case wire::ServerMessage::kToken:
      OnToken(message.token(), now);
      break;
    case wire::ServerMessage::kAck:
      token_resync_allowed_ = message.ack().token_resync();
      if (state_ == State::kOpening) {
        state_ = State::kReady;
        epoch_ = message.ack().epoch();
        branch_ = message.ack().branch();
        token_resync_allowed_ = message.ack().token_resync();
        sent_next_ = std::min<int64_t>(message.ack().next_position(), history_size());
        backoff_ = options_.reconnect_initial_backoff;
      }
      break;
    case wire::ServerMessage::kResync:
      OnResync(message.resync());
      break;
    case wire::ServerMessage::kError:
      OnError(message.error(), now);
      break;
    case wire::ServerMessage::kGoingAway:
      // The server drains: drop this stream now, like a lost one (requests
      // still waiting fail, the edge decides them), and reconnect with backoff
      // to resume the session wherever the address leads next.
      Broken(now);
      stats_.last_error = absl::StrCat("cloud: going away: ", message.going_away().reason());
      break;
    default:
      break;
  }
  ++version_;
}

void LinkCore::OnToken(const wire::Token& token, absl::Time now) {
  stats_.cloud_compute_seconds += token.compute_ms() / 1e3;
  const int64_t p = token.position();
  const bool rejected = token.verdict() == wire::VERDICT_REJECTED;
  auto it = requests_.find(p);
  const bool waiting = it != requests_.end() && it->second.id == token.request_id();
  if (rejected) {
    // The server truncated to [0, p] and moved to a new branch.
    branch_ = token.branch();
    sent_next_ = std::min<int64_t>(sent_next_, p + 1);
    if (waiting) {
      fence_ = p + 1;  // the edge rolls back to p + 1 before anything more goes
    } else {
      // The edge kept its own draft (deadline passed): its rows from p + 1 on
      // go again on the new branch, with any request after p.
      ++stats_.late_rejections;
      Unsend(p + 1);
    }
  }
  if (!waiting) return;
  Request& r = it->second;
  const bool accepted = !rejected && token.token_id() == r.draft_token;
  Verdict(r, absl::OkStatus(), token.token_id(), accepted, now);
  requests_.erase(it);
  if (!rejected && !accepted) {
    // A free answer (no verdict) that differs from the draft: the server did
    // not roll back, so the edge's rows after p must not be trusted there.
    resume_limit_ = p + 1;
    broken_ = true;
  }
}

void LinkCore::OnResync(const wire::ResyncRequired& resync) {
  if (resync.epoch() <= epoch_ && state_ == State::kReady) return;  // already handled
  epoch_ = resync.epoch();
  branch_ = resync.branch();
  const int64_t held = std::min<int64_t>(resync.next_position(), history_size());
  sent_next_ = held;
  token_resync_allowed_ = resync.token_resync();
  replaying_ = true;
  state_ = State::kReady;
  backoff_ = options_.reconnect_initial_backoff;
  ++stats_.resyncs;
  // Requests the server already holds the rows of cannot be asked again; the
  // others go again after the replay.
  while (!requests_.empty() && requests_.begin()->first < held) {
    Fail(requests_.begin()->first, absl::UnavailableError("the cloud resynced past the request"));
  }
  Unsend(held);
}

void LinkCore::OnError(const wire::Error& error, absl::Time now) {
  const absl::Status status = wire::FromProto(error, "cloud: ");
  if (error.request_id() != 0) {
    for (auto& [position, r] : requests_) {
      if (r.id == error.request_id()) {
        Fail(position, status);
        break;
      }
    }
  }
  if (error.code() == static_cast<int32_t>(absl::StatusCode::kResourceExhausted)) {
    tokens_refused_ = true;
  }
  if (error.fatal()) {
    Broken(now);
    stats_.last_error = status.ToString();  // the cloud's reason, not "connection lost"
  }
}

at::Tensor LinkCore::Rows(int64_t begin, int64_t end) const {
  std::vector<at::Tensor> parts;
  for (size_t i = 0; i < rows_.size(); ++i) {
    const int64_t first = row_firsts_[i], n = rows_[i].size(0);
    const int64_t lo = std::max(begin, first), hi = std::min(end, first + n);
    if (lo < hi) parts.push_back(rows_[i].narrow(0, lo - first, hi - lo));
  }
  return parts.size() == 1 ? parts[0] : at::cat(parts, 0);
}

void LinkCore::AppendContext(int64_t begin, int64_t end, std::vector<wire::ClientMessage>* out) {
  if (end <= begin) return;
  // Replays from position 0 may go as token ids (the cloud runs [0, S)).
  const bool as_tokens = replaying_ && begin == 0 && token_resync_allowed_ && !tokens_refused_ &&
                         options_.resync != ResyncPolicy::kHiddenStates &&
                         static_cast<int64_t>(ids_.size()) >= end;
  // Chunks keep each message well under the size limit.
  const int64_t row_bytes =
      std::max<int64_t>(1, EncodedSizeUncompressed(1, model_.hidden_size, codec_));
  const int64_t chunk =
      as_tokens ? 4096 : std::max<int64_t>(1, (options_.max_message_bytes / 2) / row_bytes);
  for (int64_t p = begin; p < end; p += chunk) {
    const int64_t stop = std::min(end, p + chunk);
    wire::ClientMessage message;
    wire::Context* context = message.mutable_context();
    context->set_epoch(epoch_);
    context->set_branch(branch_);
    context->set_first_position(static_cast<uint32_t>(p));
    if (as_tokens) {
      for (int64_t q = p; q < stop; ++q) context->mutable_tokens()->add_ids(ids_[q]);
    } else {
      absl::Status encoded;
      try {
        encoded = wire::EncodeRows(Rows(p, stop), codec_, context->mutable_hidden());
      } catch (const c10::Error& e) {
        encoded = absl::InternalError(e.what_without_backtrace());
      }
      if (!encoded.ok()) {  // cannot happen for finite rows; treat as a dead link
        stats_.last_error = encoded.ToString();
        broken_ = true;
        return;
      }
    }
    const int64_t bytes = static_cast<int64_t>(message.ByteSizeLong());
    stats_.bytes_up += bytes;
    stats_.context_bytes += bytes;
    stats_.context_rows += stop - p;
    if (replaying_) {
      (as_tokens ? stats_.resync_token_positions : stats_.resync_hidden_positions) += stop - p;
    }
    out->push_back(std::move(message));
  }
  replaying_ = false;
  sent_next_ = end;
}

LinkCore::Plan LinkCore::Poll(absl::Time now) {
  Plan plan;
  // Deadlines first: a request not answered in time is decided by the edge.
  for (auto it = requests_.begin(); it != requests_.end();) {
    if (it->second.deadline <= now) {
      const int64_t p = it->first;
      ++it;
      Fail(p, absl::DeadlineExceededError("the cloud did not answer in time"));
    } else {
      plan.wake = std::min(plan.wake, it->second.deadline);
      ++it;
    }
  }
  if (stream_open_ && (broken_ || !active_ || stream_generation_ != generation_)) {
    plan.want = Want::kDisconnect;
    plan.polite = !broken_;
    ++stream_id_;  // retired: what its reader reports from now on is ignored
    return plan;
  }
  if (!active_) return plan;
  if (state_ == State::kDown && !stream_open_) {
    if (now >= next_connect_) {
      state_ = State::kConnecting;
      plan.want = Want::kConnect;
    } else {
      plan.wake = std::min(plan.wake, next_connect_);
    }
    return plan;
  }
  if (state_ != State::kReady) return plan;

  const int64_t limit = fence_ >= 0 ? std::min(releasable_, fence_) : releasable_;
  // Requests, each after the rows before it.
  for (auto it = requests_.begin(); it != requests_.end();) {
    Request& r = it->second;
    if (r.sent) {
      ++it;
      continue;
    }
    if (fence_ >= 0 && r.position >= fence_) break;
    if (r.position < sent_next_) {
      const int64_t p = r.position;
      ++it;
      Fail(p, absl::FailedPreconditionError("the row was already uploaded as context"));
      continue;
    }
    AppendContext(sent_next_, r.position, &plan.writes);
    if (broken_) return plan;
    wire::ClientMessage message;
    wire::Continue* cont = message.mutable_continue_();
    cont->set_epoch(epoch_);
    cont->set_branch(branch_);
    cont->set_request_id(r.id);
    cont->set_position(static_cast<uint32_t>(r.position));
    absl::Status encoded = wire::EncodeRows(r.row, codec_, cont->mutable_hidden());
    if (!encoded.ok()) {
      const int64_t p = r.position;
      ++it;
      Fail(p, encoded);
      continue;
    }
    wire::Draft* draft = cont->mutable_draft();
    draft->set_token_id(r.draft_token);
    for (size_t i = 0; i < r.draft.ids.size(); ++i) {
      draft->add_ids(r.draft.ids[i]);
      draft->add_probs(r.draft.probs[i]);
    }
    wire::ToProto(r.sampling, cont->mutable_sampling());
    const int64_t bytes = static_cast<int64_t>(message.ByteSizeLong());
    stats_.bytes_up += bytes;
    stats_.continue_bytes += bytes;
    plan.writes.push_back(std::move(message));
    r.sent = true;
    sent_next_ = r.position + 1;
    ++it;
  }
  // A batch of context when it is due.
  if (limit > sent_next_) {
    const bool due = limit - sent_next_ >= options_.upload_batch_rows ||
                     now - unsent_since_ >= options_.upload_max_delay;
    if (due) {
      AppendContext(sent_next_, limit, &plan.writes);
    } else {
      plan.wake = std::min(plan.wake, unsent_since_ + options_.upload_max_delay);
    }
  }
  if (sent_next_ >= limit) unsent_since_ = absl::InfiniteFuture();
  if (!plan.writes.empty()) ++version_;
  return plan;
}

}  // namespace tandem::edge::link
