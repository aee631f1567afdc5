// Test fixtures: small random Llama-family configs and models, built in memory
// or written to a temporary directory in Hugging Face layout.
#ifndef TANDEM_TESTS_COMMON_TESTING_TINY_MODEL_H_
#define TANDEM_TESTS_COMMON_TESTING_TINY_MODEL_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

#include "tandem/model.h"
#include "tandem/model_config.h"

namespace tandem::testing {

// GQA (4 query heads, 2 kv heads), tied embeddings, no biases.
ModelConfig TinyGqaConfig();
// Attention bias on q/k/v, untied LM head, Qwen2-style.
ModelConfig TinyBiasConfig();

// A fresh empty directory under the test temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Random model of `config` written to `dir` (config.json + model.safetensors).
std::unique_ptr<Model> WriteRandomModel(const ModelConfig& config, const std::filesystem::path& dir,
                                        uint64_t seed = 1);

// A random model of `config` with the tokenizer `tokenizer_json` beside it in
// `dir`: config.vocab_size becomes the tokenizer's plus `extra_rows` LM-head
// rows it cannot decode; `edit_head`, when set, may change lm_head.weight (an
// untied config) before the save.
void WriteCheckpointWithTokenizer(ModelConfig config, const std::filesystem::path& tokenizer_json,
                                  const std::filesystem::path& dir, int64_t extra_rows,
                                  uint64_t seed,
                                  const std::function<void(at::Tensor&)>& edit_head = nullptr);

}  // namespace tandem::testing

#endif  // TANDEM_TESTS_COMMON_TESTING_TINY_MODEL_H_
