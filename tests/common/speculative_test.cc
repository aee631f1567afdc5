#include "tandem/speculative.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <vector>

namespace tandem {
namespace {

SamplingParams Sampling(float temperature, int32_t top_k = 0, uint64_t seed = 0) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.seed = seed;
  return p;
}

TEST(TruncateDistribution, KeepsTheTopKRenormalized) {
  TokenDistribution d{{4, 1, 7, 2}, {0.4f, 0.3f, 0.2f, 0.1f}};
  TokenDistribution t = TruncateDistribution(d, 2);
  EXPECT_EQ(t.ids, (std::vector<int32_t>{4, 1}));
  ASSERT_EQ(t.probs.size(), 2u);
  EXPECT_NEAR(t.probs[0], 0.4 / 0.7, 1e-6);
  EXPECT_NEAR(t.probs[1], 0.3 / 0.7, 1e-6);
  EXPECT_EQ(TruncateDistribution(d, 10).ids, d.ids);
  EXPECT_EQ(TruncateDistribution(d, 0).ids, std::vector<int32_t>{4});
  EXPECT_TRUE(TruncateDistribution(TokenDistribution{}, 3).ids.empty());
}

TEST(VerifyDraft, GreedyDraftEqualToTheArgmaxIsAccepted) {
  Sampler cloud(Sampling(0.0f));
  auto p = cloud.Distribution(at::tensor({0.5f, 3.0f, 1.0f}));
  ASSERT_TRUE(p.ok());
  auto v = VerifyDraft(*p, TokenDistribution{}, 1, &cloud);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->accepted);
  EXPECT_EQ(v->token, 1);
  EXPECT_EQ(v->probability, 1.0f);
}

TEST(VerifyDraft, GreedyDraftOtherThanTheArgmaxIsReplacedByIt) {
  Sampler cloud(Sampling(0.0f));
  auto p = cloud.Distribution(at::tensor({0.5f, 3.0f, 1.0f}));
  ASSERT_TRUE(p.ok());
  for (int32_t draft : {0, 2, 1000}) {  // 1000: outside the vocabulary, p = 0
    auto v = VerifyDraft(*p, TokenDistribution{}, draft, &cloud);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_FALSE(v->accepted);
    EXPECT_EQ(v->token, 1);
  }
  // A full draft distribution under a greedy cloud: same answer.
  auto v = VerifyDraft(*p, TokenDistribution{{2, 1}, {0.9f, 0.1f}}, 2, &cloud);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_FALSE(v->accepted);
  EXPECT_EQ(v->token, 1);
}

TEST(VerifyDraft, ADraftAtLeastAsLikelyUnderPIsAlwaysAccepted) {
  Sampler cloud(Sampling(1.0f, 0, 9));
  TokenDistribution p{{0, 1, 2}, {0.5f, 0.3f, 0.2f}};
  TokenDistribution q{{1, 0}, {0.6f, 0.4f}};  // q(0) = 0.4 <= p(0) = 0.5
  for (int i = 0; i < 200; ++i) {
    auto v = VerifyDraft(p, q, 0, &cloud);
    ASSERT_TRUE(v.ok());
    EXPECT_TRUE(v->accepted);
    EXPECT_EQ(v->token, 0);
    EXPECT_FLOAT_EQ(v->probability, 0.5f);
  }
}

