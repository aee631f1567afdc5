// ContextManager: what Continue returns equals the full model; token-id resync;
// truncation; stats.
#include "tandem/cloud/context_manager.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "cloud_fixture.h"

namespace tandem::cloud {
namespace {

using testing::ContinueSync;
using testing::EdgeRows;
using testing::FullGreedy;
using testing::FullLogits;
using testing::MakeSplitModel;
using testing::Prompt;
using testing::ServeGreedy;
using testing::WaitFor;

SessionOptions WithLogits() {
  SessionOptions o;
  o.return_logits = true;
  return o;
}

TEST(ContextManager, ContinueEqualsTheFullModel) {
  auto sm = MakeSplitModel(/*split=*/2);
  ContextManager cm(sm.cloud, {});
  ASSERT_TRUE(cm.Open("s", "alice", WithLogits()).ok());
  const std::vector<int32_t> prompt = {1, 5, 9, 33, 2, 17, 80};
  const int steps = 8;
  std::vector<at::Tensor> logits;
  std::vector<int32_t> tokens = ServeGreedy(cm, sm, "s", "alice", prompt, steps, &logits);
  ASSERT_EQ(tokens.size(), static_cast<size_t>(steps));
  EXPECT_EQ(tokens, FullGreedy(*sm.full, prompt, steps));

  std::vector<int32_t> all = prompt;
  all.insert(all.end(), tokens.begin(), tokens.end());
  at::Tensor reference = FullLogits(*sm.full, all);
  for (int i = 0; i < steps; ++i) {
    const int64_t p = static_cast<int64_t>(prompt.size()) - 1 + i;
    ASSERT_TRUE(logits[i].defined());
    EXPECT_LT((logits[i] - reference[p]).abs().max().item<float>(), 1e-4) << "position " << p;
  }
  auto held = cm.Held("s", "alice");
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(*held, static_cast<int64_t>(prompt.size()) + steps - 1);
}

TEST(ContextManager, EverySplitMatchesTheFullModel) {
  for (int64_t split : {1, 3}) {
    auto sm = MakeSplitModel(split, /*seed=*/21);
    ContextManager cm(sm.cloud, {});
    ASSERT_TRUE(cm.Open("s", "o", {}).ok());
    const std::vector<int32_t> prompt = Prompt(3, 9);
    EXPECT_EQ(ServeGreedy(cm, sm, "s", "o", prompt, 5), FullGreedy(*sm.full, prompt, 5))
        << "split " << split;
  }
}

TEST(ContextManager, ResultReportsRowsRunAndProbability) {
  auto sm = MakeSplitModel();
  ContextManager cm(sm.cloud, {});
  ASSERT_TRUE(cm.Open("s", "o", WithLogits()).ok());
  at::Tensor rows = EdgeRows(*sm.full, sm.split, Prompt(1, 6));
  ASSERT_TRUE(cm.AddContext("s", "o", 0, rows.narrow(0, 0, 5)).ok());
  auto r = ContinueSync(cm, "s", "o", 5, rows[5].unsqueeze(0));  // [1, D] works too
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->position, 5);
  EXPECT_EQ(r->rows_run, 6);
  EXPECT_GT(r->compute_seconds, 0.0);
  at::Tensor probs = at::softmax(r->logits, -1);
  EXPECT_NEAR(r->probability, probs[r->token].item<float>(), 1e-5);
  EXPECT_EQ(r->token, probs.argmax().item<int64_t>());
}

TEST(ContextManager, SeededSamplingIsReproducible) {
  auto sm = MakeSplitModel();
  SessionOptions options;
  options.sampling.temperature = 1.5f;
  options.sampling.top_k = 20;
  options.sampling.seed = 42;
  std::vector<std::vector<int32_t>> runs;
  for (int run = 0; run < 2; ++run) {
    ContextManager cm(sm.cloud, {});
    ASSERT_TRUE(cm.Open("s", "o", options).ok());
    runs.push_back(ServeGreedy(cm, sm, "s", "o", Prompt(2, 5), 6));
  }
  EXPECT_EQ(runs[0], runs[1]);
}

TEST(ContextManager, TokenResyncEqualsTheHiddenStatePath) {
  auto sm = MakeSplitModel();
  const std::vector<int32_t> prompt = Prompt(5, 10);
  at::Tensor rows = EdgeRows(*sm.full, sm.split, prompt);
  const int64_t last = static_cast<int64_t>(prompt.size()) - 1;
  ContextManager cm(sm.cloud, {});

  ASSERT_TRUE(cm.Open("hidden", "o", WithLogits()).ok());
  ASSERT_TRUE(cm.AddContext("hidden", "o", 0, rows.narrow(0, 0, last)).ok());
  auto by_hidden = ContinueSync(cm, "hidden", "o", last, rows[last]);
  ASSERT_TRUE(by_hidden.ok()) << by_hidden.status();

  ASSERT_TRUE(cm.Open("tokens", "o", WithLogits()).ok());
  // Two AddTokens calls: the [0, S) cache carries over between them.
  std::vector<int32_t> head(prompt.begin(), prompt.begin() + 4);
  std::vector<int32_t> tail(prompt.begin() + 4, prompt.begin() + last);
  ASSERT_TRUE(cm.AddTokens("tokens", "o", 0, head).ok());
  ASSERT_TRUE(cm.AddTokens("tokens", "o", 4, tail).ok());
  const int64_t with_prefix = cm.stats().memory_bytes;
  auto by_tokens = ContinueSync(cm, "tokens", "o", last, rows[last]);
  ASSERT_TRUE(by_tokens.ok()) << by_tokens.status();
  EXPECT_EQ(by_tokens->token, by_hidden->token);
  EXPECT_LT((by_tokens->logits - by_hidden->logits).abs().max().item<float>(), 1e-4);
  // The hidden-state Continue released the [0, S) cache.
  EXPECT_LT(cm.stats().memory_bytes, with_prefix);

  // Hidden context now: token ids would leave a hole in [0, S).
  EXPECT_EQ(cm.AddTokens("tokens", "o", last + 1, {4}).code(),
            absl::StatusCode::kFailedPrecondition);
  // From position 0 they are fine again, and rebuild the same session.
  ASSERT_TRUE(cm.Truncate("tokens", "o", 0).ok());
  std::vector<int32_t> all(prompt.begin(), prompt.begin() + last);
  ASSERT_TRUE(cm.AddTokens("tokens", "o", 0, all).ok());
  auto again = ContinueSync(cm, "tokens", "o", last, rows[last]);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->token, by_hidden->token);
}

