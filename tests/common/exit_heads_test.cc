#include "tandem/exit_heads.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tandem/calibration.h"
#include "testing/tiny_model.h"

namespace tandem {
namespace {

using testing::TempDir;

TEST(ExitHeads, FreshHeadAtTheLastLayerEqualsTheModelHead) {
  at::InferenceMode guard;
  auto model = Model::CreateRandom(testing::TinyGqaConfig(), {}, 3);
  ASSERT_TRUE(model.ok());
  auto heads = ExitHeads::Create(**model, {2, 4}, /*adapter_rank=*/3, 1);
  ASSERT_TRUE(heads.ok()) << heads.status();
  at::Tensor ids = at::arange(6, at::kLong);
  at::Tensor h = (*model)->ForwardLayers(0, 4, (*model)->Embed(ids).value(), ids, nullptr).value();
  at::Tensor want = (*model)->Logits(h).value();
  at::Tensor got = (*heads)->Logits(**model, 4, h).value();
  EXPECT_TRUE(at::allclose(got, want, 1e-5, 1e-5));
  EXPECT_FALSE((*heads)->Logits(**model, 3, h).ok());
}

TEST(ExitHeads, SaveLoadRoundTripKeepsWeightsAndThresholds) {
  at::InferenceMode guard;
  TempDir dir;
  auto model = testing::WriteRandomModel(testing::TinyGqaConfig(), dir.path());
  auto heads = ExitHeads::Create(*model, {1, 3}, 2, 9);
  ASSERT_TRUE(heads.ok());
  for (auto& [name, t] : (*heads)->NamedParameters()) t.add_(0.5);  // not the initial values
  ExitThresholds thr;
  thr.measure = ConfidenceMeasure::kMargin;
  thr.by_layer = {{1, 0.7}, {3, 0.4}};
  thr.target_agreement = 0.99;
  (*heads)->set_thresholds(thr);
  ASSERT_TRUE((*heads)->Save(dir.path().string()).ok());
  auto loaded = ExitHeads::Load(dir.path().string(), *model);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->layers(), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ((*loaded)->adapter_rank(), 2);
  EXPECT_EQ((*loaded)->thresholds().measure, ConfidenceMeasure::kMargin);
  EXPECT_EQ((*loaded)->thresholds().by_layer, thr.by_layer);
  auto a = (*heads)->NamedParameters(), b = (*loaded)->NamedParameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
  }
}

TEST(ExitHeads, RejectsBadLayersAndMissingFiles) {
  auto model = Model::CreateRandom(testing::TinyGqaConfig(), {}, 3);
  ASSERT_TRUE(model.ok());
  EXPECT_FALSE(ExitHeads::Create(**model, {}, 0, 1).ok());
  EXPECT_FALSE(ExitHeads::Create(**model, {3, 2}, 0, 1).ok());
  EXPECT_FALSE(ExitHeads::Create(**model, {5}, 0, 1).ok());
  TempDir dir;
  EXPECT_EQ(ExitHeads::Load(dir.path().string(), **model).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(Confidence, MeasuresOrderDistributionsSensibly) {
  at::Tensor logits = at::tensor({5.0f, 0.0f, 0.0f, 1.0f, 1.0f, 1.0f}).view({2, 3});
  for (auto m : {ConfidenceMeasure::kMaxProb, ConfidenceMeasure::kMargin,
                 ConfidenceMeasure::kEntropy}) {
    auto [conf, token] = Confidence(logits, m);
    EXPECT_GT(conf[0].item<float>(), conf[1].item<float>()) << ConfidenceMeasureName(m);
    EXPECT_EQ(token[0].item<int64_t>(), 0);
  }
  auto [margin, unused] = Confidence(logits, ConfidenceMeasure::kMargin);
  EXPECT_NEAR(margin[1].item<float>(), 0.0f, 1e-6);
}

TEST(Calibrate, MeetsTheTargetAndZeroTargetGapMeansNoWrongExits) {
  at::InferenceMode guard;
  auto model = Model::CreateRandom(testing::TinyGqaConfig(), {}, 4);
  ASSERT_TRUE(model.ok());
  auto heads = ExitHeads::Create(**model, {1, 2}, 0, 1);
  ASSERT_TRUE(heads.ok());
  std::vector<int32_t> tokens;
  for (int i = 0; i < 33 * 20; ++i) tokens.push_back((i * 7 + i / 5) % 97);
  CalibrationOptions o;
  o.seq_len = 32;
  for (double target : {0.9, 1.0}) {
    o.target_agreement = target;
    auto r = Calibrate(**model, **heads, tokens, o);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->tokens, 32 * 20);
    ASSERT_EQ(r->measures.size(), 3u);
    for (const MeasureCalibration& m : r->measures) {
      EXPECT_GE(m.agreement, target - 1e-12) << ConfidenceMeasureName(m.measure);
      double shares = 0;
      for (const auto& [layer, s] : m.exit_share) shares += s;
      EXPECT_NEAR(shares, m.coverage, 1e-12);
    }
    ExitThresholds chosen = r->Chosen();
    EXPECT_EQ(chosen.by_layer.size(), 2u);
    EXPECT_DOUBLE_EQ(chosen.expected_coverage, r->measures[r->best].coverage);
  }
  o.max_layer = 0;  // no exit before the split
  EXPECT_FALSE(Calibrate(**model, **heads, tokens, o).ok());
}

}  // namespace
}  // namespace tandem
