// Fair scheduling (ContextLimits::max_session_batch_rows): SessionTable driven
// by hand in place of the Scheduler thread, so each test sees exactly which
// work one iteration takes. Issue 14, item 3: one session's backlog of
// hundreds of rows must not stall another session's Continue.
#include <algorithm>
#include <string>
#include <vector>

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

Chunk Continue(int64_t position, const at::Tensor& row, Outcome* outcome) {
  Chunk c = Rows(position, row.view({1, -1}));
  c.done = outcome->callback();
  return c;
}

std::string Id(const std::string& prefix, int i) { return prefix + std::to_string(i); }

// `rows` random rows of context then a Continue, for session `id` of `owner`.
void Flood(SessionTable& table, const std::string& id, const std::string& owner, int64_t rows,
           int64_t dim, Outcome* outcome) {
  std::vector<Delivery> none;
  ASSERT_TRUE(table.Open(id, owner, {}).ok());
  ASSERT_TRUE(table.Enqueue(id, owner, 0, Rows(0, at::randn({rows, dim})), &none).ok());
  ASSERT_TRUE(table.Enqueue(id, owner, 0, Continue(rows, at::randn({dim}), outcome), &none).ok());
}

const WorkItem* Find(const std::vector<WorkItem>& items, const std::string& id) {
  for (const WorkItem& item : items) {
    if (item.session->id == id) return &item;
  }
  return nullptr;
}

int64_t TotalRows(const std::vector<WorkItem>& items) {
  int64_t rows = 0;
  for (const WorkItem& item : items) rows += item.rows;
  return rows;
}

// Runs one iteration the way the Scheduler does.
void RunIteration(SessionTable& table, const CloudModel& model, std::vector<WorkItem>* items) {
  const double seconds = RunBatch(model, items);
  std::vector<Delivery> deliveries;
  table.Complete(items, seconds, &deliveries);
  items->clear();
  Deliver(&deliveries);
}

TEST(FairScheduling, ABacklogDoesNotDelayAnotherSessionsContinue) {
  at::InferenceMode inference;
  auto sm = MakeSplitModel();
  const int64_t dim = sm.cloud->hidden_size();
  SessionTable table(sm.cloud, {});  // the defaults: 256 rows a batch, 64 a session
  // 30 flooders queue 127 rows and a Continue each, before the healthy session.
  std::vector<Outcome> flood(30);
  for (int i = 0; i < 30; ++i) Flood(table, Id("flood", i), "flooder", 127, dim, &flood[i]);
  const std::vector<int32_t> prompt = Prompt(1, 4);
  at::Tensor rows = EdgeRows(*sm.full, sm.split, prompt);
  std::vector<Delivery> none;
  Outcome healthy;
  ASSERT_TRUE(table.Open("healthy", "edge", {}).ok());
  ASSERT_TRUE(table.Enqueue("healthy", "edge", 0, Rows(0, rows.narrow(0, 0, 3)), &none).ok());
  ASSERT_TRUE(table.Enqueue("healthy", "edge", 0, Continue(3, rows[3], &healthy), &none).ok());

  // The first iteration answers it, whatever the flooders queued before.
  std::vector<WorkItem> items;
  ASSERT_TRUE(table.WaitForWork(&items));
  const WorkItem* mine = Find(items, "healthy");
  ASSERT_NE(mine, nullptr) << "the healthy session waits behind the flood";
  EXPECT_EQ(mine->rows, 4);
  EXPECT_LE(TotalRows(items), 256);
  for (const WorkItem& item : items) {
    if (item.session->id != "healthy") {
      EXPECT_LE(item.rows, 128) << item.session->id;
    }
  }
  RunIteration(table, *sm.cloud, &items);
  auto r = healthy.get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token, FullGreedy(*sm.full, prompt, 1)[0]);

  // The flood is served too, and split rows give the same tokens: drain it.
  while (table.stats().queued_rows > 0) {
    ASSERT_TRUE(table.WaitForWork(&items));
    EXPECT_LE(TotalRows(items), 256);
    RunIteration(table, *sm.cloud, &items);
  }
  for (Outcome& o : flood) EXPECT_TRUE(o.get().ok()) << o.get().status();
  EXPECT_EQ(table.stats().rows_run, 30 * 128 + 4);
}