TEST(ContextManager, TokenIdsNeedTheFirstLayers) {
  tandem::testing::TempDir dir;
  testing::SplitModel sm;
  sm.full = tandem::testing::WriteRandomModel(tandem::testing::TinyGqaConfig(), dir.path(), 7);
  ModelOptions partial;
  partial.layer_begin = 2;
  partial.load_embedding = false;
  auto model = Model::Load(dir.path().string(), partial);
  ASSERT_TRUE(model.ok()) << model.status();
  auto cloud = CloudModel::FromModel(std::shared_ptr<const Model>(std::move(*model)), 2);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  sm.cloud = std::shared_ptr<const CloudModel>(std::move(*cloud));
  ContextManager cm(sm.cloud, {});
  ASSERT_TRUE(cm.Open("s", "o", {}).ok());
  EXPECT_EQ(cm.AddTokens("s", "o", 0, {1, 2}).code(), absl::StatusCode::kFailedPrecondition);
  // Hidden states work, and the cloud's half alone gives the full model's tokens.
  EXPECT_EQ(ServeGreedy(cm, sm, "s", "o", Prompt(0, 6), 4), FullGreedy(*sm.full, Prompt(0, 6), 4));
}

TEST(ContextManager, TruncateThenResendGivesTheSameResults) {
  auto sm = MakeSplitModel();
  ContextManager cm(sm.cloud, {});
  ASSERT_TRUE(cm.Open("s", "o", WithLogits()).ok());
  const std::vector<int32_t> prompt = Prompt(4, 8);
  std::vector<at::Tensor> first_logits;
  std::vector<int32_t> first = ServeGreedy(cm, sm, "s", "o", prompt, 4, &first_logits);
  ASSERT_EQ(first.size(), 4u);

  // Back to the end of the prompt's context and serve again.
  auto held = cm.Truncate("s", "o", 7);
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(*held, 7);
  std::vector<int32_t> ids = prompt;
  for (int i = 0; i < 4; ++i) {
    const int64_t p = static_cast<int64_t>(ids.size()) - 1;
    auto r = ContinueSync(cm, "s", "o", p, EdgeRows(*sm.full, sm.split, ids)[p]);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->token, first[i]);
    EXPECT_LT((r->logits - first_logits[i]).abs().max().item<float>(), 1e-5);
    ids.push_back(r->token);
  }

  // Truncating queued rows that never ran: the session takes the re-sent ones.
  ASSERT_TRUE(cm.Truncate("s", "o", 0).ok());
  at::Tensor rows = EdgeRows(*sm.full, sm.split, prompt);
  ASSERT_TRUE(cm.AddContext("s", "o", 0, at::randn({6, sm.cloud->hidden_size()})).ok());
  held = cm.Truncate("s", "o", 2);
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(*held, 2);
  EXPECT_EQ(cm.stats().queued_rows, 2);
  ASSERT_TRUE(cm.Truncate("s", "o", 0).ok());
  ASSERT_TRUE(cm.AddContext("s", "o", 0, rows.narrow(0, 0, 7)).ok());
  auto r = ContinueSync(cm, "s", "o", 7, rows[7]);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->token, first[0]);
  // Truncating past the end changes nothing.
  held = cm.Truncate("s", "o", 100);
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(*held, 8);
}

