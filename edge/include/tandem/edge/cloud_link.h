// CloudLink: the edge's side of the wire in collaborative mode. It is both the
// ContextSink (every row at S is kept and uploaded in the background, batched
// and encoded) and the CloudContinuation (a token no exit was confident about
// is asked from the cloud, waiting at most the deadline).
//
// Faults never reach the user: when the cloud is slow, gone or answers an
// error, Continue fails and the edge decides the token itself; meanwhile the
// link reconnects with backoff and resyncs — replaying token ids or encoded
// hidden states from its own history of the sequence (ResyncPolicy) — and
// collaboration resumes.
//
// One sequence at a time (a session stream per sequence: OnBegin opens it,
// OnFinish closes it). Threads: the ContextSink methods and Continue are
// called on the decode thread and never block on I/O except Continue, which
// waits for its answer; a worker thread connects and writes, a reader thread
// per stream reads. stats() may be called from any thread.
#ifndef TANDEM_EDGE_CLOUD_LINK_H_
#define TANDEM_EDGE_CLOUD_LINK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/edge/cloud_continuation.h"
#include "tandem/edge/cloud_options.h"
#include "tandem/edge/context_sink.h"

namespace tandem::edge {

struct CloudLinkStats {
  int64_t bytes_up = 0;             // serialized messages sent
  int64_t bytes_down = 0;           // serialized messages received
  int64_t context_bytes = 0;        // of bytes_up: Context messages
  int64_t continue_bytes = 0;       // of bytes_up: Continue messages
  int64_t context_rows = 0;         // positions uploaded in Context messages
  int64_t requests = 0;             // Continue calls
  int64_t cloud_tokens = 0;         // answered in time by the cloud
  int64_t failed_requests = 0;      // not answered in time, errors, link down
  int64_t connects = 0;             // streams opened successfully
  int64_t connect_failures = 0;
  int64_t resyncs = 0;              // ResyncRequired handled
  int64_t resync_token_positions = 0;   // positions replayed as token ids
  int64_t resync_hidden_positions = 0;  // positions replayed as hidden states
  double request_seconds = 0.0;     // sum over answered requests, edge-side wall time
  double cloud_compute_seconds = 0.0;  // sum of the cloud's reported compute time
  std::string last_error;           // why the latest failed request failed
};

class CloudLink : public ContextSink, public CloudContinuation {
 public:
  // `fingerprint` = SplitFingerprint of the edge's model at `split`;
  // `hidden_size` is the model's. InvalidArgument for a bad codec or options.
  // Does not connect yet (the first OnBegin does).
  static absl::StatusOr<std::unique_ptr<CloudLink>> Create(const CloudOptions& options,
                                                           uint64_t fingerprint, int64_t split,
                                                           std::vector<int64_t> exit_layers,
                                                           int64_t hidden_size);
  ~CloudLink() override;
  CloudLink(const CloudLink&) = delete;
  CloudLink& operator=(const CloudLink&) = delete;

  // Every sink call is also passed to `sink` (may be null; borrowed).
  void set_forward(ContextSink* sink);

  void OnBegin(const SequenceInfo& info) override;
  void OnInput(int64_t first_position, absl::Span<const int32_t> ids) override;
  void OnContext(int64_t first_position, const at::Tensor& hidden_at_split) override;
  void OnFinish(int64_t next_position) override;

  absl::StatusOr<int32_t> Continue(int64_t position, const at::Tensor& hidden_at_split,
                                   const SamplingParams& sampling, absl::Time deadline) override;

  // True when the current sequence's stream is open and in sync.
  bool connected() const;
  // Waits until connected() or the deadline; true when connected.
  bool WaitUntilConnected(absl::Time deadline) const;
  // Waits until every row handed over so far has been written to the stream.
  bool WaitUntilUploaded(absl::Time deadline) const;
  CloudLinkStats stats() const;

 private:
  CloudLink() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::edge

#endif  // TANDEM_EDGE_CLOUD_LINK_H_
