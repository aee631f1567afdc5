// The batched teacher-forced evaluation core (common/src/exits/teacher_forcing.h)
// and what is built on it (calibration.h), against direct per-window
// computations with the public model API.
#include "exits/teacher_forcing.h"

#include <cmath>
#include <limits>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tandem/calibration.h"
#include "tandem/exit_training.h"
#include "testing/tiny_model.h"

namespace tandem {
namespace {

using internal::HeadRows;

constexpr ConfidenceMeasure kAllMeasures[] = {
    ConfidenceMeasure::kMaxProb, ConfidenceMeasure::kMargin, ConfidenceMeasure::kEntropy};

std::vector<int32_t> Text(int n, int vocab) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 7 + i / 5 + (i * i) % 13) % vocab);
  return t;
}

struct Fixture {
  std::unique_ptr<Model> model;
  std::unique_ptr<ExitHeads> heads;
};

Fixture Make() {
  Fixture f;
  f.model = std::move(Model::CreateRandom(testing::TinyGqaConfig(), {}, 4).value());
  f.heads = std::move(ExitHeads::Create(*f.model, {1, 2}, 2, 1).value());
  return f;
}

TEST(SummarizeLogits, MatchesConfidenceAndCrossEntropy) {
  at::InferenceMode guard;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  // More rows than one reduction block and a peaked distribution or two.
  at::Tensor logits = at::normal(0.0, 3.0, {300, 1000}, gen);
  logits[5][17] = 40.0f;
  at::Tensor targets = at::randint(1000, {300}, gen);
  HeadRows rows = internal::AllocateHeadRows(300);
  internal::SummarizeLogitsInto(logits.narrow(0, 0, 120), targets.narrow(0, 0, 120), rows, 0);
  internal::SummarizeLogitsInto(logits.narrow(0, 120, 180), targets.narrow(0, 120, 180), rows,
                                120);
  for (ConfidenceMeasure m : kAllMeasures) {
    auto [conf, token] = Confidence(logits, m);
    EXPECT_TRUE(at::allclose(rows.confidence(m), conf, 1e-5, 1e-6)) << ConfidenceMeasureName(m);
    EXPECT_TRUE(at::equal(rows.token, token)) << ConfidenceMeasureName(m);
  }
  at::Tensor nll = at::cross_entropy_loss(logits, targets, {}, at::Reduction::None);
  EXPECT_TRUE(at::allclose(rows.nll, nll, 1e-5, 1e-5));
  EXPECT_NEAR(rows.max_prob[5].item<float>(), 1.0f, 1e-6);
}

