// LinkCore: the policy of the edge's side of the wire, without I/O or threads
// ("sans-IO"): what to send, when to connect, what an answer means. CloudLink
// (cloud_link.cc) drives it with a Transport and two threads; unit tests drive
// it directly with a controlled clock (every call takes `now`).
//
// It keeps, for the current sequence:
//   - the history: every fed token id and every row at S (fp32), truncatable;
//   - the requests in flight: drafts submitted for verification, by position;
//   - the server's view: stream state, epoch (resync), speculation branch, and
//     the next position the server expects (`sent_next`).
// Upload: rows go as Context in batches (upload_batch_rows, upload_max_delay);
// the newest row is held back until the next decode event because a Continue
// for it may follow (a row sent as context can no longer be asked about); a
// request goes as Continue, preceded by every row before it.
// Verification (proto/tandem.proto, Draft): a REJECTED answer at p moves to the
// server's new branch, and uploads stop at p + 1 until the edge rolls back
// (Truncate(p + 1)); a REJECTED answer the edge no longer waits for (deadline
// passed: the edge kept its draft) instead re-uploads the edge's own rows from
// p + 1 on the new branch. Resync (ResyncRequired, or a new stream that resumes)
// replays from what the server holds, as token ids or hidden states
// (ResyncPolicy); requests at positions the server already holds fail (the
// draft stands), later ones are sent again.
//
// GoingAway (the server drains) is handled like a lost stream: requests in
// flight fail, the stream is dropped, and the link reconnects with backoff.
//
// Every submitted request ends in exactly one CloudVerdict (answer, error,
// deadline, link loss), unless truncated away or the sequence ends.
//
// Thread-compatible: the caller serialises every call (CloudLink's mutex).
#ifndef TANDEM_EDGE_LINK_LINK_CORE_H_
#define TANDEM_EDGE_LINK_LINK_CORE_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "tandem/codec.h"
#include "tandem/edge/cloud_continuation.h"
#include "tandem/edge/cloud_link_stats.h"
#include "tandem/edge/cloud_options.h"
#include "tandem/edge/context_sink.h"
#include "tandem/wire/tandem.pb.h"

namespace tandem::edge::link {

// What the model looks like to the server (the Open message).
struct ModelIdentity {
  uint64_t fingerprint = 0;
  int64_t split = 0;
  std::vector<int64_t> exit_layers;
  int64_t hidden_size = 0;
};

class LinkCore {
 public:
  LinkCore(const CloudOptions& options, const CodecSpec& codec, ModelIdentity model);

  // ---- the sequence (decode thread; see ContextSink / CloudContinuation) ----
  void Begin(const SequenceInfo& info, std::string session_id, absl::Time now);
  void Input(int64_t first_position, absl::Span<const int32_t> ids);
  // Copies the rows (as fp32).
  void Context(int64_t first_position, const at::Tensor& rows, absl::Time now);
  void Truncate(int64_t position);
  void Finish();
  absl::Status Submit(const ContinueRequest& request, absl::Time deadline, absl::Time now);
  std::vector<CloudVerdict> TakeVerdicts();
  bool has_verdicts() const { return !verdicts_.empty(); }

  // ---- the stream (driver) ----
  enum class Want { kNothing, kConnect, kDisconnect };
  struct Plan {
    Want want = Want::kNothing;
    bool polite = false;                        // kDisconnect: send Close first
    std::vector<wire::ClientMessage> writes;    // write these, in order, on the stream
    absl::Time wake = absl::InfiniteFuture();   // call Poll again by then
  };
  // Fails requests past their deadline, decides connection changes, and
  // builds the messages that are due (counted as sent from now on).
  Plan Poll(absl::Time now);
  // The driver opened a stream for the current sequence: returns the Open to
  // write first; `*stream_id` names the stream in later calls.
  wire::ClientMessage Opened(uint64_t* stream_id);
  void ConnectFailed(absl::Time now);
  // The stream ended or a write failed. Ignored for a stream already retired.
  void StreamBroken(uint64_t stream_id, absl::Time now);
  // The driver closed the stream Poll asked it to.
  void Disconnected(absl::Time now);
  void Received(uint64_t stream_id, const wire::ServerMessage& message, absl::Time now);

