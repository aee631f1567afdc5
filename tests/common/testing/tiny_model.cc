#include "testing/tiny_model.h"

#include <atomic>
#include <cstdlib>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "tandem/tokenizer.h"

namespace tandem::testing {

ModelConfig TinyGqaConfig() {
  ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 128;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = true;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

ModelConfig TinyBiasConfig() {
  ModelConfig c = TinyGqaConfig();
  c.model_type = "qwen2";
  c.num_key_value_heads = 4;
  c.attention_bias = true;
  c.tie_word_embeddings = false;
  c.rope_theta = 1000000.0;
  c.rms_norm_eps = 1e-6;
  return c;
}

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  const char* base = std::getenv("TEST_TMPDIR");
  std::filesystem::path root = base ? base : std::filesystem::temp_directory_path();
  path_ = root / ("tandem_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::unique_ptr<Model> WriteRandomModel(const ModelConfig& config, const std::filesystem::path& dir,
                                        uint64_t seed) {
  auto model = Model::CreateRandom(config, ModelOptions{}, seed);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return nullptr;
  absl::Status s = (*model)->Save(dir.string());
  EXPECT_TRUE(s.ok()) << s;
  return std::move(*model);
}

void WriteCheckpointWithTokenizer(ModelConfig config, const std::filesystem::path& tokenizer_json,
                                  const std::filesystem::path& dir, int64_t extra_rows,
                                  uint64_t seed,
                                  const std::function<void(at::Tensor&)>& edit_head) {
  auto tokenizer = Tokenizer::Load(tokenizer_json.string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  config.vocab_size = (*tokenizer)->vocab_size() + extra_rows;
  auto model = Model::CreateRandom(config, {}, seed);
  ASSERT_TRUE(model.ok()) << model.status();
  if (edit_head) {
    at::NoGradGuard no_grad;
    for (auto& [name, t] : (*model)->NamedParameters()) {
      if (name == "lm_head.weight") edit_head(t);
    }
  }
  ASSERT_TRUE((*model)->Save(dir.string()).ok());
  std::filesystem::copy_file(tokenizer_json, dir / "tokenizer.json");
}

}  // namespace tandem::testing
