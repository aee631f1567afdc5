// InProcessTransport: a Transport whose other end is in the same process — the
// test (or an embedding that runs the cloud in-process) plays the server
// through InProcessPeer: it takes the client's messages and sends replies.
#ifndef TANDEM_EDGE_LINK_IN_PROCESS_TRANSPORT_H_
#define TANDEM_EDGE_LINK_IN_PROCESS_TRANSPORT_H_

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "link/transport.h"

namespace tandem::edge::link {

// The server's side of every stream the transport opens. Thread-safe.
class InProcessPeer {
 public:
  // The next message the client wrote on the current stream, waiting until
  // `deadline`; false when none came (or the stream ended).
  bool Receive(wire::ClientMessage* message, absl::Time deadline);
  // Sends to the client on the current stream (dropped if there is none).
  void Send(const wire::ServerMessage& message);
  // Ends the current stream (the client's Read returns false).
  void Break();
  // Streams opened so far; session ids they were opened for.
  int streams() const;
  std::string last_session_id() const;
  // While set, Open fails with Unavailable.
  void set_refuse(bool refuse);

 private:
  friend class InProcessStream;
  friend class InProcessTransport;
  struct Stream {
    std::deque<wire::ClientMessage> up;
    std::deque<wire::ServerMessage> down;
    bool closed = false;
  };
  mutable absl::Mutex mu_;
  std::shared_ptr<Stream> current_ ABSL_GUARDED_BY(mu_);
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_session_id_ ABSL_GUARDED_BY(mu_);
  bool refuse_ ABSL_GUARDED_BY(mu_) = false;
};

std::unique_ptr<Transport> MakeInProcessTransport(std::shared_ptr<InProcessPeer> peer);

}  // namespace tandem::edge::link

#endif  // TANDEM_EDGE_LINK_IN_PROCESS_TRANSPORT_H_