  // ---- state ----
  const std::string& session_id() const { return session_id_; }
  bool active() const { return active_; }
  bool ready() const { return state_ == State::kReady; }
  // Every row handed over so far (that may be sent) is on the wire.
  bool uploaded() const { return ready() && sent_next_ >= releasable_; }
  int64_t in_flight() const { return static_cast<int64_t>(requests_.size()); }
  uint32_t branch() const { return branch_; }
  const CloudLinkStats& stats() const { return stats_; }
  // Bumped by every change; the driver waits for it to move.
  uint64_t version() const { return version_; }

 private:
  enum class State { kDown, kConnecting, kOpening, kReady };
  struct Request {
    uint64_t id = 0;
    int64_t position = 0;
    at::Tensor row;  // [1, D] fp32
    int32_t draft_token = 0;
    TokenDistribution draft;
    SamplingParams sampling;
    absl::Time submitted;
    absl::Time deadline;
    bool sent = false;  // on the current (epoch, branch)
  };

  int64_t history_size() const { return static_cast<int64_t>(row_count_); }
  at::Tensor Rows(int64_t begin, int64_t end) const;  // [end - begin, D] fp32
  void Fail(int64_t position, const absl::Status& status);
  void FailAll(const absl::Status& status);
  void Verdict(Request& request, const absl::Status& status, int32_t token, bool accepted,
               absl::Time now);
  void Broken(absl::Time now);
  void Backoff(absl::Time now);
  // Requests at or after `position` must be sent again (the server dropped them).
  void Unsend(int64_t position);
  void AppendContext(int64_t begin, int64_t end, std::vector<wire::ClientMessage>* out);
  void OnToken(const wire::Token& token, absl::Time now);
  void OnResync(const wire::ResyncRequired& resync);
  void OnError(const wire::Error& error, absl::Time now);

  const CloudOptions options_;
  const CodecSpec codec_;
  const ModelIdentity model_;

  // The sequence.
  bool active_ = false;
  uint64_t generation_ = 0;  // bumped by Begin / Finish
  std::string session_id_;
  SequenceInfo info_;
  std::vector<int32_t> ids_;             // ids_[p] = token fed at p
  std::vector<at::Tensor> rows_;         // fp32 chunks in order
  std::vector<int64_t> row_firsts_;
  size_t row_count_ = 0;                 // positions with a row
  int64_t releasable_ = 0;               // rows that may go as context
  absl::Time unsent_since_ = absl::InfiniteFuture();
  std::map<int64_t, Request> requests_;  // by position
  std::deque<CloudVerdict> verdicts_;
  uint64_t next_request_id_ = 0;

  // The stream.
  State state_ = State::kDown;
  uint64_t stream_id_ = 0;               // the live stream's id (0: none)
  bool stream_open_ = false;             // the driver holds a stream (Opened .. Disconnected)
  uint64_t stream_generation_ = 0;       // the generation it serves
  bool broken_ = false;
  uint32_t epoch_ = 0;
  uint32_t branch_ = 0;
  int64_t sent_next_ = 0;                // next position the server expects
  // After a rejection at p: nothing at or past fence_ is sent until the edge
  // truncates to it (its rows there belong to the abandoned branch). -1: none.
  int64_t fence_ = -1;
  // A Truncate below what the server holds: the next stream resumes here.
  int64_t resume_limit_ = -1;
  bool token_resync_allowed_ = false;
  bool tokens_refused_ = false;
  bool replaying_ = false;
  absl::Time next_connect_ = absl::InfinitePast();
  int64_t attempts_ = 0;
  absl::Duration backoff_;

  CloudLinkStats stats_;
  uint64_t version_ = 0;
};

}  // namespace tandem::edge::link

#endif  // TANDEM_EDGE_LINK_LINK_CORE_H_