TEST(TeacherForced, WindowsAndStatisticsMatchPerWindowForwardPasses) {
  at::InferenceMode guard;
  Fixture f = Make();
  const int64_t seq_len = 16;
  const std::vector<int32_t> tokens = Text(17 * 5 + 9, 97);  // 5 windows and a partial one
  EXPECT_EQ(internal::TeacherForcedWindows(tokens.size(), seq_len, 0), 5);
  EXPECT_EQ(internal::TeacherForcedWindows(tokens.size(), seq_len, 33), 3);
  std::vector<at::Tensor> exit_tokens, full_nll, targets;
  std::vector<Progress> progress;
  ASSERT_TRUE(internal::RunTeacherForced(
                  *f.model, f.heads.get(), {1, 2}, tokens, seq_len, 0,
                  [&](const Progress& p) {
                    progress.push_back(p);
                    return true;
                  },
                  /*bf16_autocast=*/false,
                  [&](const internal::TeacherForcedBatch& b) -> absl::Status {
                    EXPECT_EQ(b.exit_hidden.size(), 2u);
                    auto exit1 = internal::SummarizeRows(*f.model, f.heads.get(), 1,
                                                         b.exit_hidden[0], b.targets);
                    auto full = internal::SummarizeRows(*f.model, nullptr, internal::kFinalHead,
                                                        b.final_hidden, b.targets);
                    if (!exit1.ok()) return exit1.status();
                    if (!full.ok()) return full.status();
                    exit_tokens.push_back(exit1->token);
                    full_nll.push_back(full->nll);
                    targets.push_back(b.targets);
                    return absl::OkStatus();
                  })
                  .ok());
  at::Tensor got_tokens = at::cat(exit_tokens), got_nll = at::cat(full_nll),
             got_targets = at::cat(targets);
  ASSERT_EQ(got_targets.size(0), 5 * seq_len);
  for (int64_t w = 0; w < 5; ++w) {
    std::vector<int64_t> ids(tokens.begin() + w * 17, tokens.begin() + w * 17 + 17);
    at::Tensor window = at::tensor(ids, at::kLong);
    at::Tensor positions = at::arange(seq_len, at::kLong);
    at::Tensor h = f.model->Embed(window.narrow(0, 0, seq_len)).value();
    at::Tensor h1 = f.model->ForwardLayers(0, 1, h, positions, nullptr).value();
    at::Tensor exit1 = f.heads->Logits(*f.model, 1, h1).value().argmax(-1);
    at::Tensor hl = f.model->ForwardLayers(1, 4, h1, positions, nullptr).value();
    at::Tensor nll = at::cross_entropy_loss(f.model->Logits(hl).value(), window.narrow(0, 1, seq_len),
                                            {}, at::Reduction::None);
    EXPECT_TRUE(at::equal(got_targets.narrow(0, w * seq_len, seq_len), window.narrow(0, 1, seq_len)));
    EXPECT_TRUE(at::equal(got_tokens.narrow(0, w * seq_len, seq_len), exit1)) << w;
    EXPECT_TRUE(at::allclose(got_nll.narrow(0, w * seq_len, seq_len), nll, 1e-4, 1e-5)) << w;
  }
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().done, 5 * seq_len);
  EXPECT_EQ(progress.back().total, 5 * seq_len);
  for (size_t i = 1; i < progress.size(); ++i) EXPECT_GT(progress[i].done, progress[i - 1].done);
}

TEST(EvaluateThresholds, SameAsTheCascadeOnEveryRow) {
  // EvaluateThresholds runs heads on subsets of rows; the answer must be the
  // one from every head on every row.
  at::InferenceMode guard;
  Fixture f = Make();
  const std::vector<int32_t> tokens = Text(33 * 12, 97);
  CalibrationOptions o;
  o.seq_len = 32;
  o.target_agreement = 0.8;
  auto cal = Calibrate(*f.model, *f.heads, tokens, o);
  ASSERT_TRUE(cal.ok()) << cal.status();
  for (const MeasureCalibration& m : cal->measures) {
    ExitThresholds t;
    t.measure = m.measure;
    t.by_layer = m.thresholds;
    auto r = EvaluateThresholds(*f.model, *f.heads, t, tokens, 32);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->tokens, cal->tokens);
    // Thresholds are some token's exact confidence, and a head run on fewer
    // rows may round that token's logits differently (one row takes the
    // matrix-vector path): allow one token either way per exit.
    const double tol = 2.0 / r->tokens;
    EXPECT_NEAR(r->coverage, m.coverage, tol) << ConfidenceMeasureName(m.measure);
    EXPECT_NEAR(r->agreement, m.agreement, tol) << ConfidenceMeasureName(m.measure);
    for (const auto& [layer, share] : m.exit_share) {
      EXPECT_NEAR(r->exit_share.at(layer), share, tol);
    }
  }
  ExitThresholds none;
  none.by_layer = {{1, 2.0}, {2, 2.0}};  // no max_prob reaches 2: nothing leaves
  auto r = EvaluateThresholds(*f.model, *f.heads, none, tokens, 32);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->coverage, 0.0);
  EXPECT_EQ(r->agreement, 1.0);
}

