// The scheduler batches many sessions' work into one forward without changing
// any session's results; pending work is cancelled / aborted cleanly.
#include <atomic>
#include <thread>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "absl/synchronization/barrier.h"
#include "cloud_fixture.h"
#include "tandem/cloud/context_manager.h"

namespace tandem::cloud {
namespace {

using testing::ContinueSync;
using testing::EdgeRows;
using testing::FullGreedy;
using testing::MakeSplitModel;
using testing::Outcome;
using testing::Prompt;
using testing::SchedulerStall;
using testing::ServeGreedy;

SessionOptions WithLogits() {
  SessionOptions o;
  o.return_logits = true;
  return o;
}

std::string Id(int i) { return "session-" + std::to_string(i); }

TEST(Scheduler, ConcurrentSessionsEqualEachServedAlone) {
  auto sm = MakeSplitModel();
  constexpr int kSessions = 8, kSteps = 6;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < kSessions; ++i) prompts.push_back(Prompt(i, 3 + 2 * i));

  std::vector<std::vector<int32_t>> alone(kSessions);
  std::vector<std::vector<at::Tensor>> alone_logits(kSessions);
  for (int i = 0; i < kSessions; ++i) {
    ContextManager cm(sm.cloud, {});
    ASSERT_TRUE(cm.Open(Id(i), "o", WithLogits()).ok());
    alone[i] = ServeGreedy(cm, sm, Id(i), "o", prompts[i], kSteps, &alone_logits[i]);
    EXPECT_EQ(alone[i], FullGreedy(*sm.full, prompts[i], kSteps)) << "session " << i;
  }

  ContextManager cm(sm.cloud, {});
  std::vector<std::vector<int32_t>> together(kSessions);
  std::vector<std::vector<at::Tensor>> together_logits(kSessions);
  absl::Barrier* start = new absl::Barrier(kSessions);
  std::vector<std::thread> threads;
  for (int i = 0; i < kSessions; ++i) {
    threads.emplace_back([&, i] {
      EXPECT_TRUE(cm.Open(Id(i), "owner-" + std::to_string(i), WithLogits()).ok());
      if (start->Block()) delete start;
      together[i] = ServeGreedy(cm, sm, Id(i), "owner-" + std::to_string(i), prompts[i], kSteps,
                                &together_logits[i]);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kSessions; ++i) {
    EXPECT_EQ(together[i], alone[i]) << "session " << i;
    ASSERT_EQ(together_logits[i].size(), alone_logits[i].size());
    for (size_t k = 0; k < alone_logits[i].size(); ++k) {
      EXPECT_LT((together_logits[i][k] - alone_logits[i][k]).abs().max().item<float>(), 1e-5);
    }
  }
  const ContextStats stats = cm.stats();
  EXPECT_EQ(stats.tokens_served, kSessions * kSteps);
  EXPECT_LT(stats.batches, stats.tokens_served) << "no two sessions ever shared a batch";
  EXPECT_EQ(stats.failed, 0);
}

TEST(Scheduler, WorkQueuedWhileBusyRunsAsOneBatch) {
  auto sm = MakeSplitModel();
  constexpr int kSessions = 8;
  ContextManager cm(sm.cloud, {});
  at::Tensor stall_row = EdgeRows(*sm.full, 2, Prompt(99, 1))[0];
  SchedulerStall stall(cm, stall_row);
  const int64_t batches_before = cm.stats().batches;

  std::vector<std::vector<int32_t>> prompts;
  std::vector<Outcome> outcomes(kSessions);
  for (int i = 0; i < kSessions; ++i) {
    prompts.push_back(Prompt(i, 2 + i));
    at::Tensor rows = EdgeRows(*sm.full, 2, prompts[i]);
    const int64_t last = rows.size(0) - 1;
    ASSERT_TRUE(cm.Open(Id(i), "o", {}).ok());
    if (last > 0) {
      ASSERT_TRUE(cm.AddContext(Id(i), "o", 0, rows.narrow(0, 0, last)).ok());
    }
    ASSERT_TRUE(cm.Continue(Id(i), "o", last, rows[last], outcomes[i].callback()).ok());
  }
  stall.Release();
  ASSERT_TRUE(cm.Drain(absl::Now() + absl::Seconds(20)));
  for (int i = 0; i < kSessions; ++i) {
    auto r = outcomes[i].get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->token, FullGreedy(*sm.full, prompts[i], 1)[0]) << "session " << i;
    EXPECT_EQ(r->rows_run, static_cast<int64_t>(prompts[i].size()));
  }
  // The 8 sessions and the stall session's second Continue: one iteration.
  EXPECT_EQ(cm.stats().batches, batches_before + 1);
}

TEST(Scheduler, BatchRowLimitIsHeldBySplittingSessionsAcrossIterations) {
  auto sm = MakeSplitModel();
  ContextLimits limits;
  limits.max_batch_rows = 4;
  ContextManager cm(sm.cloud, limits);
  at::Tensor stall_row = EdgeRows(*sm.full, 2, Prompt(99, 1))[0];
  SchedulerStall stall(cm, stall_row);
  const int64_t batches_before = cm.stats().batches;
  std::vector<Outcome> outcomes(4);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 4; ++i) {
    prompts.push_back(Prompt(i, 6));  // 6 rows each: more than a batch
    at::Tensor rows = EdgeRows(*sm.full, 2, prompts[i]);
    ASSERT_TRUE(cm.Open(Id(i), "o", {}).ok());
    ASSERT_TRUE(cm.AddContext(Id(i), "o", 0, rows.narrow(0, 0, 5)).ok());
    ASSERT_TRUE(cm.Continue(Id(i), "o", 5, rows[5], outcomes[i].callback()).ok());
  }
  stall.Release();
  ASSERT_TRUE(cm.Drain(absl::Now() + absl::Seconds(20)));
  for (int i = 0; i < 4; ++i) {
    auto r = outcomes[i].get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->token, FullGreedy(*sm.full, prompts[i], 1)[0]);
    // Split (fair scheduling): the Continue ran with the rest of its rows.
    EXPECT_GE(r->rows_run, 1);
    EXPECT_LE(r->rows_run, 4);
  }
  // The stall's 1 row + 4 sessions x 6 rows, at most 4 rows a batch.
  EXPECT_GE(cm.stats().batches - batches_before, 7);
}

