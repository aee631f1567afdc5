// ContextManager limits: memory budget with LRU eviction of idle sessions only,
// session cap, idle TTL, background prefill of over-full queues.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

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
using testing::WaitFor;

// TinyGqa split at 2: the [2, 4) cache costs 2 layers x (k, v) x 2 kv heads x
// 8 dims x 4 bytes = 256 bytes a position; a queued row 32 x 4 = 128 bytes.
constexpr int64_t kKvPerPosition = 256;
constexpr int64_t kRow = 128;

SessionOptions Capacity(int64_t c) {
  SessionOptions o;
  o.capacity = c;
  return o;
}

bool IsNotFound(const ContextManager& cm, const std::string& id, const std::string& owner) {
  return cm.Held(id, owner).status().code() == absl::StatusCode::kNotFound;
}

TEST(ContextLimits, MemoryBudgetEvictsTheLeastRecentlyUsedIdleSession) {
  auto sm = MakeSplitModel();
  ContextLimits limits;
  limits.memory_budget_bytes = 2 * 16 * kKvPerPosition + 8 * kRow;
  ContextManager cm(sm.cloud, limits);
  at::Tensor rows = EdgeRows(*sm.full, 2, Prompt(0, 8));
  ASSERT_TRUE(cm.Open("s1", "o", Capacity(16)).ok());
  ASSERT_TRUE(cm.AddContext("s1", "o", 0, rows.narrow(0, 0, 4)).ok());
  ASSERT_TRUE(cm.Open("s2", "o", Capacity(16)).ok());
  ASSERT_TRUE(cm.AddContext("s2", "o", 0, rows.narrow(0, 0, 2)).ok());
  EXPECT_EQ(cm.stats().memory_bytes, 2 * 16 * kKvPerPosition + 6 * kRow);

  // A third session does not fit: s1, the least recently used, goes.
  ASSERT_TRUE(cm.Open("s3", "o", Capacity(16)).ok());
  EXPECT_TRUE(IsNotFound(cm, "s1", "o"));
  EXPECT_EQ(*cm.Held("s2", "o"), 2);
  ContextStats stats = cm.stats();
  EXPECT_EQ(stats.evicted, 1);
  EXPECT_EQ(stats.sessions, 2);
  EXPECT_EQ(stats.memory_bytes, 2 * 16 * kKvPerPosition + 2 * kRow);
  EXPECT_LE(stats.memory_bytes, limits.memory_budget_bytes);

  // Touching s2 makes s3 the least recently used.
  ASSERT_TRUE(cm.AddContext("s2", "o", 2, rows.narrow(0, 2, 1)).ok());
  ASSERT_TRUE(cm.Open("s4", "o", Capacity(16)).ok());
  EXPECT_TRUE(IsNotFound(cm, "s3", "o"));
  EXPECT_EQ(*cm.Held("s2", "o"), 3);
  EXPECT_EQ(cm.stats().evicted, 2);

  // More than the whole budget can never fit, and evicts nothing.
  ASSERT_TRUE(cm.Open("s5", "o", {}).status().code() == absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cm.stats().sessions, 2);
  // Queued rows count too: 13 more rows for s2 fit only once s4 (idle) goes.
  ASSERT_TRUE(cm.AddContext("s2", "o", 3, at::randn({13, 32})).ok());
  EXPECT_TRUE(IsNotFound(cm, "s4", "o"));
  EXPECT_EQ(cm.stats().memory_bytes, 16 * kKvPerPosition + 16 * kRow);
  EXPECT_EQ(cm.stats().evicted, 3);
}

TEST(ContextLimits, BusySessionsAreNeverEvicted) {
  auto sm = MakeSplitModel();
  ContextLimits limits;
  limits.memory_budget_bytes = (2 * kKvPerPosition + kRow) +       // stall
                               (16 * kKvPerPosition + 4 * kRow) +  // busy
                               16 * kKvPerPosition + 2 * kRow;     // idle, then new
  ContextManager cm(sm.cloud, limits);
  const std::vector<int32_t> prompt = Prompt(3, 4);
  at::Tensor rows = EdgeRows(*sm.full, 2, prompt);
  SchedulerStall stall(cm, rows[0]);

  ASSERT_TRUE(cm.Open("busy", "o", Capacity(16)).ok());
  ASSERT_TRUE(cm.AddContext("busy", "o", 0, rows.narrow(0, 0, 3)).ok());
  Outcome busy;
  ASSERT_TRUE(cm.Continue("busy", "o", 3, rows[3], busy.callback()).ok());  // pending
  ASSERT_TRUE(cm.Open("idle", "o", Capacity(16)).ok());
  ASSERT_EQ(cm.stats().evicted, 0);

  // No room for another: the idle one goes, never the busy one.
  ASSERT_TRUE(cm.Open("new", "o", Capacity(16)).ok());
  EXPECT_TRUE(IsNotFound(cm, "idle", "o"));
  EXPECT_EQ(*cm.Held("busy", "o"), 4);
  EXPECT_EQ(cm.stats().evicted, 1);
  // With every session busy there is nothing to evict.
  Outcome second;
  ASSERT_TRUE(cm.Continue("new", "o", 0, rows[0], second.callback()).ok());
  EXPECT_EQ(cm.Open("more", "o", Capacity(16)).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cm.stats().evicted, 1);
  EXPECT_EQ(cm.ExpireIdle(), 0);

  stall.Release();
  auto r = busy.get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token, FullGreedy(*sm.full, prompt, 1)[0]);
  EXPECT_TRUE(second.get().ok());
}

