// SpeculationWindow: how many drafts may await the cloud's verdict while the
// edge decodes on top of them (DESIGN.md step 3, pipelined verification), and
// how that number adapts: additive increase on each accepted draft,
// multiplicative decrease on each rollback (AIMD, as TCP's congestion window),
// between min(min_in_flight, max_in_flight) and max_in_flight. A limit of 0 is
// the blocking policy. Also keeps the window's statistics for one generation.
// Single-threaded (the decode thread).
#ifndef TANDEM_EDGE_SPECULATION_WINDOW_H_
#define TANDEM_EDGE_SPECULATION_WINDOW_H_

#include <algorithm>
#include <cstdint>

#include "tandem/edge/cloud_options.h"

namespace tandem::edge {

class SpeculationWindow {
 public:
  explicit SpeculationWindow(const CloudOptions& options)
      : max_(options.max_in_flight),
        min_(std::min(options.min_in_flight, options.max_in_flight)),
        adaptive_(options.adaptive_depth),
        limit_(options.max_in_flight) {}

  // Drafts that may be in flight now; 0 = wait for each verdict.
  int32_t limit() const { return limit_; }
  bool full(int64_t in_flight) const { return in_flight > 0 && in_flight >= limit_; }

  void OnAccepted() {
    if (adaptive_) limit_ = std::min(max_, limit_ + 1);
  }
  void OnRejected() {
    if (adaptive_) limit_ = std::max(min_, limit_ / 2);
  }
  // Called at every decode step with the drafts in flight then.
  void OnStep(int64_t in_flight) {
    ++steps_;
    in_flight_sum_ += in_flight;
  }
  double mean_in_flight() const { return steps_ ? static_cast<double>(in_flight_sum_) / steps_ : 0; }

 private:
  const int32_t max_;
  const int32_t min_;
  const bool adaptive_;
  int32_t limit_;
  int64_t steps_ = 0;
  int64_t in_flight_sum_ = 0;
};

}  // namespace tandem::edge

#endif  // TANDEM_EDGE_SPECULATION_WINDOW_H_
