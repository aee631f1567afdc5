// Sampler::Distribution, SampleFrom, Uniform and set_params: the pieces the
// speculative verifier and the edge's drafts are built from.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "tandem/sampling.h"

namespace tandem {
namespace {

at::Tensor Logits() { return at::tensor({0.1f, 2.0f, -1.0f, 1.5f, 1.9f, 1.5f}); }

SamplingParams Params(float temperature, int32_t top_k, float top_p, uint64_t seed = 0) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.seed = seed;
  return p;
}

TEST(SamplerDistribution, GreedyIsTheArgmaxAlone) {
  auto d = Sampler(SamplingParams{}).Distribution(Logits());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->ids, std::vector<int32_t>{1});
  EXPECT_EQ(d->probs, std::vector<float>{1.0f});
}

TEST(SamplerDistribution, IsTheTemperatureSoftmaxSortedWithTiesByLowerId) {
  auto d = Sampler(Params(0.7f, 0, 1.0f)).Distribution(Logits());
  ASSERT_TRUE(d.ok()) << d.status();
  at::Tensor expected = at::softmax(Logits() / 0.7f, 0);
  // Ids 3 and 5 tie: 3 comes first.
  EXPECT_EQ(d->ids, (std::vector<int32_t>{1, 4, 3, 5, 0, 2}));
  double sum = 0;
  for (size_t i = 0; i < d->ids.size(); ++i) {
    EXPECT_NEAR(d->probs[i], expected[d->ids[i]].item<float>(), 1e-6) << d->ids[i];
    sum += d->probs[i];
  }
  EXPECT_NEAR(sum, 1.0, 1e-6);
}

TEST(SamplerDistribution, TopKAndTopPRestrictAndRenormalize) {
  // top_k = 4 keeps {1, 4, 3, 5}; top_p then keeps the smallest prefix whose
  // unrestricted mass reaches 0.5: ids 1 and 4 (0.30 + 0.27).
  auto d = Sampler(Params(1.0f, 4, 0.5f)).Distribution(Logits());
  ASSERT_TRUE(d.ok()) << d.status();
  at::Tensor full = at::softmax(Logits(), 0);
  std::vector<int32_t> want;
  double cum = 0;
  for (int32_t id : {1, 4, 3, 5}) {
    want.push_back(id);
    cum += full[id].item<float>();
    if (cum >= 0.5) break;
  }
  ASSERT_EQ(d->ids, (std::vector<int32_t>{1, 4}));
  ASSERT_EQ(d->ids, want);
  double kept = 0;
  for (int32_t id : want) kept += full[id].item<float>();
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(d->probs[i], full[want[i]].item<float>() / kept, 1e-6);
  }
}

TEST(SamplerDistribution, UnderflowedIdsAreLeftOut) {
  auto d = Sampler(Params(1.0f, 0, 1.0f)).Distribution(at::tensor({0.0f, -500.0f, 1.0f}));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->ids, (std::vector<int32_t>{2, 0}));
}

// Sample() and SampleFrom(Distribution()) draw from the same law.
TEST(SamplerDistribution, SampleAndSampleFromFollowIt) {
  const SamplingParams params = Params(1.3f, 5, 0.95f, 11);
  auto d = Sampler(params).Distribution(Logits());
  ASSERT_TRUE(d.ok()) << d.status();
  const int n = 20000;
  Sampler by_sample(params);
  Sampler by_sample_from(params);
  std::map<int32_t, int> sampled, sampled_from;
  for (int i = 0; i < n; ++i) {
    ++sampled[*by_sample.Sample(Logits())];
    ++sampled_from[by_sample_from.SampleFrom(*d)];
  }
  std::map<int32_t, double> prob;
  for (size_t i = 0; i < d->ids.size(); ++i) prob[d->ids[i]] = d->probs[i];
  for (int32_t id = 0; id < 6; ++id) {
    const double expected = prob.count(id) ? prob[id] : 0.0;
    // 5 standard deviations of a binomial proportion.
    const double tol = 5 * std::sqrt(expected * (1 - expected) / n) + 1e-4;
    EXPECT_NEAR(sampled[id] / static_cast<double>(n), expected, tol) << id;
    EXPECT_NEAR(sampled_from[id] / static_cast<double>(n), expected, tol) << id;
  }
  // Excluded ids (top-k) are never drawn.
  EXPECT_EQ(prob.count(2), 0u);
  EXPECT_EQ(sampled[2], 0);
  EXPECT_EQ(sampled_from[2], 0);
}

TEST(SamplerDistribution, DoesNotAdvanceTheGenerator) {
  const SamplingParams params = Params(1.0f, 0, 1.0f, 5);
  Sampler a(params), b(params);
  ASSERT_TRUE(a.Distribution(Logits()).ok());
  for (int i = 0; i < 20; ++i) EXPECT_EQ(*a.Sample(Logits()), *b.Sample(Logits()));
}

TEST(SamplerDistribution, SetParamsKeepsTheGeneratorState) {
  Sampler a(Params(1.0f, 0, 1.0f, 3));
  Sampler b(Params(1.0f, 0, 1.0f, 3));
  const double a0 = a.Uniform();
  EXPECT_EQ(b.Uniform(), a0);
  b.set_params(Params(0.5f, 2, 1.0f, 999));  // another seed: not applied
  EXPECT_EQ(b.params().top_k, 2);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.Uniform(), b.Uniform());
  for (int i = 0; i < 10; ++i) {
    const double u = a.Uniform();
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
  }
}

TEST(SamplerDistribution, ErrorsAsSample) {
  EXPECT_FALSE(Sampler(Params(1.0f, 0, 1.0f)).Distribution(at::Tensor()).ok());
  EXPECT_FALSE(Sampler(Params(1.0f, 0, 1.0f)).Distribution(at::full({3}, NAN)).ok());
  EXPECT_FALSE(Sampler(Params(-1.0f, 0, 1.0f)).Distribution(Logits()).ok());
}

TEST(SamplerDistribution, SampleFromAnEmptyDistributionIsMinusOne) {
  Sampler s(Params(1.0f, 0, 1.0f));
  EXPECT_EQ(s.SampleFrom(TokenDistribution{}), -1);
}

}  // namespace
}  // namespace tandem
