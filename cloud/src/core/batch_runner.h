// The model work of one scheduler iteration (internal): token ids through
// [0, S), every session's rows through [S, L) in one packed forward, one LM-head
// call for the rows that need a token, sampling per session. Runs without the
// table's lock: the sessions are in flight, so only this thread uses their
// caches and samplers.
#ifndef TANDEM_CLOUD_CORE_BATCH_RUNNER_H_
#define TANDEM_CLOUD_CORE_BATCH_RUNNER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "core/session.h"
#include "tandem/cloud/cloud_model.h"
#include "tandem/cloud/context_manager.h"

namespace tandem::cloud {

// One session's share of an iteration: every chunk it had queued.
struct WorkItem {
  std::shared_ptr<Session> session;
  int64_t first_position = 0;  // the session's run_end when taken
  int64_t rows = 0;            // sum of the chunks' rows
  std::deque<Chunk> chunks;    // consecutive, in position order
  // Outputs: `status`, and when OK one result per Continue chunk, in order —
  // up to and including the first rejected draft, whose row position goes to
  // `rejected_position` (-1: none); the Continues after it are superseded and
  // get no result.
  absl::Status status;
  std::vector<ContinueResult> results;
  int64_t rejected_position = -1;
};

// Runs `items`; never throws. A failure confines itself to the items it
// concerns (their status; their caches may then hold partial rows). Returns the
// wall time spent, also written into every result's compute_seconds.
double RunBatch(const CloudModel& model, std::vector<WorkItem>* items);

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_CORE_BATCH_RUNNER_H_
