// Fair scheduling under a flood (issue 14, item 3): 30 sessions of the shipped
// model (split 4) each queue 511 rows of context and a Continue; then a
// healthy session (15 rows of context) asks for one token. Reported: the
// healthy Continue's latency (manual time: from its Continue to its answer)
// and, as counters, the time until the whole flood is answered and the rows
// that ran while the healthy request waited. Argument: the scheduler's
// ContextLimits::max_session_batch_rows (0 = the old first-come-first-served
// policy, a session's queue never split).
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "tandem/cloud/context_manager.h"

namespace {

using tandem::cloud::CloudModel;
using tandem::cloud::ContextLimits;
using tandem::cloud::ContextManager;
using tandem::cloud::ContinueResult;

std::shared_ptr<const CloudModel> ShippedModel() {
  static std::shared_ptr<const CloudModel> model = [] {
    tandem::cloud::CloudModelOptions options;
    options.model_dir = std::string(TANDEM_SOURCE_DIR) + "/models/tandem-tiny";
    options.token_resync = false;
    auto loaded = CloudModel::Create(options);
    return loaded.ok() ? std::shared_ptr<const CloudModel>(std::move(*loaded)) : nullptr;
  }();
  return model;
}

void BM_HealthyContinueUnderFlood(benchmark::State& state) {
  auto model = ShippedModel();
  if (model == nullptr) {
    state.SkipWithError("cannot load models/tandem-tiny");
    return;
  }
  constexpr int kFlooders = 30;
  constexpr int64_t kFloodRows = 511;
  const int64_t d = model->hidden_size();
  const at::Tensor flood = at::randn({kFloodRows + 1, d});
  const at::Tensor healthy = at::randn({16, d});
  double flood_seconds = 0, rows_waited = 0;
  for (auto _ : state) {
    ContextLimits limits;
    limits.max_session_batch_rows = state.range(0);
    ContextManager cm(model, limits);
    std::atomic<int> flood_left{kFlooders};
    absl::Notification flood_done;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kFlooders; ++i) {
      const std::string id = "flood-" + std::to_string(i);
      (void)cm.Open(id, "flooder-" + std::to_string(i), {});
      (void)cm.AddContext(id, "flooder-" + std::to_string(i), 0, flood.narrow(0, 0, kFloodRows));
      (void)cm.Continue(id, "flooder-" + std::to_string(i), kFloodRows, flood[kFloodRows],
                        [&](absl::StatusOr<ContinueResult>) {
                          if (--flood_left == 0) flood_done.Notify();
                        });
    }
    (void)cm.Open("healthy", "edge", {});
    (void)cm.AddContext("healthy", "edge", 0, healthy.narrow(0, 0, 15));
    absl::Notification answered;
    const int64_t rows_before = cm.stats().rows_run;
    int64_t rows_at_answer = 0;
    const auto asked = std::chrono::steady_clock::now();
    (void)cm.Continue("healthy", "edge", 15, healthy[15], [&](absl::StatusOr<ContinueResult>) {
      answered.Notify();
    });
    answered.WaitForNotification();
    const auto got = std::chrono::steady_clock::now();
    rows_at_answer = cm.stats().rows_run;
    flood_done.WaitForNotification();
    const auto end = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(got - asked).count());
    flood_seconds += std::chrono::duration<double>(end - start).count();
    rows_waited += static_cast<double>(rows_at_answer - rows_before);
  }
  state.counters["flood_s"] = benchmark::Counter(flood_seconds, benchmark::Counter::kAvgIterations);
  state.counters["rows_waited"] =
      benchmark::Counter(rows_waited, benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_HealthyContinueUnderFlood)
    ->Arg(0)
    ->Arg(32)
    ->Arg(64)
    ->Arg(128)
    ->Arg(256)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

}  // namespace
