// Scheduler: the context manager's one compute thread (internal). Each
// iteration takes the ready work of many sessions from the SessionTable (up to
// ContextLimits::max_batch_rows rows), runs it as one batch (RunBatch: one
// packed forward over [S, L), one LM-head call), records it, then calls the
// callbacks outside any lock. libtorch runs under at::InferenceMode here.
#ifndef TANDEM_CLOUD_CORE_SCHEDULER_H_
#define TANDEM_CLOUD_CORE_SCHEDULER_H_

#include <memory>
#include <thread>

#include "core/session_table.h"
#include "tandem/cloud/cloud_model.h"

namespace tandem::cloud {

class Scheduler {
 public:
  // Starts the thread. `table` must outlive the Scheduler.
  Scheduler(std::shared_ptr<const CloudModel> model, SessionTable* table);
  // Stops (see Stop).
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Finishes the batch in progress (its callbacks are called), then joins the
  // thread. Idempotent. Work still queued stays in the table.
  void Stop();

 private:
  void Loop();

  std::shared_ptr<const CloudModel> model_;
  SessionTable* table_;
  std::thread thread_;
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_CORE_SCHEDULER_H_
