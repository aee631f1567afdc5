// The shipped model (models/tandem-tiny) against its model card: the perplexity
// of the committed test slice must match card.json (written by
// tools/make_model_card.py) within 1%.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tandem/calibration.h"
#include "tandem/exit_heads.h"
#include "tandem/model.h"
#include "tandem/tokenizer.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(ShippedModel, TestSlicePerplexityMatchesTheModelCard) {
  const fs::path root(TANDEM_SOURCE_DIR);
  const fs::path dir = root / "models" / "tandem-tiny";
  if (!fs::exists(dir / "model.safetensors")) {
    GTEST_SKIP() << "models/tandem-tiny has no weights yet";
  }
  auto card = nlohmann::json::parse(ReadFile(dir / "card.json"));
  auto model = Model::Load(dir.string());
  ASSERT_TRUE(model.ok()) << model.status();
  auto heads = ExitHeads::Load(dir.string(), **model);
  ASSERT_TRUE(heads.ok()) << heads.status();
  EXPECT_FALSE((*heads)->thresholds().by_layer.empty());
  auto tokenizer = Tokenizer::Load(dir.string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::string slice_path = card["test_slice"]["path"].get<std::string>();
  auto tokens = (*tokenizer)->Encode(ReadFile(root / slice_path), /*add_special_tokens=*/false);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  auto result = EvaluatePerplexity(**model, heads->get(), *tokens, {},
                                   card["seq_len"].get<int64_t>());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->tokens, card["test_slice"]["tokens"].get<int64_t>());
  const double card_ppl = card["test_slice"]["full_ppl"].get<double>();
  EXPECT_NEAR(std::exp(result->full_nll), card_ppl, 0.01 * card_ppl);
  // The model is far better than chance on its own language.
  EXPECT_LT(std::exp(result->full_nll), 0.1 * (*model)->config().vocab_size);
}

}  // namespace
}  // namespace tandem