TEST(Scheduler, ContextArrivingWhileAContinueIsPendingIsKept) {
  auto sm = MakeSplitModel();
  ContextManager cm(sm.cloud, {});
  const std::vector<int32_t> prompt = Prompt(5, 6);
  std::vector<int32_t> reference = FullGreedy(*sm.full, prompt, 1);
  std::vector<int32_t> ids = prompt;
  ids.push_back(reference[0]);
  ids.push_back(7);  // the edge went on without waiting (e.g. a deadline)
  at::Tensor rows = EdgeRows(*sm.full, 2, ids);
  at::Tensor stall_row = rows[0];
  SchedulerStall stall(cm, stall_row);
  ASSERT_TRUE(cm.Open("s", "o", {}).ok());
  ASSERT_TRUE(cm.AddContext("s", "o", 0, rows.narrow(0, 0, 5)).ok());
  Outcome first, second;
  ASSERT_TRUE(cm.Continue("s", "o", 5, rows[5], first.callback()).ok());
  ASSERT_TRUE(cm.AddContext("s", "o", 6, rows.narrow(0, 6, 1)).ok());
  ASSERT_TRUE(cm.Continue("s", "o", 7, rows[7], second.callback()).ok());
  stall.Release();
  auto a = first.get(), b = second.get();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->token, reference[0]);
  EXPECT_EQ(b->token, FullGreedy(*sm.full, ids, 1)[0]);
  EXPECT_EQ(a->rows_run, 6);
  EXPECT_EQ(b->rows_run, 2);
}