TEST(FairScheduling, SplitSessionsGetTheSameTokensAsWhole) {
  at::InferenceMode inference;
  auto sm = MakeSplitModel();
  ContextLimits limits;
  limits.max_batch_rows = 8;
  limits.max_session_batch_rows = 3;
  SessionTable table(sm.cloud, limits);
  const std::vector<int32_t> prompt = Prompt(4, 20);
  at::Tensor rows = EdgeRows(*sm.full, sm.split, prompt);
  std::vector<Delivery> none;
  Outcome outcome;
  ASSERT_TRUE(table.Open("s", "o", {}).ok());
  ASSERT_TRUE(table.Enqueue("s", "o", 0, Rows(0, rows.narrow(0, 0, 19)), &none).ok());
  ASSERT_TRUE(table.Enqueue("s", "o", 0, Continue(19, rows[19], &outcome), &none).ok());
  std::vector<WorkItem> items;
  int iterations = 0;
  while (table.stats().queued_rows > 0) {
    ASSERT_TRUE(table.WaitForWork(&items));
    // Alone, the session gets the whole batch (work-conserving), not 3 rows.
    EXPECT_EQ(TotalRows(items), std::min<int64_t>(8, 20 - 8 * iterations));
    RunIteration(table, *sm.cloud, &items);
    ++iterations;
  }
  EXPECT_EQ(iterations, 3);
  auto r = outcome.get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token, FullGreedy(*sm.full, prompt, 1)[0]);
  EXPECT_EQ(r->rows_run, 4);  // the rows of its own iteration
}

TEST(FairScheduling, IdentitiesTakeTurnsAheadOfOneIdentitysManySessions) {
  at::InferenceMode inference;
  auto sm = MakeSplitModel();
  const int64_t dim = sm.cloud->hidden_size();
  ContextLimits limits;
  limits.max_batch_rows = 16;
  limits.max_session_batch_rows = 4;
  SessionTable table(sm.cloud, limits);
  // One identity has 40 sessions each asking a 2-row Continue (80 rows > 16).
  std::vector<Outcome> many(40);
  for (int i = 0; i < 40; ++i) Flood(table, Id("many", i), "greedy", 1, dim, &many[i]);
  Outcome other;
  Flood(table, "other-session", "modest", 1, dim, &other);
  std::vector<WorkItem> items;
  ASSERT_TRUE(table.WaitForWork(&items));
  ASSERT_NE(Find(items, "other-session"), nullptr)
      << "the other identity waits behind 40 sessions of one identity";
  EXPECT_LE(TotalRows(items), 16);
  RunIteration(table, *sm.cloud, &items);
  EXPECT_TRUE(other.get().ok());
  while (table.stats().queued_rows > 0) {
    ASSERT_TRUE(table.WaitForWork(&items));
    RunIteration(table, *sm.cloud, &items);
  }
  for (Outcome& o : many) EXPECT_TRUE(o.get().ok());
}

TEST(FairScheduling, ZeroShareKeepsFirstComeFirstServed) {
  // max_session_batch_rows = 0 is the previous policy (kept to measure
  // against): the first session's whole queue, and the healthy one waits.
  at::InferenceMode inference;
  auto sm = MakeSplitModel();
  const int64_t dim = sm.cloud->hidden_size();
  ContextLimits limits;
  limits.max_session_batch_rows = 0;
  SessionTable table(sm.cloud, limits);
  std::vector<Outcome> flood(4);
  for (int i = 0; i < 4; ++i) Flood(table, Id("flood", i), "flooder", 127, dim, &flood[i]);
  Outcome healthy;
  Flood(table, "healthy", "edge", 3, dim, &healthy);
  std::vector<WorkItem> items;
  ASSERT_TRUE(table.WaitForWork(&items));
  EXPECT_EQ(Find(items, "healthy"), nullptr);
  ASSERT_FALSE(items.empty());
  EXPECT_EQ(items[0].rows, 128);
  RunIteration(table, *sm.cloud, &items);
  while (table.stats().queued_rows > 0) {
    ASSERT_TRUE(table.WaitForWork(&items));
    RunIteration(table, *sm.cloud, &items);
  }
  EXPECT_TRUE(healthy.get().ok());
}

}  // namespace
}  // namespace tandem::cloud
