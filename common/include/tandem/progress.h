// Progress reports and cancellation for long library calls: teacher-forced
// evaluation, calibration and exit-head training.
#ifndef TANDEM_PROGRESS_H_
#define TANDEM_PROGRESS_H_

#include <cstdint>
#include <functional>

namespace tandem {

struct Progress {
  int64_t done = 0;   // units finished: tokens (evaluation, calibration) or steps (training)
  int64_t total = 0;  // units the call will do at most; 0 = unknown
  double elapsed_seconds = 0.0;  // wall time since the call started
};

// Called on the calling thread between units of work (after each batch of
// windows, each training step). Returning false stops the call at that point:
// it then returns absl::CancelledError and discards its partial result. An
// empty function never stops anything. It must not throw.
using ProgressCallback = std::function<bool(const Progress&)>;

}  // namespace tandem

#endif  // TANDEM_PROGRESS_H_
