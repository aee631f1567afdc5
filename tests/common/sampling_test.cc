#include "tandem/sampling.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>

namespace tandem {
namespace {

at::Tensor Logits() { return at::tensor({0.1f, 2.0f, -1.0f, 1.5f, 1.9f}); }

std::vector<int32_t> Draw(const SamplingParams& p, int n) {
  Sampler s(p);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(*s.Sample(Logits()));
  return out;
}

TEST(Sampler, GreedyPicksArgmaxWithItsProbability) {
  Sampler s(SamplingParams{});
  float prob = 0;
  auto id = s.Sample(Logits(), &prob);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, 1);
  EXPECT_NEAR(prob, at::softmax(Logits(), 0)[1].item<float>(), 1e-6);
}

TEST(Sampler, SameSeedSameTokensOtherSeedOtherTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 42;
  EXPECT_EQ(Draw(p, 200), Draw(p, 200));
  SamplingParams q = p;
  q.seed = 43;
  EXPECT_NE(Draw(p, 200), Draw(q, 200));
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  SamplingParams k1;
  k1.temperature = 2.0f;
  k1.top_k = 1;
  for (int32_t id : Draw(k1, 50)) EXPECT_EQ(id, 1);
  SamplingParams p;
  p.temperature = 2.0f;
  p.top_p = 0.01f;
  for (int32_t id : Draw(p, 50)) EXPECT_EQ(id, 1);
}

TEST(Sampler, TopKExcludesTheRest) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 3;  // ids 1, 4, 3
  for (int32_t id : Draw(p, 500)) EXPECT_TRUE(id == 1 || id == 4 || id == 3) << id;
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 7;
  const int n = 20000;
  std::map<int32_t, int> counts;
  for (int32_t id : Draw(p, n)) ++counts[id];
  at::Tensor probs = at::softmax(Logits(), 0);
  for (int i = 0; i < 5; ++i) {
    const double expected = probs[i].item<float>();
    // 5 standard deviations of a binomial proportion.
    const double sd = std::sqrt(expected * (1 - expected) / n);
    EXPECT_NEAR(counts[i] / static_cast<double>(n), expected, 5 * sd + 1e-4) << i;
  }
}

TEST(Sampler, InvalidParamsAndLogitsAreErrors) {
  SamplingParams p;
  p.temperature = -1.0f;
  EXPECT_FALSE(Sampler(p).Sample(Logits()).ok());
  p = {};
  p.top_p = 0.0f;
  EXPECT_FALSE(Sampler(p).Sample(Logits()).ok());
  p = {};
  p.top_k = -2;
  EXPECT_FALSE(Sampler(p).Sample(Logits()).ok());
  EXPECT_FALSE(Sampler({}).Sample(at::Tensor()).ok());
  EXPECT_FALSE(Sampler({}).Sample(at::full({3}, NAN)).ok());
}

}  // namespace
}  // namespace tandem
