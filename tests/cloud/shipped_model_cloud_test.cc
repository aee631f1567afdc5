// The cloud half of the shipped model (models/tandem-tiny, split from its
// exits.json) serves several sessions at once with the full model's tokens.
#include <string>
#include <thread>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "cloud_fixture.h"
#include "tandem/cloud/cloud_model.h"
#include "tandem/cloud/context_manager.h"

namespace tandem::cloud {
namespace {

const std::string kShipped = std::string(TANDEM_SOURCE_DIR) + "/models/tandem-tiny";

TEST(ShippedModelCloud, ConcurrentSessionsMatchTheFullModel) {
  CloudModelOptions options;
  options.model_dir = kShipped;
  auto cloud = CloudModel::Create(options);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  auto full = Model::Load(kShipped);
  ASSERT_TRUE(full.ok()) << full.status();
  testing::SplitModel sm;
  sm.full = std::shared_ptr<const Model>(std::move(*full));
  sm.cloud = std::shared_ptr<const CloudModel>(std::move(*cloud));
  sm.split = sm.cloud->split();

  ContextManager cm(sm.cloud, {});
  constexpr int kSessions = 4, kSteps = 5;
  std::vector<std::vector<int32_t>> prompts, tokens(kSessions);
  for (int i = 0; i < kSessions; ++i) {
    std::vector<int32_t> p;
    for (int k = 0; k < 6 + 3 * i; ++k) p.push_back((977 * i + 131 * k + 17) % 8000);
    prompts.push_back(p);
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < kSessions; ++i) {
    threads.emplace_back([&, i] {
      const std::string id = "shipped-" + std::to_string(i);
      EXPECT_TRUE(cm.Open(id, "o", {}).ok());
      tokens[i] = testing::ServeGreedy(cm, sm, id, "o", prompts[i], kSteps);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kSessions; ++i) {
    EXPECT_EQ(tokens[i], testing::FullGreedy(*sm.full, prompts[i], kSteps)) << "session " << i;
  }
  EXPECT_EQ(cm.stats().tokens_served, kSessions * kSteps);
}

TEST(ShippedModelCloud, TokenResyncMatchesHiddenStates) {
  CloudModelOptions options;
  options.model_dir = kShipped;
  auto cloud = CloudModel::Create(options);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  auto full = Model::Load(kShipped);
  ASSERT_TRUE(full.ok()) << full.status();
  const int64_t split = (*cloud)->split();
  ContextManager cm(std::shared_ptr<const CloudModel>(std::move(*cloud)), {});
  std::vector<int32_t> prompt = {8189, 400, 51, 7000, 12, 912, 33, 2048};
  at::Tensor rows = testing::EdgeRows(**full, split, prompt);
  ASSERT_TRUE(cm.Open("h", "o", {}).ok());
  ASSERT_TRUE(cm.Open("t", "o", {}).ok());
  ASSERT_TRUE(cm.AddContext("h", "o", 0, rows.narrow(0, 0, 7)).ok());
  ASSERT_TRUE(cm.AddTokens("t", "o", 0, std::vector<int32_t>(prompt.begin(), prompt.end() - 1)).ok());
  auto h = testing::ContinueSync(cm, "h", "o", 7, rows[7]);
  auto t = testing::ContinueSync(cm, "t", "o", 7, rows[7]);
  ASSERT_TRUE(h.ok() && t.ok());
  EXPECT_EQ(h->token, t->token);
  EXPECT_EQ(h->token, testing::FullGreedy(**full, prompt, 1)[0]);
}

}  // namespace
}  // namespace tandem::cloud
