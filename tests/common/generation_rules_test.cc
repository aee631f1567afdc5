// Issue 14, items 5-7 for full-model generation: non-finite logits are an
// error, stop ids come from config.json lists and generation_config.json, and
// head rows the tokenizer cannot produce are never sampled.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tandem/generate.h"
#include "tandem/generation_config.h"
#include "tandem/model.h"
#include "tandem/tokenizer.h"
#include "testing/tiny_model.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using ::tandem::testing::TempDir;

constexpr char kTokenizer[] = TANDEM_TEST_DATA_DIR "/tokenizer/tiny_bytelevel/tokenizer.json";

void WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

// A random untied model in `dir` with the tiny byte-level tokenizer; `extra_rows`
// extra LM-head rows beyond the tokenizer; `edit_head` may change the head.
void WriteCheckpoint(const fs::path& dir, int64_t extra_rows = 0,
                     const std::function<void(at::Tensor&)>& edit_head = nullptr,
                     std::vector<int64_t> eos = {}) {
  ModelConfig config = testing::TinyBiasConfig();
  config.eos_token_ids = std::move(eos);
  testing::WriteCheckpointWithTokenizer(config, kTokenizer, dir, extra_rows, /*seed=*/11,
                                        edit_head);
}

struct Loaded {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
};

Loaded Load(const fs::path& dir) {
  Loaded l;
  auto model = Model::Load(dir.string());
  EXPECT_TRUE(model.ok()) << model.status();
  auto tokenizer = Tokenizer::Load(dir.string());
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  if (model.ok()) l.model = std::move(*model);
  if (tokenizer.ok()) l.tokenizer = std::move(*tokenizer);
  return l;
}

GenerateParams Params(int32_t n, float temperature = 0.0f) {
  GenerateParams p;
  p.max_new_tokens = n;
  p.sampling.temperature = temperature;
  p.sampling.seed = 3;
  return p;
}

// ---- generation_config.json ----------------------------------------------

TEST(GenerationConfig, ReadsEosListsAndSamplingDefaults) {
  auto g = GenerationConfig::FromJson(R"({"bos_token_id": 128000, "do_sample": true,
      "eos_token_id": [128001, 128008, 128009], "temperature": 0.6, "top_p": 0.9})");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  ASSERT_TRUE(g->sampling.has_value());
  EXPECT_FLOAT_EQ(g->sampling->temperature, 0.6f);
  EXPECT_FLOAT_EQ(g->sampling->top_p, 0.9f);
  EXPECT_EQ(g->sampling->top_k, 50);  // transformers' default when do_sample is on

  auto single = GenerationConfig::FromJson(R"({"eos_token_id": 2, "temperature": 0.7})");
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(single->eos_token_ids, (std::vector<int64_t>{2}));
  ASSERT_TRUE(single->sampling.has_value());
  EXPECT_EQ(single->sampling->temperature, 0.0f) << "do_sample defaults to false: greedy";

  auto none = GenerationConfig::FromJson(R"({"transformers_version": "4.40.0"})");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->eos_token_ids.empty());
  EXPECT_FALSE(none->sampling.has_value());
}

TEST(GenerationConfig, BadFieldsAreErrorsNamingThem) {
  for (const char* text :
       {R"({"eos_token_id": "x"})", R"({"eos_token_id": [1, -3]})", R"({"do_sample": 1})",
        R"({"temperature": -1})", R"({"top_p": 0})", R"({"top_k": 2.5})", "[1]", "{"}) {
    auto g = GenerationConfig::FromJson(text);
    ASSERT_FALSE(g.ok()) << text;
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(g.status().message().find("generation_config.json"), std::string::npos)
        << g.status();
  }
}

TEST(GenerationConfig, AbsentFileIsEmptyMalformedFileIsAnError) {
  TempDir dir;
  auto absent = GenerationConfig::LoadDir(dir.path().string());
  ASSERT_TRUE(absent.ok()) << absent.status();
  EXPECT_TRUE(absent->eos_token_ids.empty());
  WriteFile(dir.path() / "generation_config.json", "{\"eos_token_id\": [1,");
  auto bad = GenerationConfig::LoadDir(dir.path().string());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(dir.path().string()), std::string::npos) << bad.status();
}

TEST(TokenRules, UnionOfEveryStopIdAndAMaskForHeadRowsBeyondTheTokenizer) {
  auto tokenizer = Tokenizer::Load(kTokenizer);
  ASSERT_TRUE(tokenizer.ok());
  ModelConfig config = testing::TinyGqaConfig();
  config.vocab_size = (*tokenizer)->vocab_size() + 8;
  config.eos_token_ids = {7, 5};
  GenerationConfig generation;
  generation.eos_token_ids = {9, 5, 100000};  // an id past the head is ignored
  TokenRules rules = ResolveTokenRules(config, generation, tokenizer->get());
  std::vector<int32_t> want = {5, 7, 9};
  if ((*tokenizer)->eos_id() >= 0) want.push_back((*tokenizer)->eos_id());
  std::sort(want.begin(), want.end());
  want.erase(std::unique(want.begin(), want.end()), want.end());
  EXPECT_EQ(rules.stop_ids, want);
  EXPECT_TRUE(rules.IsStop(9));
  EXPECT_FALSE(rules.IsStop(8));
  EXPECT_EQ(rules.vocab_limit, (*tokenizer)->vocab_size());
  EXPECT_NE(rules.note.find("never sampled"), std::string::npos) << rules.note;

  config.vocab_size = (*tokenizer)->vocab_size();
  rules = ResolveTokenRules(config, generation, tokenizer->get());
  EXPECT_EQ(rules.vocab_limit, 0);
  EXPECT_TRUE(rules.note.empty()) << rules.note;
}

