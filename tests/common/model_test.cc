#include "tandem/model.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "testing/tiny_model.h"

namespace tandem {
namespace {

using ::tandem::testing::TempDir;
using ::tandem::testing::TinyBiasConfig;
using ::tandem::testing::TinyGqaConfig;

at::Tensor Ids(std::vector<int64_t> v) { return at::tensor(v, at::kLong); }
at::Tensor Range(int64_t a, int64_t b) { return at::arange(a, b, at::kLong); }

// Logits of every position, computed without a cache in one pass.
at::Tensor FullLogits(const Model& m, const at::Tensor& ids) {
  auto h = m.Embed(ids);
  EXPECT_TRUE(h.ok()) << h.status();
  auto out = m.ForwardLayers(0, m.config().num_hidden_layers, *h, Range(0, ids.size(0)), nullptr);
  EXPECT_TRUE(out.ok()) << out.status();
  auto logits = m.Logits(*out);
  EXPECT_TRUE(logits.ok()) << logits.status();
  return *logits;
}

class ModelConfigs : public ::testing::TestWithParam<ModelConfig> {};

TEST_P(ModelConfigs, DecodeWithCacheEqualsFullRecompute) {
  at::InferenceMode guard;
  auto model = Model::CreateRandom(GetParam(), {}, 7);
  ASSERT_TRUE(model.ok()) << model.status();
  const Model& m = **model;
  at::Tensor ids = Ids({1, 5, 9, 33, 2, 17, 80, 41, 8, 8, 3, 60});
  at::Tensor reference = FullLogits(m, ids);

  auto cache = m.NewCache(32);
  ASSERT_TRUE(cache.ok());
  // Prefill the first 5 as a batch, then one token at a time.
  const int64_t prefill = 5;
  auto h = m.Embed(ids.narrow(0, 0, prefill));
  auto out = m.ForwardLayers(0, 4, *h, Range(0, prefill), cache->get());
  ASSERT_TRUE(out.ok()) << out.status();
  auto logits = m.Logits(*out);
  EXPECT_TRUE(at::allclose(*logits, reference.narrow(0, 0, prefill), 1e-5, 1e-5));
  for (int64_t p = prefill; p < ids.size(0); ++p) {
    auto hp = m.Embed(ids.narrow(0, p, 1));
    auto op = m.ForwardLayers(0, 4, *hp, Range(p, p + 1), cache->get());
    ASSERT_TRUE(op.ok()) << op.status();
    auto lp = m.Logits(*op);
    EXPECT_LT((*lp - reference.narrow(0, p, 1)).abs().max().item<float>(), 1e-5) << "pos " << p;
  }
  EXPECT_EQ((*cache)->min_length(), ids.size(0));
}

TEST_P(ModelConfigs, LayerRangesComposeToTheFullForward) {
  at::InferenceMode guard;
  auto model = Model::CreateRandom(GetParam(), {}, 3);
  ASSERT_TRUE(model.ok());
  const Model& m = **model;
  at::Tensor ids = Ids({4, 8, 15, 16, 23, 42});
  auto h = m.Embed(ids);
  auto full = m.ForwardLayers(0, 4, *h, Range(0, 6), nullptr);
  auto first = m.ForwardLayers(0, 2, *h, Range(0, 6), nullptr);
  auto second = m.ForwardLayers(2, 4, *first, Range(0, 6), nullptr);
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(at::allclose(*full, *second, 1e-6, 1e-6));
}

TEST_P(ModelConfigs, BatchedRowsEqualSeparateSequences) {
  at::InferenceMode guard;
  auto model = Model::CreateRandom(GetParam(), {}, 5);
  ASSERT_TRUE(model.ok());
  const Model& m = **model;
  at::Tensor a = Ids({3, 1, 4, 1, 5}), b = Ids({9, 2, 6, 5, 3});
  at::Tensor batch = at::stack({a, b});
  auto h = m.Embed(batch);
  auto out = m.ForwardLayers(0, 4, *h, Range(0, 5), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  auto logits = m.Logits(*out);
  EXPECT_TRUE(at::allclose((*logits)[0], FullLogits(m, a), 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose((*logits)[1], FullLogits(m, b), 1e-5, 1e-5));
}

INSTANTIATE_TEST_SUITE_P(Tiny, ModelConfigs, ::testing::Values(TinyGqaConfig(), TinyBiasConfig()),
                         [](const auto& info) {
                           return info.param.attention_bias ? "Bias" : "Gqa";
                         });

TEST(Model, SaveThenLoadGivesIdenticalLogits) {
  at::InferenceMode guard;
  TempDir dir;
  auto original = testing::WriteRandomModel(TinyBiasConfig(), dir.path(), 11);
  ASSERT_NE(original, nullptr);
  auto loaded = Model::Load(dir.path().string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  at::Tensor ids = Ids({5, 6, 7, 8});
  EXPECT_TRUE(at::equal(FullLogits(*original, ids), FullLogits(**loaded, ids)));
}

TEST(Model, PartialLoadHoldsOnlyRequestedLayers) {
  TempDir dir;
  ASSERT_NE(testing::WriteRandomModel(TinyGqaConfig(), dir.path()), nullptr);
  ModelOptions cloud;
  cloud.layer_begin = 2;
  cloud.load_embedding = false;
  auto model = Model::Load(dir.path().string(), cloud);
  ASSERT_TRUE(model.ok()) << model.status();
  auto full = Model::Load(dir.path().string());
  ASSERT_TRUE(full.ok());
  EXPECT_LT((*model)->weight_bytes(), (*full)->weight_bytes());
  for (const auto& [name, t] : (*model)->NamedParameters()) {
    EXPECT_EQ(name.find("model.layers.0."), std::string::npos) << name;
    EXPECT_EQ(name.find("model.layers.1."), std::string::npos) << name;
  }
  EXPECT_EQ((*model)->Embed(Ids({1})).status().code(), absl::StatusCode::kFailedPrecondition);
  at::Tensor h = at::zeros({1, 32});
  EXPECT_EQ((*model)->ForwardLayers(0, 4, h, Range(0, 1), nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*model)->ForwardLayers(2, 4, h, Range(0, 1), nullptr).ok());
}

TEST(Model, MissingTensorIsAnErrorNamingIt) {
  TempDir dir;
  ModelConfig c = TinyGqaConfig();
  ASSERT_NE(testing::WriteRandomModel(c, dir.path()), nullptr);
  // Claim biases the checkpoint does not have.
  c.attention_bias = true;
  std::FILE* f = std::fopen((dir.path() / "config.json").c_str(), "w");
  const std::string json = c.ToJson();
  std::fwrite(json.data(), 1, json.size(), f);
  std::fclose(f);
  auto model = Model::Load(dir.path().string());
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("q_proj.bias"), std::string::npos) << model.status();
}

TEST(Model, WrongShapeIsAnError) {
  TempDir dir;
  ModelConfig c = TinyGqaConfig();
  ASSERT_NE(testing::WriteRandomModel(c, dir.path()), nullptr);
  c.intermediate_size = 64;
  std::FILE* f = std::fopen((dir.path() / "config.json").c_str(), "w");
  const std::string json = c.ToJson();
  std::fwrite(json.data(), 1, json.size(), f);
  std::fclose(f);
  auto model = Model::Load(dir.path().string());
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("shape"), std::string::npos) << model.status();
}

TEST(Model, MissingDirectoryIsNotFound) {
  EXPECT_EQ(Model::Load("/nonexistent/tandem-model").status().code(), absl::StatusCode::kNotFound);
}

TEST(Model, RejectsOutOfVocabularyIdsAndBadPositions) {
  at::InferenceMode guard;
  auto model = Model::CreateRandom(TinyGqaConfig(), {}, 1);
  ASSERT_TRUE(model.ok());
  EXPECT_EQ((*model)->Embed(Ids({1, 97})).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*model)->Embed(Ids({-1})).status().code(), absl::StatusCode::kInvalidArgument);
  at::Tensor h = at::zeros({2, 32});
  EXPECT_FALSE((*model)->ForwardLayers(0, 4, h, Ids({0, 2}), nullptr).ok());
  EXPECT_FALSE((*model)->ForwardLayers(0, 4, at::zeros({2, 31}), Range(0, 2), nullptr).ok());
  auto cache = (*model)->NewCache(4);
  ASSERT_TRUE(cache.ok());
  // The cache is empty, so rows must start at position 0.
  EXPECT_FALSE((*model)->ForwardLayers(0, 4, h, Range(1, 3), cache->get()).ok());
  // Capacity exceeded: nothing is appended.
  EXPECT_EQ(
      (*model)->ForwardLayers(0, 4, at::zeros({5, 32}), Range(0, 5), cache->get()).status().code(),
      absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*cache)->min_length(), 0);
}

TEST(Model, Bf16ComputeStaysCloseToFp32) {
  at::InferenceMode guard;
  auto fp32 = Model::CreateRandom(TinyGqaConfig(), {}, 9);
  ModelOptions bf16_opts;
  bf16_opts.dtype = at::kBFloat16;
  auto bf16 = Model::CreateRandom(TinyGqaConfig(), bf16_opts, 9);
  ASSERT_TRUE(fp32.ok() && bf16.ok());
  at::Tensor ids = Ids({10, 20, 30, 40, 50});
  at::Tensor a = FullLogits(**fp32, ids), b = FullLogits(**bf16, ids);
  EXPECT_EQ(b.scalar_type(), at::kFloat);
  // Random weights of std 0.02 give logits of order 0.1; bf16 keeps ~3 digits.
  EXPECT_LT((a - b).abs().max().item<float>(), 0.02f * a.abs().max().item<float>() + 1e-3f);
}

TEST(Model, TrainingGradientsReachEveryParameter) {
  auto model = Model::CreateRandom(TinyBiasConfig(), {}, 2);
  ASSERT_TRUE(model.ok());
  auto params = (*model)->NamedParameters();
  for (auto& [name, t] : params) t.requires_grad_(true);
  at::Tensor ids = Ids({1, 2, 3, 4, 5, 6});
  at::Tensor logits = FullLogits(**model, ids);
  at::Tensor loss = at::cross_entropy_loss(logits.narrow(0, 0, 5), ids.narrow(0, 1, 5));
  loss.backward();
  for (auto& [name, t] : params) {
    ASSERT_TRUE(t.grad().defined()) << name;
    EXPECT_GT(t.grad().abs().sum().item<float>(), 0.0f) << name;
  }
}

}  // namespace
}  // namespace tandem
