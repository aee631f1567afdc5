// Transport: how the edge's cloud link reaches a server — one bidirectional
// message stream per session (proto/tandem.proto). GrpcTransport is the real
// one; tests use InProcessTransport (a scripted peer) and FaultyTransport
// (delay, drop, reorder, error around any transport). LinkCore holds the policy;
// a transport only moves messages.
#ifndef TANDEM_EDGE_LINK_TRANSPORT_H_
#define TANDEM_EDGE_LINK_TRANSPORT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/wire/tandem.pb.h"

namespace tandem::edge::link {

// Threads: one thread writes (Write, WritesDone), another reads (Read);
// Cancel may be called from any thread and makes blocked calls return false.
class TransportStream {
 public:
  virtual ~TransportStream() = default;
  // Blocks until written; false when the stream is broken or cancelled.
  virtual bool Write(const wire::ClientMessage& message) = 0;
  // Blocks until a message arrives; false at the end of the stream.
  virtual bool Read(wire::ServerMessage* message) = 0;
  // No more writes (half-close).
  virtual void WritesDone() = 0;
  virtual void Cancel() = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Opens a stream for `session_id` (sent as call metadata so a load balancer
  // can hash on it), waiting at most until `deadline`. Thread-safe.
  virtual absl::StatusOr<std::unique_ptr<TransportStream>> Open(const std::string& session_id,
                                                                absl::Time deadline) = 0;
};

}  // namespace tandem::edge::link

#endif  // TANDEM_EDGE_LINK_TRANSPORT_H_
