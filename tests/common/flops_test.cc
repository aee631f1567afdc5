// FLOPs counted from shapes (tandem/flops.h), checked against an independent
// count: twice the number of weights in each layer's matrices (every weight is
// one multiply-add per row), plus attention's 2 x 2 x heads x head_dim per key.
#include "tandem/flops.h"

#include <string>

#include "gtest/gtest.h"
#include "tandem/model.h"
#include "testing/tiny_model.h"

namespace tandem {
namespace {

// 2 x the elements of every 2-D weight named `prefix`* (q/k/v/o and MLP).
double TwiceMatrixWeights(const Model& model, const std::string& prefix) {
  double total = 0;
  for (const auto& [name, tensor] : model.NamedParameters()) {
    if (name.rfind(prefix, 0) == 0 && tensor.dim() == 2) total += 2.0 * tensor.numel();
  }
  return total;
}

TEST(Flops, LayerCountMatchesTheWeightsPlusAttention) {
  for (const ModelConfig& config : {testing::TinyGqaConfig(), testing::TinyBiasConfig()}) {
    auto model = Model::CreateRandom(config, ModelOptions{}, 1);
    ASSERT_TRUE(model.ok()) << model.status();
    const double dense = TwiceMatrixWeights(**model, "model.layers.0.");
    ASSERT_GT(dense, 0);
    const int64_t head_dim =
        config.head_dim > 0 ? config.head_dim : config.hidden_size / config.num_attention_heads;
    const double per_key = 4.0 * config.num_attention_heads * head_dim;
    // Position 9 attends to 10 keys.
    EXPECT_DOUBLE_EQ(LayerFlops(config, 0, 1, 9), dense + 10 * per_key);
    EXPECT_DOUBLE_EQ(LayerFlops(config, 1, 3, 0), 2 * (dense + per_key));
    EXPECT_DOUBLE_EQ(LayerFlops(config, 2, 2, 5), 0);
    EXPECT_DOUBLE_EQ(LayerFlopsRange(config, 0, 1, 3, 2),
                     LayerFlops(config, 0, 1, 3) + LayerFlops(config, 0, 1, 4));
  }
}

TEST(Flops, LmHeadIsTwiceItsWeights) {
  const ModelConfig config = testing::TinyBiasConfig();  // untied head
  auto model = Model::CreateRandom(config, ModelOptions{}, 1);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_DOUBLE_EQ(LmHeadFlops(config), TwiceMatrixWeights(**model, "lm_head."));
}

TEST(Flops, GenerationIsPrefillPlusDecodeSteps) {
  const ModelConfig config = testing::TinyGqaConfig();
  const int64_t layers = config.num_hidden_layers;
  // 3 prompt rows, 2 tokens: rows 0..3 run (the last token is never fed back),
  // and the head runs once per token.
  EXPECT_DOUBLE_EQ(GenerationFlops(config, 3, 2),
                   LayerFlopsRange(config, 0, layers, 0, 4) + 2 * LmHeadFlops(config));
  EXPECT_DOUBLE_EQ(GenerationFlops(config, 3, 0), 0);
}

TEST(Flops, SlidingWindowCapsTheKeys) {
  ModelConfig config = testing::TinyGqaConfig();
  const double unlimited = LayerFlops(config, 0, 1, 100);
  config.sliding_window = 8;
  const double windowed = LayerFlops(config, 0, 1, 100);
  EXPECT_LT(windowed, unlimited);
  EXPECT_DOUBLE_EQ(windowed, LayerFlops(config, 0, 1, 7));
}

}  // namespace
}  // namespace tandem
