// SessionTable, driven by hand in place of the Scheduler thread, so that rows
// can arrive exactly while a session's batch runs: a rejected draft in that
// batch drops them with the queue (the interleaving real threads rarely hit).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "chunk_rows.h"
#include "cloud_fixture.h"
#include "core/batch_runner.h"
#include "core/session_table.h"

namespace tandem::cloud {
namespace {

using testing::EdgeRows;
using testing::FullGreedy;
using testing::MakeSplitModel;
using testing::Outcome;
using testing::Prompt;
using testing::Rows;

Chunk Continue(int64_t position, const at::Tensor& row, int32_t draft, Outcome* outcome) {
  Chunk c = Rows(position, row.view({1, -1}));
  c.done = outcome->callback();
  c.draft = DraftToken{draft, {}};
  return c;
}

TEST(SessionTableRollback, ChunksQueuedWhileTheRejectingBatchRunsAreDropped) {
  at::InferenceMode inference;
  auto sm = MakeSplitModel();
  SessionTable table(sm.cloud, {});
  ASSERT_TRUE(table.Open("s", "o", {}).ok());
  const std::vector<int32_t> prompt = Prompt(2, 6);
  const int64_t n = static_cast<int64_t>(prompt.size());
  const int32_t cloud_token = FullGreedy(*sm.full, prompt, 1)[0];
  const int32_t wrong = (cloud_token + 1) % 97;
  std::vector<int32_t> ids = prompt;
  ids.insert(ids.end(), {wrong, 3, 4});
  at::Tensor rows = EdgeRows(*sm.full, sm.split, ids);

  std::vector<Delivery> none;
  ASSERT_TRUE(table.Enqueue("s", "o", 0, Rows(0, rows.narrow(0, 0, n - 1)), &none).ok());
  Outcome rejected, queued;
  ASSERT_TRUE(table.Enqueue("s", "o", 0, Continue(n - 1, rows[n - 1], wrong, &rejected), &none).ok());

  // The scheduler takes the session's work ...
  std::vector<WorkItem> items;
  ASSERT_TRUE(table.WaitForWork(&items));
  ASSERT_EQ(items.size(), 1u);
  // ... and while it runs, the edge's next rows (built on the wrong draft) arrive.
  auto receipt = table.Enqueue("s", "o", 0, Rows(n, rows.narrow(0, n, 1)), &none);
  ASSERT_TRUE(receipt.ok()) << receipt.status();
  EXPECT_FALSE(receipt->stale);
  EXPECT_EQ(receipt->session.held, n + 1);
  ASSERT_TRUE(table.Enqueue("s", "o", 0, Continue(n + 1, rows[n + 1], 4, &queued), &none).ok());
  EXPECT_EQ(table.stats().queued_rows, n + 2);

  const double seconds = RunBatch(*sm.cloud, &items);
  std::vector<Delivery> deliveries;
  table.Complete(&items, seconds, &deliveries);
  Deliver(&deliveries);

  auto r = rejected.get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->verdict, Verdict::kRejected);
  EXPECT_EQ(r->token, cloud_token);
  EXPECT_EQ(r->branch, 1u);
  EXPECT_EQ(queued.get().status().code(), absl::StatusCode::kCancelled);
  auto where = table.Position("s", "o");
  ASSERT_TRUE(where.ok());
  EXPECT_EQ(where->held, n);
  EXPECT_EQ(where->branch, 1u);
  const ContextStats stats = table.stats();
  EXPECT_EQ(stats.queued_rows, 0);
  EXPECT_EQ(stats.superseded, 1);
  EXPECT_EQ(stats.rows_rolled_back, 2);  // the two rows queued during the batch
  EXPECT_EQ(stats.drafts_rejected, 1);
  // Nothing is left to run: the session is not ready.
  auto snapshot = table.CacheSnapshot("s", "o");
  ASSERT_TRUE(snapshot.ok());
  EXPECT_EQ((*snapshot)[0].size(1), n);

  // A late row of branch 0 is stale; branch 1 is taken at the held position.
  receipt = table.Enqueue("s", "o", 0, Rows(n, rows.narrow(0, n, 1)), &none);
  ASSERT_TRUE(receipt.ok());
  EXPECT_TRUE(receipt->stale);
  std::vector<int32_t> good = prompt;
  good.push_back(cloud_token);
  at::Tensor good_rows = EdgeRows(*sm.full, sm.split, good);
  const int32_t next_token = FullGreedy(*sm.full, prompt, 2)[1];
  Outcome accepted;
  receipt = table.Enqueue("s", "o", 1, Continue(n, good_rows[n], next_token, &accepted), &none);
  ASSERT_TRUE(receipt.ok());
  EXPECT_FALSE(receipt->stale);
  EXPECT_EQ(receipt->session.held, n + 1);

  // The next batch runs that row alone, on top of [0, n).
  items.clear();
  ASSERT_TRUE(table.WaitForWork(&items));
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].first_position, n);
  EXPECT_EQ(items[0].rows, 1);
  EXPECT_EQ(items[0].chunks.size(), 1u);
  table.Complete(&items, RunBatch(*sm.cloud, &items), &deliveries);
  Deliver(&deliveries);
  auto a = accepted.get();
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->verdict, Verdict::kAccepted);
  EXPECT_EQ(a->token, next_token);
  EXPECT_EQ(a->branch, 1u);
  table.RequestStop();
}

}  // namespace
}  // namespace tandem::cloud
