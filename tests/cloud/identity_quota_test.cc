// Issue 14, item 3: a stream's end drops its session's queued work (Detach),
// and per-identity quotas (sessions, queued rows, rows/s). SessionTable is
// driven by hand (no scheduler thread), so nothing runs behind the test's back.
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "cloud_fixture.h"
#include "core/rate_limiter.h"
#include "core/session_table.h"

namespace tandem::cloud {
namespace {

using testing::MakeSplitModel;
using testing::Outcome;

Chunk Rows(int64_t first, int64_t rows, int64_t dim) {
  Chunk c;
  c.first = first;
  c.rows = rows;
  c.hidden = at::randn({rows, dim});
  return c;
}

Chunk Continue(int64_t position, int64_t dim, Outcome* outcome) {
  Chunk c = Rows(position, 1, dim);
  c.done = outcome->callback();
  return c;
}

TEST(StreamEnd, DetachDropsQueuedRowsAndCancelsContinuesButKeepsTheSession) {
  auto sm = MakeSplitModel();
  const int64_t dim = sm.cloud->hidden_size();
  SessionTable table(sm.cloud, {});
  ASSERT_TRUE(table.Open("s", "o", {}).ok());
  auto attachment = table.Attach("s", "o");
  ASSERT_TRUE(attachment.ok());
  std::vector<Delivery> none;
  Outcome outcome;
  ASSERT_TRUE(table.Enqueue("s", "o", 0, Rows(0, 100, dim), &none).ok());
  ASSERT_TRUE(table.Enqueue("s", "o", 0, Continue(100, dim, &outcome), &none).ok());
  EXPECT_EQ(table.stats().queued_rows, 101);

  std::vector<Delivery> cancelled;
  auto dropped = table.Detach("s", "o", *attachment, &cancelled);
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  EXPECT_EQ(*dropped, 101);
  Deliver(&cancelled);
  EXPECT_EQ(outcome.get().status().code(), absl::StatusCode::kCancelled);
  const ContextStats stats = table.stats();
  EXPECT_EQ(stats.queued_rows, 0);
  EXPECT_EQ(stats.abandoned_rows, 101);
  EXPECT_EQ(stats.abandoned_continues, 1);
  EXPECT_EQ(stats.sessions, 1);  // kept for a resume until the TTL
  auto held = table.Held("s", "o");
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(*held, 0);  // nothing ran: a resume replays from 0
  // A resuming stream picks up from what the session holds.
  EXPECT_TRUE(table.Enqueue("s", "o", 0, Rows(0, 3, dim), &none).ok());
  EXPECT_EQ(table.stats().queued_rows, 3);
}

TEST(StreamEnd, AnOlderStreamsEndLeavesANewerStreamsWorkAlone) {
  auto sm = MakeSplitModel();
  const int64_t dim = sm.cloud->hidden_size();
  SessionTable table(sm.cloud, {});
  ASSERT_TRUE(table.Open("s", "o", {}).ok());
  auto old_stream = table.Attach("s", "o");
  auto new_stream = table.Attach("s", "o");  // the edge reconnected
  ASSERT_TRUE(old_stream.ok() && new_stream.ok());
  std::vector<Delivery> none;
  Outcome outcome;
  ASSERT_TRUE(table.Enqueue("s", "o", 0, Rows(0, 5, dim), &none).ok());
  ASSERT_TRUE(table.Enqueue("s", "o", 0, Continue(5, dim, &outcome), &none).ok());
  std::vector<Delivery> cancelled;
  auto dropped = table.Detach("s", "o", *old_stream, &cancelled);
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ(*dropped, 0);
  EXPECT_TRUE(cancelled.empty());
  EXPECT_EQ(table.stats().queued_rows, 6);
  EXPECT_EQ(*table.Held("s", "o"), 6);
}

TEST(IdentityQuota, SessionsPerIdentityEvictsItsOwnIdleSessionOrRefuses) {
  auto sm = MakeSplitModel();
  const int64_t dim = sm.cloud->hidden_size();
  ContextLimits limits;
  limits.max_sessions_per_identity = 2;
  SessionTable table(sm.cloud, limits);
  ASSERT_TRUE(table.Open("other", "b", {}).ok());
  ASSERT_TRUE(table.Open("a1", "a", {}).ok());
  ASSERT_TRUE(table.Open("a2", "a", {}).ok());
  // a1 is the least recently used idle session of "a": it makes room.
  ASSERT_TRUE(table.Open("a3", "a", {}).ok());
  EXPECT_EQ(table.Held("a1", "a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(table.Held("other", "b").ok()) << "another identity's session was evicted";
  // With both of a's sessions waiting for a Continue, none can go: refused.
  std::vector<Delivery> none;
  Outcome o2, o3;
  ASSERT_TRUE(table.Enqueue("a2", "a", 0, Continue(0, dim, &o2), &none).ok());
  ASSERT_TRUE(table.Enqueue("a3", "a", 0, Continue(0, dim, &o3), &none).ok());
  auto refused = table.Open("a4", "a", {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("quota"), std::string::npos) << refused.status();
  EXPECT_EQ(table.stats().quota_refusals, 1);
  EXPECT_TRUE(table.Open("b2", "b", {}).ok());  // b is under its quota
  std::vector<Delivery> cancelled;
  table.CancelAll(&cancelled);
  Deliver(&cancelled);
}

TEST(IdentityQuota, QueuedRowsPerIdentity) {
  auto sm = MakeSplitModel();
  const int64_t dim = sm.cloud->hidden_size();
  ContextLimits limits;
  limits.max_queued_rows_per_identity = 100;
  limits.max_queued_rows = 1000;  // nothing becomes ready by itself
  SessionTable table(sm.cloud, limits);
  std::vector<Delivery> none;
  ASSERT_TRUE(table.Open("a1", "a", {}).ok());
  ASSERT_TRUE(table.Open("a2", "a", {}).ok());
  ASSERT_TRUE(table.Open("b1", "b", {}).ok());
  ASSERT_TRUE(table.Enqueue("a1", "a", 0, Rows(0, 60, dim), &none).ok());
  ASSERT_TRUE(table.Enqueue("a2", "a", 0, Rows(0, 40, dim), &none).ok());
  auto refused = table.Enqueue("a2", "a", 0, Rows(40, 1, dim), &none);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("100 queued rows"), std::string::npos)
      << refused.status();
  EXPECT_EQ(*table.Held("a2", "a"), 40);  // nothing of the refused request stays
  EXPECT_TRUE(table.Enqueue("b1", "b", 0, Rows(0, 100, dim), &none).ok());
  // Rows leaving the queue give the quota back.
  ASSERT_TRUE(table.Truncate("a1", "a", 10, &none).ok());
  EXPECT_TRUE(table.Enqueue("a2", "a", 0, Rows(40, 50, dim), &none).ok());
}

TEST(IdentityQuota, RowsPerSecondPerIdentity) {
  auto sm = MakeSplitModel();
  const int64_t dim = sm.cloud->hidden_size();
  ContextLimits limits;
  limits.rows_per_second_per_identity = 1;  // refilled far slower than the test runs
  limits.rows_burst_per_identity = 20;
  limits.max_queued_rows = 1000;
  SessionTable table(sm.cloud, limits);
  std::vector<Delivery> none;
  ASSERT_TRUE(table.Open("a", "a", {}).ok());
  ASSERT_TRUE(table.Open("b", "b", {}).ok());
  ASSERT_TRUE(table.Enqueue("a", "a", 0, Rows(0, 20, dim), &none).ok());
  auto refused = table.Enqueue("a", "a", 0, Rows(20, 10, dim), &none);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("rows/s"), std::string::npos) << refused.status();
  EXPECT_TRUE(table.Enqueue("b", "b", 0, Rows(0, 20, dim), &none).ok());
  EXPECT_EQ(table.stats().quota_refusals, 1);
}

TEST(RowRateLimiter, RefillsAtTheRateUpToTheBurst) {
  RowRateLimiter limiter;
  limiter.Configure(/*rate=*/10, /*burst=*/5);
  const absl::Time t0 = absl::FromUnixSeconds(100);
  ASSERT_TRUE(limiter.Allows(5, t0));
  limiter.Take(5, t0);
  EXPECT_FALSE(limiter.Allows(1, t0));
  EXPECT_FALSE(limiter.Allows(1, t0 + absl::Milliseconds(50)));  // 0.5 rows
  EXPECT_TRUE(limiter.Allows(1, t0 + absl::Milliseconds(100)));
  EXPECT_FALSE(limiter.Allows(3, t0 + absl::Milliseconds(200)));
  EXPECT_TRUE(limiter.Allows(5, t0 + absl::Seconds(10)));  // capped at the burst
  limiter.Take(5, t0 + absl::Seconds(10));
  EXPECT_FALSE(limiter.Allows(1, t0 + absl::Seconds(10)));
  // A request larger than the burst passes from a full bucket, then pays.
  EXPECT_TRUE(limiter.Allows(50, t0 + absl::Seconds(20)));
  limiter.Take(50, t0 + absl::Seconds(20));
  EXPECT_FALSE(limiter.Allows(1, t0 + absl::Seconds(24)));
  EXPECT_TRUE(limiter.Allows(1, t0 + absl::Seconds(25)));
}

TEST(RowRateLimiter, ZeroRateIsUnlimited) {
  RowRateLimiter limiter;
  limiter.Configure(0, 0);
  EXPECT_TRUE(limiter.Allows(1 << 30, absl::FromUnixSeconds(1)));
}

}  // namespace
}  // namespace tandem::cloud
