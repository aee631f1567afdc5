// SessionStream: the server's half of one session stream — the protocol state
// machine of proto/tandem.proto (Open, epochs, Context, Continue, Close) on top
// of the ContextManager. Run() reads on the gRPC handler thread; replies go
// through an Outbox written by a thread of its own, so the scheduler (which
// produces Tokens) never blocks on a slow client.
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

// The interface, not grpc::ServerReaderWriter, so the message handling can be
// driven without a network (tests/fuzz/session_messages_fuzzer.cc).
using ServerStream = grpc::ServerReaderWriterInterface<wire::ServerMessage, wire::ClientMessage>;

class Outbox;

class SessionStream {
 public:
  SessionStream(ServiceContext* service, ServerStream* stream, std::string identity);
  ~SessionStream();

  // Serves the stream until the client closes it, an error ends it, or the
  // server shuts down. Never throws.
  grpc::Status Run();

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

  ServiceContext* service_;
  ServerStream* stream_;
  std::string identity_;
  std::shared_ptr<Outbox> outbox_;
  // Set by Open.
  bool opened_ = false;
  std::string session_id_;
  CodecSpec codec_;
  SessionOptions session_options_;
  uint32_t epoch_ = 0;
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_SERVER_SESSION_STREAM_H_
