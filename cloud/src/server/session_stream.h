// SessionStream: the server's half of one session stream — the protocol state
// machine of proto/tandem.proto (Open, epochs, Context, Continue, Close) on top
// of the ContextManager, with no transport: the gRPC reactor
// (server/session_reactor.h) hands it each client message and it answers
// through a ReplySink. Replies may also come later, from the scheduler's
// thread (Tokens), through the same sink.
#ifndef TANDEM_CLOUD_SERVER_SESSION_STREAM_H_
#define TANDEM_CLOUD_SERVER_SESSION_STREAM_H_

#include <cstdint>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "server/service_context.h"
#include "tandem/codec.h"
#include "tandem/wire/tandem.grpc.pb.h"

namespace tandem::cloud {

// Where a stream's replies go, in order. Thread-safe: Send is called by the
// message handler and by the scheduler. False when the reply was dropped (the
// stream is ending or the client is gone).
class ReplySink {
 public:
  virtual ~ReplySink() = default;
  virtual bool Send(wire::ServerMessage message) = 0;
};

// Thread-compatible: Handle / End / CloseIfEmpty are called one at a time
// (the reactor's reads are sequential); replies produced on other threads go
// straight to the sink.
class SessionStream {
 public:
  SessionStream(ServiceContext* service, std::shared_ptr<ReplySink> sink, std::string identity);

  // Handles one client message. A non-OK status means the stream must end:
  // call End(status). Never throws.
  absl::Status Handle(const wire::ClientMessage& message);
  // A Close was handled: read no more, end the stream with OK.
  bool closed() const { return closed_; }
  // Sends the fatal Error for `failure` (nothing when OK) and returns the
  // status the stream ends with.
  grpc::Status End(const absl::Status& failure);
  // After the stream ended without Close: drops the work it queued that has
  // not run (Detach: nobody will read the answers), then its session if that
  // holds no position (nothing an edge could resume; an Open-only client must
  // not pin its KV cache until the TTL).
  void CloseIfEmpty();

  bool opened() const { return opened_; }
  const std::string& session_id() const { return session_id_; }
  const std::string& identity() const { return identity_; }

 private:
  // Each returns a non-OK status to end the stream after sending Error.
  absl::Status HandleOpen(const wire::Open& open);
  absl::Status HandleContext(const wire::Context& context);
  absl::Status HandleContinue(const wire::Continue& request);
  // The session is no longer held: reopen it empty, move to a new epoch and
  // tell the edge where to replay from.
  absl::Status Resync(uint64_t request_id, const std::string& reason);
  // Tells the edge to replay from `next_position` in the current epoch.
  void SendResync(const SessionPosition& at, uint64_t request_id, const std::string& reason);
  void SendError(const absl::Status& status, uint64_t request_id, bool fatal);
  void SendAck(const SessionPosition& at);
  // Where the session stands (held positions and speculation branch).
  absl::StatusOr<SessionPosition> Position() const;
  // This stream now serves the session (after every Open of it): a later
  // stream of the same session takes over, and the end of this one drops
  // only work this stream queued (ContextManager::Attach / Detach).
  absl::Status Attach();
  // The stream ended: the session's queued work will never be read.
  void Detach();

  ServiceContext* service_;
  std::shared_ptr<ReplySink> sink_;
  std::string identity_;
  bool closed_ = false;
  // Set by Open.
  bool opened_ = false;
  std::string session_id_;
  CodecSpec codec_;
  SessionOptions session_options_;
  uint32_t epoch_ = 0;
  uint64_t attachment_ = 0;  // 0: not attached
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_SERVER_SESSION_STREAM_H_
