// Issue 14, item 1: the memory budget bounds resident memory, measured as
// VmRSS. A flood of sessions (each a 2 MiB KV cache of the shipped model),
// opened from several threads so glibc spreads them over several arenas, far
// more than the budget holds: the table evicts, and resident memory must stay
// near baseline + budget during the flood and come back near baseline once
// every session is gone. This is a functional bound with generous slack, not
// a timing test; docs/decisions.md ("Hardening: resident memory") has the
// measurements.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "cloud_fixture.h"
#include "core/memory_release.h"
#include "tandem/cloud/context_manager.h"

namespace tandem::cloud {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

std::shared_ptr<const CloudModel> Shipped() {
  CloudModelOptions options;
  options.model_dir = std::string(TANDEM_SOURCE_DIR) + "/models/tandem-tiny";
  options.token_resync = false;
  auto cloud = CloudModel::Create(options);
  EXPECT_TRUE(cloud.ok()) << cloud.status();
  return cloud.ok() ? std::shared_ptr<const CloudModel>(std::move(*cloud)) : nullptr;
}

struct FloodResult {
  int64_t baseline = 0, peak = 0, after = 0;
  int64_t evicted = 0;
};

// 4 threads x `per_thread` sessions of 64 rows each against `limits`; every
// session is closed at the end.
FloodResult Flood(const std::shared_ptr<const CloudModel>& model, const ContextLimits& limits,
                  int per_thread) {
  FloodResult r;
  ContextManager cm(model, limits);
  const int64_t dim = model->hidden_size();
  const at::Tensor rows = at::randn({64, dim});
  ReturnFreeMemory();
  r.baseline = ResidentBytes();
  std::atomic<int64_t> peak{r.baseline};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      at::InferenceMode inference;
      for (int i = 0; i < per_thread; ++i) {
        const std::string id = "flood-" + std::to_string(t) + "-" + std::to_string(i);
        if (!cm.Open(id, "flooder", {}).ok()) continue;
        (void)cm.AddContext(id, "flooder", 0, rows);
        const int64_t now = ResidentBytes();
        int64_t seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  r.peak = peak.load();
  r.evicted = cm.stats().evicted;
  const int64_t trims = cm.stats().memory_trims;
  for (int t = 0; t < 4; ++t) {
    for (int i = 0; i < per_thread; ++i) {
      (void)cm.Close("flood-" + std::to_string(t) + "-" + std::to_string(i), "flooder");
    }
  }
  // The scheduler thread trims after large frees and when the last session
  // is gone; wait for that (nothing to wait for when trimming is off).
  if (limits.trim_after_free_bytes > 0) {
    EXPECT_TRUE(testing::WaitFor([&] {
      const ContextStats s = cm.stats();
      return s.sessions == 0 && s.memory_trims > trims;
    }));
  }
  r.after = ResidentBytes();
  std::printf("[resident] budget %lld MiB, trim after %lld MiB: baseline %lld MiB, peak %lld MiB "
              "(+%lld), after %lld MiB (+%lld), %lld evicted\n",
              static_cast<long long>(limits.memory_budget_bytes / kMiB),
              static_cast<long long>(limits.trim_after_free_bytes / kMiB),
              static_cast<long long>(r.baseline / kMiB), static_cast<long long>(r.peak / kMiB),
              static_cast<long long>((r.peak - r.baseline) / kMiB),
              static_cast<long long>(r.after / kMiB),
              static_cast<long long>((r.after - r.baseline) / kMiB),
              static_cast<long long>(r.evicted));
  return r;
}

ContextLimits FloodLimits() {
  ContextLimits limits;
  limits.memory_budget_bytes = 64 * kMiB;  // 30 sessions of 2 MiB + their rows
  return limits;
}

TEST(ResidentMemory, StaysNearTheBudgetDuringAFloodAndReturnsAfterIt) {
  auto model = Shipped();
  ASSERT_NE(model, nullptr);
  ASSERT_GT(ResidentBytes(), 0) << "cannot read VmRSS from /proc/self/status";
  const ContextLimits limits = FloodLimits();
  // 800 sessions of 2 MiB: 1.6 GB opened through a 64 MiB budget.
  const FloodResult r = Flood(model, limits, 200);
  EXPECT_GT(r.evicted, 600);
  // Budget + documented overhead (README, "Memory", 64 MiB): the trim runs on the
  // scheduler thread after every 8 MiB freed, so up to a few trims' worth of
  // freed caches may be resident at a sample, plus allocator slack.
  EXPECT_LE(r.peak - r.baseline, limits.memory_budget_bytes + 64 * kMiB);
  EXPECT_LE(r.after - r.baseline, 16 * kMiB);
}

// For the measurements in docs/decisions.md: the same flood with trimming off
// (run with --gtest_also_run_disabled_tests). It asserts nothing about RSS:
// what glibc keeps is its business, not a contract of ours.
TEST(ResidentMemory, DISABLED_MeasureWithoutTrimming) {
  auto model = Shipped();
  ASSERT_NE(model, nullptr);
  ContextLimits limits = FloodLimits();
  limits.trim_after_free_bytes = 0;
  const FloodResult r = Flood(model, limits, 200);
  EXPECT_GT(r.evicted, 600);
}

}  // namespace
}  // namespace tandem::cloud
