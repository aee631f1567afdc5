// Issue 14, items 5 and 7 in the cloud: the session's vocab_limit masks head
// rows out of the cloud's sampling (and is validated), and a non-finite logit
// fails that request instead of producing a token.
#include <cmath>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "cloud_fixture.h"
#include "tandem/cloud/context_manager.h"

namespace tandem::cloud {
namespace {

using testing::ContinueSync;
using testing::EdgeRows;
using testing::FullLogits;
using testing::MakeSplitModel;
using testing::Prompt;

TEST(CloudSamplingRules, VocabLimitAboveTheModelIsRefused) {
  testing::SplitModel sm = MakeSplitModel();
  ContextManager cm(sm.cloud, {});
  SessionOptions options;
  options.sampling.vocab_limit = static_cast<int32_t>(sm.full->config().vocab_size) + 1;
  auto opened = cm.Open("a", "alice", options);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(opened.status().message().find("vocab_limit"), std::string::npos) << opened.status();
}

TEST(CloudSamplingRules, TokensStayBelowTheVocabLimit) {
  testing::SplitModel sm = MakeSplitModel();
  ContextManager cm(sm.cloud, {});
  constexpr int32_t kLimit = 10;
  SessionOptions options;
  options.sampling.vocab_limit = kLimit;
  ASSERT_TRUE(cm.Open("a", "alice", options).ok());
  std::vector<int32_t> ids = Prompt(3, 6);
  at::Tensor rows = EdgeRows(*sm.full, sm.split, ids);
  ASSERT_TRUE(cm.AddContext("a", "alice", 0, rows.narrow(0, 0, 5)).ok());
  auto r = ContinueSync(cm, "a", "alice", 5, rows[5]);
  ASSERT_TRUE(r.ok()) << r.status();
  at::Tensor full = FullLogits(*sm.full, ids)[5];
  EXPECT_EQ(r->token, full.narrow(0, 0, kLimit).argmax().item<int64_t>());
  EXPECT_NE(full.argmax().item<int64_t>(), r->token) << "pick a prompt whose argmax is masked";
}

TEST(CloudSamplingRules, NanLogitFailsTheRequest) {
  auto model = Model::CreateRandom(tandem::testing::TinyBiasConfig(), {}, 7);
  ASSERT_TRUE(model.ok());
  {
    at::NoGradGuard no_grad;
    for (auto& [name, t] : (*model)->NamedParameters()) {
      if (name == "lm_head.weight") t[60].fill_(NAN);
    }
  }
  auto full = std::shared_ptr<const Model>(std::move(*model));
  auto cloud = CloudModel::FromModel(full, 2);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  ContextManager cm(std::shared_ptr<const CloudModel>(std::move(*cloud)), {});
  for (float temperature : {0.0f, 1.0f}) {
    SessionOptions options;
    options.sampling.temperature = temperature;
    const std::string id = temperature == 0.0f ? "greedy" : "sampled";
    ASSERT_TRUE(cm.Open(id, "alice", options).ok());
    at::Tensor rows = EdgeRows(*full, 2, Prompt(1, 4));
    ASSERT_TRUE(cm.AddContext(id, "alice", 0, rows.narrow(0, 0, 3)).ok());
    auto r = ContinueSync(cm, id, "alice", 3, rows[3]);
    ASSERT_FALSE(r.ok()) << "temperature " << temperature << " produced token " << r->token;
    EXPECT_NE(r.status().message().find("NaN"), std::string::npos) << r.status();
  }
}

}  // namespace
}  // namespace tandem::cloud
