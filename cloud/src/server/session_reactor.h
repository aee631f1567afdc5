// SessionReactor: one session stream on gRPC's callback API
// (grpc::ServerBidiReactor). No thread is tied to a stream: reads complete on
// gRPC's callback threads, which hand each message to the SessionStream
// (the protocol) and start the next read; replies go through the Outbox.
// An idle stream costs its protocol state and gRPC's buffers, nothing more.
//
// Ends: the client closes or leaves; the protocol fails (a fatal Error, then
// the failure's status); Close (OK); the reaper finds it idle — no message for
// ServerOptions::stream_idle_timeout, no Open within stream_open_timeout, or
// silent while its session is no longer held (a fatal Error, then
// DEADLINE_EXCEEDED / NOT_FOUND); revocation or shutdown (TryCancel).
// A stream ended without Close drops its session if that holds no position.
//
// Lifetime: owns itself (a shared_ptr to itself, released in OnDone) so that
// the registry and the reaper can hold it safely; gRPC's context and stream
// are used only until OnDone.
//
// Thread-safe: reactions run on gRPC threads; CheckIdle and Cancel on any.
#ifndef TANDEM_CLOUD_SERVER_SESSION_REACTOR_H_
#define TANDEM_CLOUD_SERVER_SESSION_REACTOR_H_

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/outbox.h"
#include "server/service_context.h"
#include "server/session_stream.h"
#include "server/stream_registry.h"
#include "tandem/wire/tandem.grpc.pb.h"

namespace tandem::cloud {

using SessionReactorBase = grpc::ServerBidiReactor<wire::ClientMessage, wire::ServerMessage>;

class SessionReactor final : public SessionReactorBase {
 public:
  // Serves a stream whose slot `registry` has reserved for `identity`; `key`
  // is the API key it was opened with ("" = none). Returns the reactor for
  // gRPC (it deletes itself after OnDone).
  static SessionReactorBase* Start(ServiceContext* service, StreamRegistry* registry,
                                   grpc::CallbackServerContext* context, std::string identity,
                                   std::string key);
  // A reactor that only ends the call with `status` (refused calls).
  static SessionReactorBase* Refuse(grpc::Status status);

  // Ends the stream if it is idle at `now` (see above); ends by cancelling a
  // stream that has been ending for long with a write stuck on a client that
  // does not read.
  void CheckIdle(absl::Time now);
  // Cancels the call (shutdown, revoked key): the client sees CANCELLED.
  void Cancel();
  // Queues `message` after the replies already queued (GoingAway at a drain);
  // false when the stream is already ending.
  bool Notify(wire::ServerMessage message);
  const std::string& key() const { return key_; }
  const std::string& identity() const { return stream_.identity(); }

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  SessionReactor(ServiceContext* service, StreamRegistry* registry,
                 grpc::CallbackServerContext* context, std::string identity, std::string key);
  // Starts ending the stream with `status` (after what is queued is written).
  void EndWith(grpc::Status status);
  // The reaper's end: a fatal Error saying why, then `reason`'s status.
  void EndIdle(const absl::Status& reason);

  ServiceContext* service_;
  StreamRegistry* registry_;
  grpc::CallbackServerContext* context_;
  const std::string key_;
  std::shared_ptr<Outbox> outbox_;
  SessionStream stream_;             // touched by reactions only (one at a time)
  wire::ClientMessage message_;      // the read in flight
  std::shared_ptr<SessionReactor> self_;

  absl::Mutex mu_;
  const absl::Time started_;
  absl::Time last_message_ ABSL_GUARDED_BY(mu_);
  bool opened_ ABSL_GUARDED_BY(mu_) = false;       // copies of stream_'s, for the reaper
  std::string session_id_ ABSL_GUARDED_BY(mu_);
  absl::Time ending_since_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;         // OnDone ran: context_ is gone
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_SERVER_SESSION_REACTOR_H_
