// CloudLink: the edge's side of the wire in collaborative mode. It is both the
// ContextSink (every row at S is kept and uploaded in the background, batched
// and encoded) and the CloudContinuation (drafts are submitted for
// verification and their verdicts come back asynchronously; see
// cloud_continuation.h for pipelined speculative verification).
//
// Structure: the policy (history, batching, requests in flight, branches,
// resync, backoff) is a sans-IO core (src/link/link_core.h); this class drives
// it with a Transport (gRPC by default) and two threads.
//
// Faults never reach the user: when the cloud is slow, gone or answers an
// error, the request's verdict is an error and the edge keeps its draft;
// meanwhile the link reconnects with backoff and resyncs — replaying token ids
// or encoded hidden states from its own history of the sequence
// (ResyncPolicy) — and collaboration resumes.
//
// One sequence at a time (a session stream per sequence: OnBegin opens it,
// OnFinish closes it). Threads: the ContextSink and CloudContinuation methods
// are called on the decode thread and never block on I/O (TakeVerdicts waits
// for a verdict at most until its argument); a worker thread connects and
// writes, a reader thread per stream reads. stats() may be called from any
// thread.
#ifndef TANDEM_EDGE_CLOUD_LINK_H_
#define TANDEM_EDGE_CLOUD_LINK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/edge/cloud_continuation.h"
#include "tandem/edge/cloud_link_stats.h"
#include "tandem/edge/cloud_options.h"
#include "tandem/edge/context_sink.h"

namespace tandem::edge {

namespace link {
class Transport;
}

class CloudLink : public ContextSink, public CloudContinuation {
 public:
  // `fingerprint` = SplitFingerprint of the edge's model at `split`;
  // `hidden_size` is the model's. InvalidArgument for a bad codec or options.
  // Does not connect yet (the first OnBegin does).
  static absl::StatusOr<std::unique_ptr<CloudLink>> Create(const CloudOptions& options,
                                                           uint64_t fingerprint, int64_t split,
                                                           std::vector<int64_t> exit_layers,
                                                           int64_t hidden_size);
  // Same over a transport of the caller's (tests: in-process and faulty ones).
  static absl::StatusOr<std::unique_ptr<CloudLink>> CreateWithTransport(
      const CloudOptions& options, std::unique_ptr<link::Transport> transport,
      uint64_t fingerprint, int64_t split, std::vector<int64_t> exit_layers, int64_t hidden_size);
  ~CloudLink() override;
  CloudLink(const CloudLink&) = delete;
  CloudLink& operator=(const CloudLink&) = delete;

  // Every sink call is also passed to `sink` (may be null; borrowed).
  void set_forward(ContextSink* sink);

  void OnBegin(const SequenceInfo& info) override;
  void OnInput(int64_t first_position, absl::Span<const int32_t> ids) override;
  void OnContext(int64_t first_position, const at::Tensor& hidden_at_split) override;
  void OnTruncate(int64_t position) override;
  void OnFinish(int64_t next_position) override;

  absl::Status Submit(const ContinueRequest& request, absl::Time deadline) override;
  std::vector<CloudVerdict> TakeVerdicts(absl::Time wait_until) override;

  // True when the current sequence's stream is open and in sync.
  bool connected() const;
  // Waits until connected() or the deadline; true when connected.
  bool WaitUntilConnected(absl::Time deadline) const;
  // Waits until every row handed over so far has been written to the stream.
  bool WaitUntilUploaded(absl::Time deadline) const;
  // Requests submitted and not yet answered.
  int64_t in_flight() const;
  CloudLinkStats stats() const;

 private:
  CloudLink() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::edge

#endif  // TANDEM_EDGE_CLOUD_LINK_H_
