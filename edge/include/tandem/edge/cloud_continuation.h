// CloudContinuation: the seam through which the edge asks the cloud for a token
// no edge exit was confident about (DESIGN.md, decode step 3, collaborative mode).
//
// CloudLink (cloud_link.h) implements it over gRPC; EdgeSession installs one
// when EdgeOptions::cloud.address is set. Tests also use fakes.
//
// Threads: Continue() is called on the decode thread, which blocks on it until
// it returns; it must return by `deadline` (late answers are treated as errors).
#ifndef TANDEM_EDGE_CLOUD_CONTINUATION_H_
#define TANDEM_EDGE_CLOUD_CONTINUATION_H_

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/sampling.h"

namespace tandem::edge {

class CloudContinuation {
 public:
  virtual ~CloudContinuation() = default;

  // The token at `position` + 1's place — i.e. the token that follows the row at
  // `position` — computed by the cloud from its context plus `hidden_at_split`
  // ([1, D], borrowed for the call), sampled with `sampling`. Every earlier
  // position's row has already been handed to the ContextSink. Any error
  // (including DeadlineExceeded, Unavailable) makes the edge fall back to its
  // best exit's token: generation never fails because the network did.
  virtual absl::StatusOr<int32_t> Continue(int64_t position, const at::Tensor& hidden_at_split,
                                           const SamplingParams& sampling,
                                           absl::Time deadline) = 0;
};

}  // namespace tandem::edge

#endif  // TANDEM_EDGE_CLOUD_CONTINUATION_H_