TEST(VerifyDraft, MalformedDraftsAreInvalidArgument) {
  Sampler cloud(Sampling(1.0f));
  TokenDistribution p{{0, 1, 2}, {0.5f, 0.3f, 0.2f}};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    TokenDistribution q;
    int32_t x;
  };
  const std::vector<Case> cases = {
      {{{1, 2}, {0.5f, 0.5f}}, 0},        // x not among q's ids
      {{{1, 1}, {0.5f, 0.5f}}, 1},        // repeated id
      {{{-1, 1}, {0.5f, 0.5f}}, 1},       // negative id
      {{{0, 1}, {nan, 0.5f}}, 1},         // NaN
      {{{0, 1}, {inf, 0.5f}}, 1},         // inf
      {{{0, 1}, {0.0f, 1.0f}}, 1},        // zero probability
      {{{0, 1}, {-0.5f, 1.5f}}, 1},       // negative probability
      {{{0, 1}, {0.25f, 0.25f}}, 1},      // sums to 0.5
      {{{0, 1}, {0.5f}}, 1},              // lengths differ
      {{{}, {}}, -3},                     // negative greedy draft
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    auto v = VerifyDraft(p, cases[i].q, cases[i].x, &cloud);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << "case " << i;
  }
  EXPECT_EQ(VerifyDraft(TokenDistribution{}, TokenDistribution{}, 0, &cloud).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ValidateDraft, AcceptsGreedyAndWellFormedDrafts) {
  EXPECT_TRUE(ValidateDraft(TokenDistribution{}, 5, 10).ok());
  EXPECT_TRUE(ValidateDraft(TokenDistribution{{5, 2}, {0.7f, 0.3f}}, 2, 10).ok());
  EXPECT_TRUE(ValidateDraft(TokenDistribution{{5, 2}, {0.7f, 0.3004f}}, 2, 10).ok());  // 1e-3
}

TEST(ValidateDraft, RefusesOutOfVocabularyOversizedAndMalformedDrafts) {
  auto code = [](const TokenDistribution& q, int32_t x) {
    return ValidateDraft(q, x, /*vocab_size=*/10, /*max_entries=*/4).code();
  };
  const auto bad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(code({}, 10), bad);                                   // x outside the vocabulary
  EXPECT_EQ(code({}, -1), bad);
  EXPECT_EQ(code({{10, 2}, {0.5f, 0.5f}}, 2), bad);               // an id outside it
  EXPECT_EQ(code({{0, 1, 2, 3, 4}, {0.2f, 0.2f, 0.2f, 0.2f, 0.2f}}, 0), bad);  // > 4 entries
  EXPECT_EQ(code({{0, 1}, {0.5f, 0.4f}}, 0), bad);                // sums to 0.9
  EXPECT_EQ(code({{0, 1}, {0.5f, 0.5f}}, 3), bad);                // x not listed
  EXPECT_EQ(code({{}, {1.0f}}, 3), bad);                          // probs without ids
  EXPECT_EQ(code({{3}, {}}, 3), bad);                             // ids without probs
  // A million entries: refused on its size before anything else is looked at.
  TokenDistribution huge;
  huge.ids.assign(1000000, 1);
  huge.probs.assign(1000000, 1e-6f);
  EXPECT_EQ(ValidateDraft(huge, 1, 10).code(), bad);
}

// ---------------------------------------------------------------------------
// The rule preserves p: over many seeded trials on a vocabulary of 6, a draft
// drawn from a q quite unlike p, then verified, yields tokens distributed as p.
// Checked with Pearson's chi-square test; the same test is run on two wrong
// rules (always accepting; resampling from p instead of the residual) to show
// it has the power to reject them.

using Rule = std::function<int32_t(const TokenDistribution& p, const TokenDistribution& q,
                                   int32_t x, Sampler* s)>;

double Prob(const TokenDistribution& d, int32_t id) {
  for (size_t i = 0; i < d.ids.size(); ++i) {
    if (d.ids[i] == id) return d.probs[i];
  }
  return 0.0;
}

