// Outbox: the queue of a stream's replies and the thread that writes them, so
// that whoever produces a reply (the stream's reader, the scheduler) only
// enqueues. Shared by the stream and by pending Continue callbacks: a reply
// produced after the stream ended is dropped.
#ifndef TANDEM_CLOUD_SERVER_OUTBOX_H_
#define TANDEM_CLOUD_SERVER_OUTBOX_H_

#include <deque>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/service_context.h"
#include "tandem/wire/tandem.grpc.pb.h"

namespace tandem::cloud {

class Outbox {
 public:
  using Stream = grpc::ServerReaderWriterInterface<wire::ServerMessage, wire::ClientMessage>;
  // Starts the writer thread. `stream` must stay valid until Close() returns.
  Outbox(Stream* stream, ServerCounters* counters);
  ~Outbox();

  // Queues a reply; false when the outbox is closed or the client is gone.
  bool Send(wire::ServerMessage message);
  // Writes what is queued, stops the writer and forgets the stream. Idempotent.
  void Close();

 private:
  void WriterLoop();

  Stream* stream_;
  ServerCounters* counters_;
  absl::Mutex mu_;
  std::deque<wire::ServerMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_SERVER_OUTBOX_H_
