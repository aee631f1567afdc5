// RowRateLimiter: a token bucket over rows (internal; per identity in the
// SessionTable). Holds up to `burst` rows and refills at `rate` rows per
// second; a request of n rows passes when min(n, burst) rows are in the bucket
// and takes n (the bucket may go negative: a request larger than the burst
// passes from a full bucket and then pays its debt), so over any long interval
// at most burst + rate x seconds rows pass. Time is
// passed in, so tests drive it without a clock. Thread-compatible.
#ifndef TANDEM_CLOUD_CORE_RATE_LIMITER_H_
#define TANDEM_CLOUD_CORE_RATE_LIMITER_H_

#include <algorithm>
#include <cstdint>

#include "absl/time/time.h"

namespace tandem::cloud {

class RowRateLimiter {
 public:
  // rate <= 0: unlimited. burst <= 0: one second's worth (at least 1 row).
  void Configure(double rate, int64_t burst) {
    rate_ = rate;
    burst_ = burst > 0 ? static_cast<double>(burst) : std::max(rate, 1.0);
    tokens_ = burst_;
    started_ = false;
  }
  bool unlimited() const { return rate_ <= 0; }
  double burst() const { return burst_; }

  // Whether `rows` may pass at `now` (does not take them).
  bool Allows(int64_t rows, absl::Time now) {
    if (unlimited()) return true;
    Refill(now);
    return std::min(static_cast<double>(rows), burst_) <= tokens_;
  }
  // Takes `rows` (after Allows said yes).
  void Take(int64_t rows, absl::Time now) {
    if (unlimited()) return;
    Refill(now);
    tokens_ -= static_cast<double>(rows);
  }

 private:
  void Refill(absl::Time now) {
    if (!started_) {
      started_ = true;
      last_ = now;
      return;
    }
    if (now > last_) {
      tokens_ = std::min(burst_, tokens_ + rate_ * absl::ToDoubleSeconds(now - last_));
      last_ = now;
    }
  }

  double rate_ = 0;
  double burst_ = 1;
  double tokens_ = 1;
  bool started_ = false;
  absl::Time last_;
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_CORE_RATE_LIMITER_H_
