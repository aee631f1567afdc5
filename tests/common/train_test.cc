#include "tandem/train.h"

#include <cmath>
#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "tandem/model.h"
#include "testing/tiny_model.h"

namespace tandem {
namespace {

// A token file repeating one random 31-token phrase: learnable to near-zero loss.
void WritePeriodicTokens(const std::string& path, int64_t count, uint16_t vocab) {
  std::mt19937 rng(5);
  std::vector<uint16_t> phrase(31);
  for (uint16_t& t : phrase) t = static_cast<uint16_t>(rng() % vocab);
  std::vector<uint16_t> data(count);
  for (int64_t i = 0; i < count; ++i) data[i] = phrase[i % phrase.size()];
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(data.data()), data.size() * 2);
}

TrainOptions TinyOptions(const testing::TempDir& dir) {
  TrainOptions o;
  o.train_data = (dir.path() / "train.bin").string();
  o.valid_data = (dir.path() / "valid.bin").string();
  o.out_dir = (dir.path() / "model").string();
  o.config = testing::TinyGqaConfig();
  o.seq_len = 32;
  o.batch_size = 4;
  o.max_steps = 40;
  o.warmup_steps = 5;
  o.learning_rate = 5e-3;
  o.eval_every = 20;
  o.eval_windows = 8;
  o.save_every = 20;
  o.exit_layers = {2};
  o.exit_loss_weight = 0.5;
  o.bf16_autocast = false;
  WritePeriodicTokens(o.train_data, 4000, 97);
  WritePeriodicTokens(o.valid_data, 500, 97);
  return o;
}

TEST(Train, LossFallsAndTheSavedModelLoads) {
  testing::TempDir dir;
  TrainOptions o = TinyOptions(dir);
  std::vector<TrainProgress> evals;
  auto result = TrainModel(o, [&](const TrainProgress& p) {
    if (p.valid_loss >= 0) evals.push_back(p);
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->steps, 40);
  ASSERT_EQ(evals.size(), 2u);
  // Uniform guessing costs ln(97) = 4.57 nats; the phrase is memorisable.
  EXPECT_LT(evals.back().valid_loss, 0.5 * std::log(97.0));
  ASSERT_EQ(evals.back().valid_exit_losses.size(), 1u);
  EXPECT_LT(evals.back().valid_exit_losses[0], std::log(97.0));
  auto model = Model::Load(o.out_dir);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->get()->config().num_hidden_layers, 4);
}

TEST(Train, ResumeContinuesFromTheSavedStep) {
  testing::TempDir dir;
  TrainOptions o = TinyOptions(dir);
  o.max_steps = 20;
  ASSERT_TRUE(TrainModel(o, nullptr).ok());
  o.max_steps = 40;
  int64_t first_step = -1;
  auto result = TrainModel(o, [&](const TrainProgress& p) {
    if (first_step < 0) first_step = p.step;
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(first_step, 21);
  EXPECT_EQ(result->steps, 40);
}

TEST(Train, ZeroIntervalsMeanOnlyAtTheEnd) {
  // eval_every = save_every = 0 once divided by zero (SIGFPE) instead.
  testing::TempDir dir;
  TrainOptions o = TinyOptions(dir);
  o.max_steps = 10;
  o.eval_every = 0;
  o.save_every = 0;
  int evals = 0;
  auto result = TrainModel(o, [&](const TrainProgress& p) {
    if (p.valid_loss >= 0) ++evals;
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(evals, 1);
  EXPECT_TRUE(Model::Load(o.out_dir).ok());
}

TEST(Train, Bf16AutocastFollowsTheFp32LossCurve) {
  // The same run (seed, data, schedule) in fp32 and with bf16 autocast: the
  // per-step training losses stay close. bf16 keeps 8 mantissa bits, so the
  // curves drift apart slowly; the bound is loose enough for that and tight
  // enough to catch a broken cast (a wrong dtype or lost gradients diverge by
  // nats, not hundredths). Correctness only: the speed of each path is a
  // property of the CPU (tandem/cpu_features.h), measured outside tests.
  std::vector<double> losses[2];
  for (int bf16 = 0; bf16 < 2; ++bf16) {
    testing::TempDir dir;
    TrainOptions o = TinyOptions(dir);
    o.max_steps = 25;
    o.eval_every = 0;
    o.save_every = 0;
    o.bf16_autocast = bf16 == 1;
    auto result = TrainModel(o, [&](const TrainProgress& p) { losses[bf16].push_back(p.loss); });
    ASSERT_TRUE(result.ok()) << result.status();
  }
  ASSERT_EQ(losses[0].size(), 25u);
  ASSERT_EQ(losses[1].size(), 25u);
  EXPECT_LT(losses[0].back(), losses[0].front() - 1.0);  // it learned something
  for (size_t i = 0; i < losses[0].size(); ++i) {
    EXPECT_NEAR(losses[1][i], losses[0][i], 0.05 * losses[0][i] + 0.05) << "step " << i + 1;
  }
}

TEST(Train, BadInputsAreErrors) {
  testing::TempDir dir;
  TrainOptions o = TinyOptions(dir);
  o.exit_layers = {4};  // must be inside (0, L)
  EXPECT_EQ(TrainModel(o, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  o = TinyOptions(dir);
  o.train_data = (dir.path() / "missing.bin").string();
  EXPECT_FALSE(TrainModel(o, nullptr).ok());
  o = TinyOptions(dir);
  WritePeriodicTokens(o.train_data, 4000, 200);  // ids beyond the vocabulary
  EXPECT_EQ(TrainModel(o, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tandem