TEST(Scheduler, CloseCancelsAndTruncateAbortsPendingContinues) {
  auto sm = MakeSplitModel();
  ContextManager cm(sm.cloud, {});
  const std::vector<int32_t> prompt = Prompt(2, 5);
  at::Tensor rows = EdgeRows(*sm.full, 2, prompt);
  SchedulerStall stall(cm, rows[0]);
  ASSERT_TRUE(cm.Open("closed", "o", {}).ok());
  ASSERT_TRUE(cm.Open("truncated", "o", {}).ok());
  Outcome closed, truncated;
  ASSERT_TRUE(cm.Continue("closed", "o", 0, rows[0], closed.callback()).ok());
  ASSERT_TRUE(cm.AddContext("truncated", "o", 0, rows.narrow(0, 0, 3)).ok());
  ASSERT_TRUE(cm.Continue("truncated", "o", 3, rows[3], truncated.callback()).ok());

  ASSERT_TRUE(cm.Close("closed", "o").ok());
  EXPECT_EQ(closed.get().status().code(), absl::StatusCode::kCancelled);
  auto held = cm.Truncate("truncated", "o", 2);
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(*held, 2);
  EXPECT_EQ(truncated.get().status().code(), absl::StatusCode::kAborted);

  stall.Release();
  ASSERT_TRUE(cm.AddContext("truncated", "o", 2, rows.narrow(0, 2, 2)).ok());
  auto r = ContinueSync(cm, "truncated", "o", 4, rows[4]);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token, FullGreedy(*sm.full, prompt, 1)[0]);
  EXPECT_TRUE(cm.Drain(absl::Now() + absl::Seconds(10)));
}

TEST(Scheduler, DestructorFailsOutstandingContinuesOnce) {
  auto sm = MakeSplitModel();
  auto cm = std::make_unique<ContextManager>(sm.cloud, ContextLimits{});
  at::Tensor rows = EdgeRows(*sm.full, 2, Prompt(1, 4));
  auto stall = std::make_unique<SchedulerStall>(*cm, rows[0]);
  constexpr int kSessions = 6;
  std::vector<std::atomic<int>> calls(kSessions);
  std::vector<Outcome> outcomes(kSessions);
  for (int i = 0; i < kSessions; ++i) {
    ASSERT_TRUE(cm->Open(Id(i), "o", {}).ok());
    ASSERT_TRUE(cm->Continue(Id(i), "o", 0, rows[0], [&calls, i, cb = outcomes[i].callback()](
                                                         absl::StatusOr<ContinueResult> r) {
                      calls[i]++;
                      cb(std::move(r));
                    }).ok());
  }
  absl::Notification destroying;
  std::thread destroyer([&] {
    destroying.Notify();
    cm.reset();
  });
  destroying.WaitForNotification();
  stall->Release();
  destroyer.join();
  for (int i = 0; i < kSessions; ++i) {
    EXPECT_EQ(calls[i].load(), 1);
    auto r = outcomes[i].get();
    // Cancelled unless the scheduler took it before the destructor stopped it.
    EXPECT_TRUE(r.ok() || r.status().code() == absl::StatusCode::kCancelled) << r.status();
  }
}

TEST(Scheduler, CallbacksMayCallBackIn) {
  auto sm = MakeSplitModel();
  ContextManager cm(sm.cloud, {});
  const std::vector<int32_t> prompt = Prompt(4, 5);
  const std::vector<int32_t> reference = FullGreedy(*sm.full, prompt, 3);
  ASSERT_TRUE(cm.Open("s", "o", {}).ok());
  at::Tensor rows = EdgeRows(*sm.full, 2, prompt);
  ASSERT_TRUE(cm.AddContext("s", "o", 0, rows.narrow(0, 0, 4)).ok());
  // Each token's callback submits the next Continue (as a server might).
  std::vector<int32_t> got;
  Outcome last;
  std::function<void(absl::StatusOr<ContinueResult>)> next =
      [&](absl::StatusOr<ContinueResult> r) {
        ASSERT_TRUE(r.ok()) << r.status();
        got.push_back(r->token);
        if (got.size() == 3) {
          last.callback()(std::move(r));
          return;
        }
        std::vector<int32_t> ids = prompt;
        ids.insert(ids.end(), got.begin(), got.end());
        const int64_t p = static_cast<int64_t>(ids.size()) - 1;
        ASSERT_TRUE(cm.Held("s", "o").ok());
        ASSERT_TRUE(cm.Continue("s", "o", p, EdgeRows(*sm.full, 2, ids)[p], next).ok());
      };
  ASSERT_TRUE(cm.Continue("s", "o", 4, rows[4], next).ok());
  ASSERT_TRUE(last.get().ok());
  EXPECT_EQ(got, reference);
}

}  // namespace
}  // namespace tandem::cloud
