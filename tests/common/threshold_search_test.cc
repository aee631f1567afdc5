#include "exits/threshold_search.h"

#include <algorithm>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace tandem::internal {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Columns {
  std::vector<std::vector<float>> conf;
  std::vector<std::vector<uint8_t>> agree;
  std::vector<ExitColumn> cols() const {
    std::vector<ExitColumn> c;
    for (size_t i = 0; i < conf.size(); ++i) c.push_back({&conf[i], &agree[i]});
    return c;
  }
};

// k exits over n tokens; later exits are more often right, as in a real model.
Columns RandomColumns(size_t k, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  Columns c;
  c.conf.assign(k, std::vector<float>(n));
  c.agree.assign(k, std::vector<uint8_t>(n));
  for (size_t i = 0; i < k; ++i) {
    for (int t = 0; t < n; ++t) {
      const float conf = u(rng);
      c.conf[i][t] = conf;
      // Higher confidence, and a later exit, make agreement likelier.
      c.agree[i][t] = u(rng) < 0.4f + 0.5f * conf + 0.05f * i ? 1 : 0;
    }
  }
  return c;
}

std::vector<double> Candidates(const std::vector<float>& conf, int steps) {
  std::vector<float> sorted = conf;
  std::sort(sorted.begin(), sorted.end());
  std::vector<double> out;
  for (int q = 0; q <= steps; ++q) out.push_back(sorted[(sorted.size() - 1) * q / steps]);
  out.push_back(kInf);
  return out;
}

TEST(ThresholdSearchTest, SweepExitGivesWhatTheCascadeGivesForEveryCandidate) {
  const Columns c = RandomColumns(3, 500, 7);
  const auto cols = c.cols();
  const std::vector<double> thr = {0.8, 0.6, 0.5};
  for (size_t i = 0; i < 3; ++i) {
    const std::vector<double> cand = Candidates(c.conf[i], 20);
    const auto swept = SweepExit(cols, thr, i, cand);
    ASSERT_EQ(swept.size(), cand.size());
    for (size_t j = 0; j < cand.size(); ++j) {
      std::vector<double> t = thr;
      t[i] = cand[j];
      EXPECT_EQ(swept[j], Cascade(cols, t, nullptr)) << "exit " << i << " candidate " << j;
    }
  }
}

TEST(ThresholdSearchTest, TwoExitsFindTheExactOptimumOverTheCandidates) {
  for (uint32_t seed = 1; seed <= 5; ++seed) {
    const Columns c = RandomColumns(2, 400, seed);
    const auto cols = c.cols();
    const std::vector<std::vector<double>> cand = {Candidates(c.conf[0], 30),
                                                   Candidates(c.conf[1], 30)};
    const double budget = 0.05 * 400;
    int64_t best = 0;
    for (double a : cand[0]) {
      for (double b : cand[1]) {
        const auto [cov, wrong] = Cascade(cols, {a, b}, nullptr);
        if (wrong <= budget) best = std::max(best, cov);
      }
    }
    const std::vector<double> thr = JointThresholds(cols, cand, budget);
    const auto [cov, wrong] = Cascade(cols, thr, nullptr);
    EXPECT_LE(wrong, budget) << "seed " << seed;
    EXPECT_EQ(cov, best) << "seed " << seed;
    EXPECT_GT(best, 0) << "seed " << seed;
  }
}

TEST(ThresholdSearchTest, FindsTheLaterExitWhenTheEarlyOneWouldSpendTheBudget) {
  // 100 tokens, budget 10 disagreements. Exit A is confident on tokens 0-19
  // and wrong on half of them (cost 10: the whole budget for 20 tokens). Exit
  // B is confident on tokens 40-99 and wrong on 5 of them (60 tokens for 5).
  // Taking A first, as a one-exit-at-a-time search from "no exit" does, leaves
  // no budget for B (20 tokens); the optimum skips A and takes B (60).
  Columns c;
  c.conf.assign(2, std::vector<float>(100, 0.0f));
  c.agree.assign(2, std::vector<uint8_t>(100, 0));
  for (int t = 0; t < 20; ++t) {
    c.conf[0][t] = 0.9f;
    c.agree[0][t] = t % 2;
  }
  for (int t = 40; t < 100; ++t) {
    c.conf[1][t] = 0.9f;
    c.agree[1][t] = t < 95 ? 1 : 0;
  }
  const auto cols = c.cols();
  // Candidates are confidences, as Calibrate makes them: 0.9f, not 0.9.
  const double high = 0.9f;
  const std::vector<std::vector<double>> cand = {{0.0, high, kInf}, {0.0, high, kInf}};
  const std::vector<double> thr = JointThresholds(cols, cand, 10.0);
  EXPECT_EQ(thr[0], kInf);
  EXPECT_EQ(thr[1], high);
  EXPECT_EQ(Cascade(cols, thr, nullptr), (std::pair<int64_t, int64_t>{60, 5}));
}

TEST(ThresholdSearchTest, NothingFitsMeansNoExit) {
  Columns c;
  c.conf.assign(2, std::vector<float>(10, 0.5f));
  c.agree.assign(2, std::vector<uint8_t>(10, 0));  // always wrong
  const std::vector<std::vector<double>> cand = {{0.5, kInf}, {0.5, kInf}};
  const std::vector<double> thr = JointThresholds(c.cols(), cand, 0.0);
  EXPECT_EQ(thr, (std::vector<double>{kInf, kInf}));
}

TEST(ThresholdSearchTest, ThreeExitsStayWithinBudgetAndBeatEachSingleExit) {
  const Columns c = RandomColumns(3, 600, 11);
  const auto cols = c.cols();
  std::vector<std::vector<double>> cand;
  for (size_t i = 0; i < 3; ++i) cand.push_back(Candidates(c.conf[i], 40));
  const double budget = 0.03 * 600;
  const std::vector<double> thr = JointThresholds(cols, cand, budget);
  const auto [cov, wrong] = Cascade(cols, thr, nullptr);
  EXPECT_LE(wrong, budget);
  for (size_t only = 0; only < 3; ++only) {
    for (double x : cand[only]) {
      std::vector<double> t(3, kInf);
      t[only] = x;
      const auto [c1, w1] = Cascade(cols, t, nullptr);
      if (w1 <= budget) EXPECT_GE(cov, c1) << "exit " << only << " alone at " << x;
    }
  }
}

}  // namespace
}  // namespace tandem::internal