TEST(ContextLimits, SessionCapEvictsTheLeastRecentlyUsedIdleSession) {
  auto sm = MakeSplitModel();
  ContextLimits limits;
  limits.max_sessions = 2;
  ContextManager cm(sm.cloud, limits);
  ASSERT_TRUE(cm.Open("a", "o", {}).ok());
  ASSERT_TRUE(cm.Open("b", "o", {}).ok());
  ASSERT_TRUE(cm.Open("a", "o", {}).ok());  // resuming touches a
  ASSERT_TRUE(cm.Open("c", "o", {}).ok());
  EXPECT_TRUE(IsNotFound(cm, "b", "o"));
  EXPECT_TRUE(cm.Held("a", "o").ok());
  EXPECT_EQ(cm.stats().evicted, 1);
  EXPECT_EQ(cm.stats().sessions, 2);
}

TEST(ContextLimits, SessionCapWithOnlyBusySessionsIsResourceExhausted) {
  auto sm = MakeSplitModel();
  ContextLimits limits;
  limits.max_sessions = 2;
  ContextManager cm(sm.cloud, limits);
  at::Tensor rows = EdgeRows(*sm.full, 2, Prompt(1, 2));
  SchedulerStall stall(cm, rows[0]);  // session 1 of 2, busy
  ASSERT_TRUE(cm.Open("a", "o", {}).ok());
  Outcome pending;
  ASSERT_TRUE(cm.Continue("a", "o", 0, rows[0], pending.callback()).ok());
  EXPECT_EQ(cm.Open("b", "o", {}).status().code(), absl::StatusCode::kResourceExhausted);
  stall.Release();
  EXPECT_TRUE(pending.get().ok());
}

TEST(ContextLimits, IdleSessionsExpireAfterTheTtlButNotBusyOnes) {
  auto sm = MakeSplitModel();
  ContextLimits limits;
  limits.idle_ttl = absl::Milliseconds(30);
  ContextManager cm(sm.cloud, limits);
  at::Tensor rows = EdgeRows(*sm.full, 2, Prompt(1, 3));
  SchedulerStall stall(cm, rows[0]);
  ASSERT_TRUE(cm.Open("idle", "o", {}).ok());
  ASSERT_TRUE(cm.Open("busy", "o", {}).ok());
  Outcome pending;
  ASSERT_TRUE(cm.Continue("busy", "o", 0, rows[0], pending.callback()).ok());

  EXPECT_TRUE(WaitFor([&] {
    cm.ExpireIdle();
    return IsNotFound(cm, "idle", "o");
  }));
  EXPECT_GE(cm.stats().expired, 1);
  // Well past the TTL, the busy session is still there.
  const absl::Time since = absl::Now();
  EXPECT_TRUE(WaitFor([&] { return absl::Now() - since > 3 * limits.idle_ttl; }));
  cm.ExpireIdle();
  EXPECT_EQ(*cm.Held("busy", "o"), 1);

  stall.Release();
  ASSERT_TRUE(pending.get().ok());
  // Once served it is idle, and expires like any other (the scheduler also
  // expires sessions on its own).
  EXPECT_TRUE(WaitFor([&] { return IsNotFound(cm, "busy", "o"); }));
  EXPECT_GE(cm.stats().expired, 2);
}

TEST(ContextLimits, FullQueuesRunInTheBackground) {
  auto sm = MakeSplitModel();
  ContextLimits limits;
  limits.max_queued_rows = 4;
  ContextManager cm(sm.cloud, limits);
  const std::vector<int32_t> prompt = Prompt(8, 11);
  at::Tensor rows = EdgeRows(*sm.full, 2, prompt);
  ASSERT_TRUE(cm.Open("s", "o", {}).ok());
  ASSERT_TRUE(cm.AddContext("s", "o", 0, rows.narrow(0, 0, 3)).ok());
  ASSERT_TRUE(cm.Drain(absl::Now() + absl::Seconds(10)));
  EXPECT_EQ(cm.stats().rows_run, 0);  // below the threshold: stays queued
  ASSERT_TRUE(cm.AddContext("s", "o", 3, rows.narrow(0, 3, 2)).ok());
  EXPECT_TRUE(WaitFor([&] { return cm.stats().rows_run == 5; }));
  EXPECT_EQ(cm.stats().queued_rows, 0);
  EXPECT_EQ(cm.stats().tokens_served, 0);
  // Token ids count too.
  ASSERT_TRUE(cm.Open("t", "o", {}).ok());
  ASSERT_TRUE(cm.AddTokens("t", "o", 0, std::vector<int32_t>(prompt.begin(), prompt.begin() + 10))
                  .ok());
  EXPECT_TRUE(WaitFor([&] { return cm.stats().rows_run == 15; }));

  ASSERT_TRUE(cm.AddContext("s", "o", 5, rows.narrow(0, 5, 5)).ok());
  auto r = ContinueSync(cm, "s", "o", 10, rows[10]);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token, FullGreedy(*sm.full, prompt, 1)[0]);
  auto t = ContinueSync(cm, "t", "o", 10, rows[10]);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->token, r->token);
}

}  // namespace
}  // namespace tandem::cloud
