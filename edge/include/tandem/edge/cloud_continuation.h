// CloudContinuation: the seam through which the edge asks the cloud about a
// token no edge exit was confident about (DESIGN.md, decode step 3,
// collaborative mode).
//
// Pipelined speculative verification: the edge does not wait. When no exit
// passes at the row of position p, the edge drafts a provisional token x for
// p + 1 from its fallback exit, Submit()s (p, its row at S, x, the draft
// distribution) and goes on decoding on top of x. The cloud verifies drafts in
// position order with the speculative sampling rule (tandem/speculative.h) and
// answers a verdict per request: accepted (x stands), or rejected with the
// cloud's own token t for p + 1 — the edge then rolls back to p + 1
// (EdgeSequence::Truncate, which tells the ContextSink OnTruncate) and feeds t.
// Waiting for each verdict right after Submit is the blocking policy
// (CloudOptions::max_in_flight = 0).
//
// CloudLink (cloud_link.h) implements it over a Transport; tests use fakes.
//
// Threads: every method is called on the decode thread. Submit never blocks on
// the network; TakeVerdicts blocks at most until `wait_until`.
#ifndef TANDEM_EDGE_CLOUD_CONTINUATION_H_
#define TANDEM_EDGE_CLOUD_CONTINUATION_H_

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tandem/sampling.h"

namespace tandem::edge {

struct ContinueRequest {
  // The row's position; the token asked about goes at position + 1. Every
  // earlier row has already been handed to the ContextSink, and so has this one.
  int64_t position = 0;
  // [1, D], the row's hidden state at S (borrowed for the call; this exact
  // row is what goes on the wire).
  at::Tensor hidden_at_split;
  // The edge's provisional token for position + 1.
  int32_t draft_token = 0;
  // The distribution draft_token was drawn from (TruncateDistribution of the
  // fallback exit's sampling distribution); empty under greedy decoding.
  TokenDistribution draft;
  // How the cloud samples this token (the full model's distribution).
  SamplingParams sampling;
};

struct CloudVerdict {
  int64_t position = 0;  // the request's
  // Not OK: no verdict will come (deadline, error, link lost, sequence ended):
  // the draft stands as a fallback token.
  absl::Status status;
  int32_t token = 0;      // OK: the token at position + 1
  bool accepted = false;  // OK: token == the draft token, the edge's branch stands
};

class CloudContinuation {
 public:
  virtual ~CloudContinuation() = default;

  // Asks the cloud to verify `request` by `deadline`. Never blocks on I/O.
  // OK: exactly one CloudVerdict for request.position will be returned by
  // TakeVerdicts (an error verdict at the latest shortly after the deadline),
  // unless the position is truncated away first (OnTruncate) or the sequence
  // ends. Not OK: the cloud cannot be asked now (link down, reconnecting): the
  // draft is decided by the edge alone.
  virtual absl::Status Submit(const ContinueRequest& request, absl::Time deadline) = 0;

  // The verdicts that arrived since the last call, in arrival order; when none
  // has, waits for one until `wait_until` (InfinitePast: do not wait).
  virtual std::vector<CloudVerdict> TakeVerdicts(absl::Time wait_until) = 0;
};

}  // namespace tandem::edge

#endif  // TANDEM_EDGE_CLOUD_CONTINUATION_H_
