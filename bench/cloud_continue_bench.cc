// Cloud time per request: N sessions of the shipped model (split 4) each ask
// for one token at position 64 (64 rows of context already run); one
// iteration = one round in which every session gets its answer. The scheduler
// batches the round's rows into one packed forward, so time per token should
// fall as N grows (rows_per_s = tokens the cloud serves per second).
// BM_ContextIngest: one session's uploaded context absorbed by the cloud —
// 15 Context messages of 16 rows queued, then a Continue that runs them all
// through [S, L) (rows_per_s counts the 241 rows).
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include "absl/synchronization/blocking_counter.h"
#include "tandem/cloud/context_manager.h"

namespace {

using tandem::cloud::CloudModel;
using tandem::cloud::ContextManager;

std::shared_ptr<const CloudModel> Shipped() {
  static std::shared_ptr<const CloudModel> model = [] {
    tandem::cloud::CloudModelOptions options;
    options.model_dir = std::string(TANDEM_SOURCE_DIR) + "/models/tandem-tiny";
    options.token_resync = false;
    auto loaded = tandem::cloud::CloudModel::Create(options);
    return loaded.ok() ? std::shared_ptr<const CloudModel>(std::move(*loaded)) : nullptr;
  }();
  return model;
}

void BM_CloudContinueRound(benchmark::State& state) {
  const int sessions = static_cast<int>(state.range(0));
  auto model = Shipped();
  if (model == nullptr) {
    state.SkipWithError("cannot load models/tandem-tiny");
    return;
  }
  at::InferenceMode guard;
  ContextManager manager(model, {});
  constexpr int64_t kContext = 64;
  const int64_t d = model->hidden_size();
  std::vector<std::string> ids;
  for (int i = 0; i < sessions; ++i) {
    ids.push_back("bench-session-" + std::to_string(i) + "-padding");
    tandem::cloud::SessionOptions options;
    options.capacity = kContext + 1;
    if (!manager.Open(ids.back(), "bench", options).ok() ||
        !manager.AddContext(ids.back(), "bench", 0, at::randn({kContext, d})).ok()) {
      state.SkipWithError("setup failed");
      return;
    }
  }
  const at::Tensor row = at::randn({1, d});
  // Every session asks for the token after kContext; true when all answered.
  auto round = [&] {
    absl::BlockingCounter done(sessions);
    std::atomic<bool> ok{true};
    for (const std::string& id : ids) {
      auto status = manager.Continue(id, "bench", kContext, row, [&](auto result) {
        if (!result.ok()) ok = false;
        done.DecrementCount();
      });
      if (!status.ok()) {
        ok = false;
        done.DecrementCount();
      }
    }
    done.Wait();
    return ok.load();
  };
  // An untimed first round also runs the 64 context rows of every session.
  if (!round()) {
    state.SkipWithError("a Continue failed");
    return;
  }
  for (auto _ : state) {
    state.PauseTiming();
    for (const std::string& id : ids) (void)manager.Truncate(id, "bench", kContext);
    state.ResumeTiming();
    if (!round()) {
      state.SkipWithError("a Continue failed");
      return;
    }
  }
  state.counters["tokens_per_round"] = sessions;
  // Seconds of wall time per token served (printed with SI prefixes: 2m = 2 ms).
  state.counters["s_per_token"] = benchmark::Counter(
      sessions, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.counters["rows_per_s"] =
      benchmark::Counter(sessions, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_CloudContinueRound)->Arg(1)->Arg(4)->Arg(8)->Arg(16)->Arg(64)->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_ContextIngest(benchmark::State& state) {
  auto model = Shipped();
  if (model == nullptr) {
    state.SkipWithError("cannot load models/tandem-tiny");
    return;
  }
  at::InferenceMode guard;
  ContextManager manager(model, {});
  constexpr int64_t kMessages = 15, kRows = 16;
  const int64_t d = model->hidden_size();
  const std::string id = "bench-ingest-session-padding";
  tandem::cloud::SessionOptions options;
  options.capacity = kMessages * kRows + 1;
  if (!manager.Open(id, "bench", options).ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  const at::Tensor rows = at::randn({kRows, d});
  const at::Tensor row = at::randn({1, d});
  for (auto _ : state) {
    state.PauseTiming();
    (void)manager.Truncate(id, "bench", 0);
    state.ResumeTiming();
    bool ok = true;
    for (int64_t m = 0; m < kMessages; ++m) {
      ok = ok && manager.AddContext(id, "bench", m * kRows, rows).ok();
    }
    absl::BlockingCounter done(1);
    auto status = manager.Continue(id, "bench", kMessages * kRows, row, [&](auto result) {
      if (!result.ok()) ok = false;
      done.DecrementCount();
    });
    if (!status.ok()) {
      ok = false;
      done.DecrementCount();
    }
    done.Wait();
    if (!ok) {
      state.SkipWithError("ingest failed");
      return;
    }
  }
  state.counters["rows_per_s"] = benchmark::Counter(static_cast<double>(kMessages * kRows + 1),
                                                    benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_ContextIngest)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
