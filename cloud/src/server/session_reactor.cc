#include "server/session_reactor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "status_convert.h"
#include "wire_convert.h"

namespace tandem::cloud {
namespace {

// A stream that began to end this long ago but is not done (a reply write is
// stuck on a client that does not read) is cancelled.
constexpr absl::Duration kStuckEnding = absl::Seconds(10);

class RefusingReactor final : public SessionReactorBase {
 public:
  explicit RefusingReactor(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

std::string Seconds(absl::Duration d) { return absl::StrCat(absl::ToDoubleSeconds(d), " s"); }

}  // namespace

SessionReactorBase* SessionReactor::Refuse(grpc::Status status) {
  return new RefusingReactor(std::move(status));
}

SessionReactorBase* SessionReactor::Start(ServiceContext* service, StreamRegistry* registry,
                                          grpc::CallbackServerContext* context,
                                          std::string identity, std::string key) {
  auto* reactor =
      new SessionReactor(service, registry, context, std::move(identity), std::move(key));
  std::shared_ptr<SessionReactor> self(reactor);
  reactor->self_ = self;
  registry->Add(self);
  ++service->counters.streams_opened;
  ++service->counters.streams_active;
  reactor->StartRead(&reactor->message_);
  return reactor;
}

SessionReactor::SessionReactor(ServiceContext* service, StreamRegistry* registry,
                               grpc::CallbackServerContext* context, std::string identity,
                               std::string key)
    : service_(service),
      registry_(registry),
      context_(context),
      key_(std::move(key)),
      outbox_(std::make_shared<Outbox>(this, &service->counters)),
      stream_(service, outbox_, std::move(identity)),
      started_(absl::Now()),
      last_message_(started_) {}

void SessionReactor::OnReadDone(bool ok) {
  if (!ok) {  // the client finished writing, left, or the call is ending
    EndWith(grpc::Status::OK);
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    if (ending_since_ != absl::InfiniteFuture()) return;
    last_message_ = absl::Now();
  }
  const absl::Status failure = stream_.Handle(message_);
  {
    absl::MutexLock lock(&mu_);
    opened_ = stream_.opened();
    session_id_ = stream_.session_id();
    if (ending_since_ != absl::InfiniteFuture()) return;  // the reaper ended it meanwhile
  }
  if (!failure.ok() || stream_.closed()) {
    EndWith(stream_.End(failure));
    return;
  }
  StartRead(&message_);
}

void SessionReactor::OnWriteDone(bool ok) { outbox_->WriteDone(ok); }

void SessionReactor::OnCancel() {
  EndWith(grpc::Status(grpc::StatusCode::CANCELLED, "the stream was cancelled"));
}

void SessionReactor::OnDone() {
  {
    absl::MutexLock lock(&mu_);
    done_ = true;  // after Cancel() returned: it holds mu_ around TryCancel
  }
  try {
    stream_.CloseIfEmpty();
  } catch (const std::exception& e) {
    service_->log.Warn("stream_close_failed", {{"message", e.what()}});
  }
  --service_->counters.streams_active;
  registry_->Remove(this, stream_.identity());
  std::shared_ptr<SessionReactor> last = std::move(self_);  // may delete this on return
}

void SessionReactor::EndWith(grpc::Status status) {
  {
    absl::MutexLock lock(&mu_);
    if (ending_since_ == absl::InfiniteFuture()) ending_since_ = absl::Now();
  }
  outbox_->Finish(std::move(status));
}

void SessionReactor::EndIdle(const absl::Status& reason) {
  std::string session;
  {
    absl::MutexLock lock(&mu_);
    if (ending_since_ != absl::InfiniteFuture()) return;
    ending_since_ = absl::Now();
    session = session_id_;
  }
  ++service_->counters.streams_idle_ended;
  service_->log.Info("stream_idle_ended", {{"session", session},
                                           {"identity", stream_.identity()},
                                           {"code", absl::StatusCodeToString(reason.code())},
                                           {"message", reason.message()}});
  wire::ServerMessage message;
  wire::ToProto(reason, /*request_id=*/0, /*fatal=*/true, message.mutable_error());
  outbox_->SendAndFinish(std::move(message), wire::ToGrpcStatus(reason));
}

void SessionReactor::CheckIdle(absl::Time now) {
  const ServerOptions& options = service_->options;
  absl::Status reason;
  std::string check_session;
  {
    absl::MutexLock lock(&mu_);
    if (done_) return;
    if (ending_since_ != absl::InfiniteFuture()) {
      if (cancelled_ || now - ending_since_ < kStuckEnding) return;
      cancelled_ = true;
      service_->log.Warn("stream_cancelled", {{"session", session_id_},
                                              {"reason", "a reply write is stuck"}});
      context_->TryCancel();  // under mu_: OnDone (which frees context_) waits for it
      return;
    }
    const absl::Duration silent = now - last_message_;
    if (!opened_ && options.stream_open_timeout > absl::ZeroDuration() &&
        now - started_ > options.stream_open_timeout) {
      reason = absl::DeadlineExceededError(
          absl::StrCat("no Open within ", Seconds(options.stream_open_timeout),
                       " of the stream's start (the server's stream open timeout)"));
    } else if (options.stream_idle_timeout > absl::ZeroDuration() &&
               silent > options.stream_idle_timeout) {
      reason = absl::DeadlineExceededError(absl::StrCat(
          "the stream sent no message for ", Seconds(options.stream_idle_timeout),
          " (the server's stream idle timeout); open a new stream to resume the session"));
    } else if (opened_ && silent > registry_->scan_interval()) {
      check_session = session_id_;
    }
  }
  if (!check_session.empty()) {
    absl::StatusOr<SessionPosition> at =
        service_->contexts->Position(check_session, stream_.identity());
    if (absl::IsNotFound(at.status())) {
      reason = absl::NotFoundError(
          "the session is no longer held (expired or evicted) and the stream is silent; "
          "open a new stream to start it again");
    }
  }
  if (!reason.ok()) EndIdle(reason);
}

bool SessionReactor::Notify(wire::ServerMessage message) {
  return outbox_->Send(std::move(message));
}

void SessionReactor::Cancel() {
  absl::MutexLock lock(&mu_);
  if (done_ || cancelled_) return;
  cancelled_ = true;
  context_->TryCancel();
}

}  // namespace tandem::cloud