TEST(ContextManager, OpenResumesForTheSameOwner) {
  auto sm = MakeSplitModel();
  ContextManager cm(sm.cloud, {});
  auto opened = cm.Open("s", "o", {});
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(*opened, 0);
  ASSERT_TRUE(cm.AddContext("s", "o", 0, EdgeRows(*sm.full, 2, Prompt(0, 5))).ok());
  auto resumed = cm.Open("s", "o", {});
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(*resumed, 5);
  EXPECT_EQ(cm.stats().opened, 1);
}

TEST(ContextManager, StatsCountWhatHappened) {
  auto sm = MakeSplitModel();
  ContextManager cm(sm.cloud, {});
  const std::vector<int32_t> prompt = Prompt(6, 5);
  ASSERT_TRUE(cm.Open("a", "o", {}).ok());
  ASSERT_TRUE(cm.Open("b", "o", {}).ok());
  ContextStats s = cm.stats();
  EXPECT_EQ(s.sessions, 2);
  EXPECT_EQ(s.opened, 2);
  const int64_t kv = s.memory_bytes / 2;
  // TinyGqa: layers [2, 4) x (k, v) x 2 kv heads x 128 positions x 8 dims x 4 bytes.
  EXPECT_EQ(kv, 2 * 2 * 2 * 128 * 8 * 4);

  at::Tensor rows = EdgeRows(*sm.full, 2, prompt);
  ASSERT_TRUE(cm.AddContext("a", "o", 0, rows.narrow(0, 0, 4)).ok());
  s = cm.stats();
  EXPECT_EQ(s.rows_received, 4);
  EXPECT_EQ(s.queued_rows, 4);
  EXPECT_EQ(s.memory_bytes, 2 * kv + 4 * 32 * 4);
  ASSERT_TRUE(ContinueSync(cm, "a", "o", 4, rows[4]).ok());
  ASSERT_TRUE(cm.Drain(absl::Now() + absl::Seconds(10)));
  s = cm.stats();
  EXPECT_EQ(s.queued_rows, 0);
  EXPECT_EQ(s.rows_run, 5);
  EXPECT_EQ(s.tokens_served, 1);
  EXPECT_EQ(s.batches, 1);
  EXPECT_EQ(s.memory_bytes, 2 * kv);
  EXPECT_GT(s.compute_seconds, 0.0);
  ASSERT_TRUE(cm.Close("b", "o").ok());
  s = cm.stats();
  EXPECT_EQ(s.sessions, 1);
  EXPECT_EQ(s.closed, 1);
  EXPECT_EQ(s.memory_bytes, kv);
  EXPECT_EQ(s.evicted + s.expired + s.failed, 0);
}

}  // namespace
}  // namespace tandem::cloud