// Pearson's statistic of the emitted tokens against p over ids [0, 6); +inf if
// a token p excludes is ever emitted.
double ChiSquareOfEmittedTokens(const Rule& rule, int trials) {
  Sampler cloud(Sampling(1.0f, /*top_k=*/5, /*seed=*/2024));
  // p: temperature 1, top-5 of 6 (id 5 has p = 0).
  auto p = cloud.Distribution(at::tensor({2.0f, 1.0f, 0.5f, 0.0f, -0.5f, -3.0f}));
  EXPECT_TRUE(p.ok());
  // q: favours the tokens p likes least, proposes id 5 (p = 0) most, and
  // never proposes ids 0 and 2 (reachable only through the residual).
  const TokenDistribution q{{5, 4, 3, 1}, {0.4f, 0.3f, 0.2f, 0.1f}};
  Sampler edge(Sampling(1.0f, 0, 77));
  std::vector<int> counts(6, 0);
  for (int t = 0; t < trials; ++t) {
    const int32_t x = edge.SampleFrom(q);
    ++counts.at(rule(*p, q, x, &cloud));
  }
  double chi2 = 0;
  for (int32_t id = 0; id < 6; ++id) {
    const double expected = trials * Prob(*p, id);
    if (expected == 0.0) {
      if (counts[id] > 0) return std::numeric_limits<double>::infinity();
      continue;
    }
    chi2 += (counts[id] - expected) * (counts[id] - expected) / expected;
  }
  return chi2;
}

constexpr int kTrials = 20000;
// 5 categories with p > 0: 4 degrees of freedom; the 1 - 1e-4 quantile of the
// chi-square law with 4 degrees of freedom is 23.51.
constexpr double kCritical = 23.51;

TEST(VerifyDraft, EmittedTokensFollowTheVerifiersDistribution) {
  int accepted = 0, rejected = 0;
  const double chi2 = ChiSquareOfEmittedTokens(
      [&](const TokenDistribution& p, const TokenDistribution& q, int32_t x, Sampler* s) {
        auto v = VerifyDraft(p, q, x, s);
        EXPECT_TRUE(v.ok()) << v.status();
        (v->accepted ? accepted : rejected)++;
        EXPECT_EQ(v->accepted, v->token == x);
        EXPECT_FLOAT_EQ(v->probability, Prob(p, v->token));
        return v->token;
      },
      kTrials);
  EXPECT_LT(chi2, kCritical);
  // Both branches of the rule ran a lot (acceptance is sum min(p, q) = 0.22).
  EXPECT_NEAR(accepted / static_cast<double>(kTrials), 0.22, 0.02);
  EXPECT_GT(rejected, kTrials / 2);
}

TEST(VerifyDraft, TheChiSquareTestRejectsWrongRules) {
  const double always_accept = ChiSquareOfEmittedTokens(
      [](const TokenDistribution&, const TokenDistribution&, int32_t x, Sampler*) { return x; },
      kTrials);
  EXPECT_GT(always_accept, 10 * kCritical);

  // Accepts correctly but resamples from p, not from max(0, p - q): the
  // emitted law is min(p, q) + (1 - sum min(p, q)) p, not p.
  const double resample_from_p = ChiSquareOfEmittedTokens(
      [](const TokenDistribution& p, const TokenDistribution& q, int32_t x, Sampler* s) {
        const double px = Prob(p, x), qx = Prob(q, x);
        if (px >= qx || s->Uniform() < px / qx) return x;
        return s->SampleFrom(p);
      },
      kTrials);
  EXPECT_GT(resample_from_p, 10 * kCritical);
}

// A greedy draft (empty q) from a sampling verifier: still distributed as p.
TEST(VerifyDraft, GreedyDraftsUnderSamplingFollowTheVerifiersDistribution) {
  Sampler cloud(Sampling(1.0f, 0, 31));
  const TokenDistribution p{{2, 0, 1}, {0.5f, 0.3f, 0.2f}};
  std::vector<int> counts(3, 0);
  const int n = 20000;
  for (int t = 0; t < n; ++t) {
    auto v = VerifyDraft(p, TokenDistribution{}, /*x=*/1, &cloud);  // always drafts id 1
    ASSERT_TRUE(v.ok());
    ++counts[v->token];
  }
  double chi2 = 0;
  for (size_t i = 0; i < p.ids.size(); ++i) {
    const double e = n * p.probs[i];
    chi2 += (counts[p.ids[i]] - e) * (counts[p.ids[i]] - e) / e;
  }
  EXPECT_LT(chi2, 18.42);  // 2 degrees of freedom, 1 - 1e-4 quantile
}

}  // namespace
}  // namespace tandem