// ---- GenerateFull ----------------------------------------------------------

// Item 6: a Llama 3.1-style config.json list, and ids only in
// generation_config.json (Llama 3 Instruct): both must stop generation.
TEST(GenerateFull, StopsAtEveryEosIdOfConfigAndGenerationConfig) {
  TempDir free_dir;
  WriteCheckpoint(free_dir.path());
  Loaded free = Load(free_dir.path());
  GenerateParams run_on = Params(12);
  run_on.stop_at_eos = false;
  auto reference = GenerateFull(*free.model, *free.tokenizer, "abc", run_on);
  ASSERT_TRUE(reference.ok()) << reference.status();
  ASSERT_EQ(reference->ids.size(), 12u);
  // Stop at the 4th generated id (and at an unrelated one): generation ends
  // before the first of them, or of the tokenizer's own EOS.
  const int32_t stop = reference->ids[3];
  const int32_t other = (stop + 1) % free.tokenizer->vocab_size();
  size_t expected = 0;
  while (expected < reference->ids.size()) {
    const int32_t id = reference->ids[expected];
    if (id == stop || id == other || id == free.tokenizer->eos_id()) break;
    ++expected;
  }
  ASSERT_LE(expected, 3u);

  TempDir list_dir;  // config.json: "eos_token_id": [other, stop]
  WriteCheckpoint(list_dir.path(), 0, nullptr, {other, stop});
  Loaded list = Load(list_dir.path());
  auto stopped = GenerateFull(*list.model, *list.tokenizer, "abc", Params(12));
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(stopped->ids.size(), expected) << "config.json's eos list was ignored";

  TempDir gen_dir;  // ids only in generation_config.json
  WriteCheckpoint(gen_dir.path());
  WriteFile(gen_dir.path() / "generation_config.json",
            "{\"eos_token_id\": [" + std::to_string(other) + ", " + std::to_string(stop) + "]}");
  Loaded gen = Load(gen_dir.path());
  stopped = GenerateFull(*gen.model, *gen.tokenizer, "abc", Params(12));
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(stopped->ids.size(), expected) << "generation_config.json's eos ids were ignored";

  // Token ids only (no tokenizer) stop at the model's ids too.
  auto ids_only = GenerateFullIds(*gen.model, *gen.tokenizer->Encode("abc", true), Params(12), -1);
  ASSERT_TRUE(ids_only.ok()) << ids_only.status();
  EXPECT_EQ(ids_only->ids.size(), expected);
}

// Item 5: one NaN row of the LM head (so one NaN logit, not at id 0).
TEST(GenerateFull, NanLogitIsAnErrorGreedyAndSampled) {
  TempDir dir;
  WriteCheckpoint(dir.path(), 0, [](at::Tensor& head) { head[37].fill_(NAN); });
  Loaded l = Load(dir.path());
  for (float temperature : {0.0f, 1.0f}) {
    auto r = GenerateFull(*l.model, *l.tokenizer, "abc", Params(8, temperature));
    ASSERT_FALSE(r.ok()) << "temperature " << temperature << " generated "
                         << ::testing::PrintToString(r->ids);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("NaN"), std::string::npos) << r.status();
  }
}

// Item 7: a head with more rows than the tokenizer has ids (Qwen2.5 layout),
// made so that the extra rows win the argmax.
TEST(GenerateFull, NeverSamplesHeadRowsTheTokenizerCannotDecode) {
  TempDir dir;
  WriteCheckpoint(dir.path(), 64, [](at::Tensor& head) {
    const int64_t real = head.size(0) - 64;
    head.narrow(0, 0, real).mul_(0.01);
    head.narrow(0, real, 64).mul_(50.0);
  });
  Loaded l = Load(dir.path());
  const int32_t ids = l.tokenizer->vocab_size();
  // Without the mask the extra rows do win: the check below can fail.
  GenerateParams unmasked = Params(4);
  unmasked.sampling.vocab_limit = static_cast<int32_t>(l.model->config().vocab_size);
  auto raw = GenerateFullIds(*l.model, *l.tokenizer->Encode("abc", true), unmasked, -1);
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_GE(*std::max_element(raw->ids.begin(), raw->ids.end()), ids);

  for (float temperature : {0.0f, 1.0f}) {
    auto r = GenerateFull(*l.model, *l.tokenizer, "abc", Params(16, temperature));
    ASSERT_TRUE(r.ok()) << r.status();  // used to fail: "Decode: id ... is out of range"
    for (int32_t id : r->ids) EXPECT_LT(id, ids);
  }
}

}  // namespace
}  // namespace tandem
