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

// Issue 14, item 5: one NaN logit (not at id 0) with temperature 1 used to
// make every draw return the last id; greedy skipped the NaN silently.
TEST(Sampler, NanLogitIsAnErrorInEveryMode) {
  at::Tensor logits = Logits();
  logits[2] = NAN;
  for (float temperature : {0.0f, 1.0f}) {
    for (int32_t top_k : {0, 2}) {
      SamplingParams p;
      p.temperature = temperature;
      p.top_k = top_k;
      absl::StatusOr<int32_t> id = Sampler(p).Sample(logits);
      ASSERT_FALSE(id.ok()) << "temperature " << temperature << " chose " << *id;
      EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(id.status().message().find("id 2 is NaN"), std::string::npos) << id.status();
    }
  }
}

TEST(Sampler, PositiveInfinityIsAnError) {
  at::Tensor logits = Logits();
  logits[3] = INFINITY;
  for (float temperature : {0.0f, 0.7f}) {
    SamplingParams p;
    p.temperature = temperature;
    absl::StatusOr<int32_t> id = Sampler(p).Sample(logits);
    ASSERT_FALSE(id.ok());
    EXPECT_NE(id.status().message().find("id 3 is +inf"), std::string::npos) << id.status();
  }
}

TEST(Sampler, NegativeInfinityMasksAnId) {
  at::Tensor logits = Logits();
  logits[1] = -INFINITY;  // the argmax, masked
  SamplingParams greedy;
  EXPECT_EQ(*Sampler(greedy).Sample(logits), 4);
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 5;
  Sampler s(p);
  for (int i = 0; i < 300; ++i) EXPECT_NE(*s.Sample(logits), 1);
  EXPECT_FALSE(Sampler(p).Sample(at::full({4}, -INFINITY)).ok());
}

// Issue 14, item 7: ids at or past vocab_limit (head rows the tokenizer
// cannot decode) are never chosen, and probabilities renormalise over the rest.
TEST(Sampler, VocabLimitMasksTheTail) {
  at::Tensor logits = at::tensor({0.0f, 1.0f, 0.5f, 9.0f, 8.0f});  // argmax 3
  SamplingParams greedy;
  greedy.vocab_limit = 3;
  float prob = 0;
  EXPECT_EQ(*Sampler(greedy).Sample(logits, &prob), 1);
  EXPECT_NEAR(prob, at::softmax(logits.narrow(0, 0, 3), 0)[1].item<float>(), 1e-6);
  SamplingParams p = greedy;
  p.temperature = 1.5f;
  Sampler s(p);
  for (int i = 0; i < 500; ++i) EXPECT_LT(*s.Sample(logits), 3);
  p.vocab_limit = -1;
  EXPECT_FALSE(Sampler(p).Sample(logits).ok());
}

}  // namespace
}  // namespace tandem
