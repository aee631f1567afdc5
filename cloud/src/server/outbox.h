// Outbox: the queue of one session stream's replies in front of gRPC's
// callback-API writer (at most one write in flight), and the stream's end
// (Finish after the queued replies are written). Whoever produces a reply —
// the stream's read handler, the scheduler's Continue callbacks, the reaper
// that ends idle streams — only enqueues; no thread waits for a slow client.
//
// Shared (std::shared_ptr) by the stream and by pending Continue callbacks: a
// reply produced after the stream began to end is dropped (Send is false).
//
// Thread-safe. gRPC is never called under the internal lock (a call may
// complete inline and re-enter WriteDone).
#ifndef TANDEM_CLOUD_SERVER_OUTBOX_H_
#define TANDEM_CLOUD_SERVER_OUTBOX_H_

#include <deque>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/service_context.h"
#include "server/session_stream.h"
#include "tandem/wire/tandem.grpc.pb.h"

namespace tandem::cloud {

class Outbox final : public ReplySink {
 public:
  using Reactor = grpc::ServerBidiReactor<wire::ClientMessage, wire::ServerMessage>;
  // `reactor` must stay valid until the Finish this calls has been followed by
  // the reactor's OnDone; after Finish the outbox never touches it again.
  Outbox(Reactor* reactor, ServerCounters* counters);

  // Queues a reply (written in order); false once Finish was asked for or a
  // write failed (the client is gone).
  bool Send(wire::ServerMessage message) override;
  // The reactor's OnWriteDone: the front reply was written (or not: `ok` false).
  void WriteDone(bool ok);
  // Ends the stream with `status` once the replies already queued are written
  // (at once if a write failed). The first call decides the status; later
  // calls do nothing.
  void Finish(grpc::Status status);
  // Queues `last` and ends the stream with `status` after it, as one step (no
  // other end can slip in between). Nothing when the end was already decided.
  void SendAndFinish(wire::ServerMessage last, grpc::Status status);

 private:
  Reactor* reactor_;
  ServerCounters* counters_;
  absl::Mutex mu_;
  std::deque<wire::ServerMessage> queue_ ABSL_GUARDED_BY(mu_);  // front = in flight
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_SERVER_OUTBOX_H_