TEST(EvaluatePerplexity, Bf16StaysCloseToFp32) {
  // bf16 autocast is an opt-in speed path (fast where the CPU has AVX512_BF16
  // or AMX): same windows and tokens, perplexities within a few percent.
  Fixture f = Make();
  const std::vector<int32_t> tokens = Text(17 * 6, 97);
  auto fp32 = EvaluatePerplexity(*f.model, f.heads.get(), tokens, {}, 16);
  auto bf16 = EvaluatePerplexity(*f.model, f.heads.get(), tokens, {}, 16, 0, nullptr,
                                 ComputePrecision::kBf16);
  ASSERT_TRUE(fp32.ok()) << fp32.status();
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  EXPECT_EQ(bf16->tokens, fp32->tokens);
  EXPECT_NEAR(bf16->full_nll, fp32->full_nll, 0.03 * fp32->full_nll);
  ASSERT_EQ(bf16->exit_nll.size(), fp32->exit_nll.size());
  for (const auto& [layer, nll] : fp32->exit_nll) {
    EXPECT_NEAR(bf16->exit_nll.at(layer), nll, 0.03 * nll) << "exit " << layer;
  }
}

TEST(TeacherForced, ProgressFalseCancelsAndBadInputIsRefused) {
  at::InferenceMode guard;
  Fixture f = Make();
  const std::vector<int32_t> tokens = Text(33 * 20, 97);
  int calls = 0;
  absl::StatusOr<PerplexityResult> r = EvaluatePerplexity(
      *f.model, f.heads.get(), tokens, {}, 32, 0, [&](const Progress&) { return ++calls < 2; });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 2);
  std::vector<int32_t> bad = tokens;
  bad[40] = 97;  // outside the vocabulary
  EXPECT_EQ(EvaluatePerplexity(*f.model, nullptr, bad, {}, 32).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EvaluatePerplexity(*f.model, nullptr, Text(10, 97), {}, 32).status().code(),
            absl::StatusCode::kInvalidArgument);
  CalibrationOptions o;
  o.seq_len = 32;
  o.curve_points = 1;
  EXPECT_EQ(Calibrate(*f.model, *f.heads, tokens, o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// The calibration search of the previous implementation, verbatim in spirit:
// every candidate threshold evaluated by running the whole cascade.
// The best cascade coverage within the disagreement budget over every pair of
// candidate thresholds (200 quantiles + "never" per exit): what the joint
// search must find. Also returns {covered, disagreements} for given thresholds.
std::pair<int64_t, int64_t> CascadeOf(const std::vector<std::vector<float>>& conf,
                                      const std::vector<std::vector<uint8_t>>& agree,
                                      const std::vector<double>& thr) {
  int64_t covered = 0, wrong = 0;
  for (size_t t = 0; t < conf[0].size(); ++t) {
    for (size_t i = 0; i < conf.size(); ++i) {
      if (conf[i][t] >= thr[i]) {
        ++covered;
        wrong += 1 - agree[i][t];
        break;
      }
    }
  }
  return {covered, wrong};
}

int64_t ExhaustiveBestCoverage(const std::vector<std::vector<float>>& conf,
                               const std::vector<std::vector<uint8_t>>& agree, double target) {
  const int64_t n = static_cast<int64_t>(conf[0].size());
  std::vector<std::vector<double>> candidates(2);
  for (size_t i = 0; i < 2; ++i) {
    std::vector<float> sorted = conf[i];
    std::sort(sorted.begin(), sorted.end());
    for (int q = 0; q <= 200; ++q) {
      candidates[i].push_back(sorted[std::min<int64_t>(n - 1, (n - 1) * q / 200)]);
    }
    candidates[i].push_back(std::numeric_limits<double>::infinity());
  }
  const double budget = (1.0 - target) * n;
  int64_t best = 0;
  for (double a : candidates[0]) {
    for (double b : candidates[1]) {
      const auto [cov, wrong] = CascadeOf(conf, agree, {a, b});
      if (wrong <= budget) best = std::max(best, cov);
    }
  }
  return best;
}

TEST(Calibrate, FindsTheExhaustiveSearchsOptimum) {
  at::InferenceMode guard;
  Fixture f = Make();
  const int64_t seq_len = 32;
  const std::vector<int32_t> tokens = Text(33 * 24, 97);
  // Per-token confidences and agreement, computed window by window with the
  // public API.
  std::vector<std::vector<std::vector<float>>> conf(3, std::vector<std::vector<float>>(2));
  std::vector<std::vector<uint8_t>> agree(2);
  for (int64_t w = 0; w < 24; ++w) {
    std::vector<int64_t> ids(tokens.begin() + w * 33, tokens.begin() + w * 33 + seq_len);
    at::Tensor positions = at::arange(seq_len, at::kLong);
    at::Tensor h = f.model->Embed(at::tensor(ids, at::kLong)).value();
    std::vector<at::Tensor> exit_logits;
    int64_t layer = 0;
    for (int64_t e : {1, 2}) {
      h = f.model->ForwardLayers(layer, e, h, positions, nullptr).value();
      layer = e;
      exit_logits.push_back(f.heads->Logits(*f.model, e, h).value());
    }
    h = f.model->ForwardLayers(layer, 4, h, positions, nullptr).value();
    at::Tensor full = f.model->Logits(h).value().argmax(-1);
    for (size_t i = 0; i < 2; ++i) {
      for (size_t m = 0; m < 3; ++m) {
        auto [c, token] = Confidence(exit_logits[i], kAllMeasures[m]);
        for (int64_t t = 0; t < seq_len; ++t) conf[m][i].push_back(c[t].item<float>());
        if (m == 0) {
          for (int64_t t = 0; t < seq_len; ++t) {
            agree[i].push_back(token[t].item<int64_t>() == full[t].item<int64_t>());
          }
        }
      }
    }
  }
  for (double target : {0.6, 0.9, 1.0}) {
    CalibrationOptions o;
    o.seq_len = seq_len;
    o.target_agreement = target;
    auto r = Calibrate(*f.model, *f.heads, tokens, o);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->tokens, 24 * seq_len);
    const double budget = (1.0 - target) * r->tokens;
    for (size_t m = 0; m < 3; ++m) {
      const int64_t best = ExhaustiveBestCoverage(conf[m], agree, target);
      const MeasureCalibration& got = r->measures[m];
      const auto [cov, wrong] =
          CascadeOf(conf[m], agree, {got.thresholds.at(1), got.thresholds.at(2)});
      // The same optimum up to float rounding of the fused confidences: a
      // threshold equals some token's confidence, which this test recomputes
      // with Confidence() and may round one way or the other.
      EXPECT_NEAR(cov, best, 2) << target << " " << m;
      EXPECT_LE(wrong, budget + 2) << target << " " << m;
      EXPECT_NEAR(got.coverage * r->tokens, best, 2) << target << " " << m;
    }
  }
}

TEST(TrainExitHeads, TokensInMemoryAndStopRequested) {
  at::InferenceMode guard(false);
  auto model = Model::CreateRandom(testing::TinyGqaConfig(), {}, 4);
  ASSERT_TRUE(model.ok());
  auto heads = ExitHeads::Create(**model, {1, 2}, 0, 1);
  ASSERT_TRUE(heads.ok());
  ExitTrainOptions o;
  o.train_tokens = Text(400, 97);
  o.seq_len = 16;
  o.batch_size = 2;
  o.max_steps = 10;
  int steps_seen = 0;
  o.stop_requested = [&] { return steps_seen >= 3; };
  auto r = TrainExitHeads(**model, **heads, o, [&](const ExitTrainProgress&) { ++steps_seen; });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(steps_seen, 3);
  o.stop_requested = nullptr;
  o.max_steps = 2;
  EXPECT_EQ(TrainExitHeads(**model, **heads, o, nullptr).value(), 2);
  o.train_tokens[7] = 1000;
  EXPECT_EQ(TrainExitHeads(**model, **heads, o, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tandem
