#include "tandem/model_config.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem {
namespace {

using ::testing::HasSubstr;

// config.json files as the model authors publish them on the Hugging Face Hub.

constexpr char kTinyLlama[] = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 5632,
  "max_position_embeddings": 2048,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 22,
  "num_key_value_heads": 4,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 10000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.35.0",
  "use_cache": true,
  "vocab_size": 32000
})";

constexpr char kLlama32_1BInstruct[] = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 8192,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 16,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

constexpr char kQwen2_0_5B[] = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151643,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 131072,
  "max_window_layers": 24,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 131072,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

constexpr char kMistral7B[] = R"({
  "architectures": ["MistralForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 32768,
  "model_type": "mistral",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "sliding_window": 4096,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.34.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
})";

constexpr char kSmolLM135M[] = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 0,
  "eos_token_id": 0,
  "hidden_act": "silu",
  "hidden_size": 576,
  "initializer_range": 0.02,
  "intermediate_size": 1536,
  "max_position_embeddings": 2048,
  "model_type": "llama",
  "num_attention_heads": 9,
  "num_hidden_layers": 30,
  "num_key_value_heads": 3,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 10000.0,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.42.3",
  "use_cache": true,
  "vocab_size": 49152
})";

// Parses `text` after applying `edit` to its JSON.
template <typename Edit>
absl::StatusOr<ModelConfig> ParseEdited(const char* text, Edit edit) {
  nlohmann::json j = nlohmann::json::parse(text);
  edit(j);
  return ModelConfig::FromJson(j.dump());
}

void ExpectError(const absl::StatusOr<ModelConfig>& c, const std::string& field) {
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(field));
}

void ExpectRoundTrip(const ModelConfig& c) {
  const std::string text = c.ToJson();
  absl::StatusOr<ModelConfig> back = ModelConfig::FromJson(text);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  EXPECT_EQ(*back, c) << text;
  EXPECT_EQ(back->Fingerprint(), c.Fingerprint());
}

TEST(ModelConfig, TinyLlama) {
  auto c = ModelConfig::FromJson(kTinyLlama);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->vocab_size, 32000);
  EXPECT_EQ(c->hidden_size, 2048);
  EXPECT_EQ(c->intermediate_size, 5632);
  EXPECT_EQ(c->num_hidden_layers, 22);
  EXPECT_EQ(c->num_attention_heads, 32);
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_EQ(c->kv_group_size(), 8);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_EQ(c->rope_scaling.type, "");
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_FALSE(c->attention_output_bias);
  EXPECT_FALSE(c->mlp_bias);
  EXPECT_EQ(c->sliding_window, 0);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  ExpectRoundTrip(*c);
}

TEST(ModelConfig, Llama32With1BLlama3RopeScalingAndTiedEmbeddings) {
  auto c = ModelConfig::FromJson(kLlama32_1BInstruct);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 128256);
  EXPECT_EQ(c->num_hidden_layers, 16);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->max_position_embeddings, 131072);
  EXPECT_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rope_scaling.type, "llama3");
  EXPECT_EQ(c->rope_scaling.factor, 32.0);
  EXPECT_EQ(c->rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(c->rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  ExpectRoundTrip(*c);
}

TEST(ModelConfig, Qwen2HasFixedQkvBiasAndTiedEmbeddings) {
  auto c = ModelConfig::FromJson(kQwen2_0_5B);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "qwen2");
  EXPECT_EQ(c->vocab_size, 151936);
  EXPECT_EQ(c->hidden_size, 896);
  EXPECT_EQ(c->num_attention_heads, 14);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_FALSE(c->attention_output_bias);
  EXPECT_FALSE(c->mlp_bias);
  EXPECT_EQ(c->sliding_window, 0);  // use_sliding_window is false
  ExpectRoundTrip(*c);
}

TEST(ModelConfig, Qwen2SlidingWindow) {
  // On every layer: honoured.
  auto all = ParseEdited(kQwen2_0_5B, [](nlohmann::json& j) {
    j["use_sliding_window"] = true;
    j["sliding_window"] = 4096;
    j["max_window_layers"] = 0;
  });
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->sliding_window, 4096);
  ExpectRoundTrip(*all);
  // max_window_layers >= layers: no layer is windowed.
  auto none = ParseEdited(kQwen2_0_5B, [](nlohmann::json& j) { j["use_sliding_window"] = true; });
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->sliding_window, 0);
  // Only some layers: not supported.
  ExpectError(ParseEdited(kQwen2_0_5B,
                          [](nlohmann::json& j) {
                            j["use_sliding_window"] = true;
                            j["max_window_layers"] = 12;
                          }),
              "max_window_layers");
}

TEST(ModelConfig, Mistral7B) {
  auto c = ModelConfig::FromJson(kMistral7B);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "mistral");
  EXPECT_EQ(c->intermediate_size, 14336);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->max_position_embeddings, 32768);
  EXPECT_EQ(c->sliding_window, 4096);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_FALSE(c->tie_word_embeddings);
  ExpectRoundTrip(*c);
  // v0.3 style: null window means unlimited.
  auto v3 = ParseEdited(kMistral7B, [](nlohmann::json& j) { j["sliding_window"] = nullptr; });
  ASSERT_TRUE(v3.ok()) << v3.status();
  EXPECT_EQ(v3->sliding_window, 0);
  ExpectRoundTrip(*v3);
}

TEST(ModelConfig, SmolLM) {
  auto c = ModelConfig::FromJson(kSmolLM135M);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 576);
  EXPECT_EQ(c->num_attention_heads, 9);
  EXPECT_EQ(c->num_key_value_heads, 3);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->num_hidden_layers, 30);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 0);
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>{0});
  ExpectRoundTrip(*c);
}

TEST(ModelConfig, DefaultsWhenFieldsAbsent) {
  auto c = ModelConfig::FromJson(R"({"model_type": "llama", "vocab_size": 100,
      "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
      "num_attention_heads": 4})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_EQ(c->bos_token_id, -1);
  EXPECT_TRUE(c->eos_token_ids.empty());
  EXPECT_EQ(c->torch_dtype, "float32");
  ExpectRoundTrip(*c);
}

TEST(ModelConfig, MissingModelTypeWithLlamaArchitecture) {
  auto c = ParseEdited(kTinyLlama, [](nlohmann::json& j) { j.erase("model_type"); });
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "llama");
  ExpectError(ParseEdited(kTinyLlama,
                          [](nlohmann::json& j) {
                            j.erase("model_type");
                            j["architectures"] = {"GPT2LMHeadModel"};
                          }),
              "model_type");
}

TEST(ModelConfig, LlamaAttentionBiasSetsQkvAndOutputBias) {
  auto c = ParseEdited(kTinyLlama, [](nlohmann::json& j) {
    j["attention_bias"] = true;
    j["mlp_bias"] = true;
  });
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->attention_bias);
  EXPECT_TRUE(c->attention_output_bias);
  EXPECT_TRUE(c->mlp_bias);
  ExpectRoundTrip(*c);
}

TEST(ModelConfig, ExplicitHeadDimMayDifferFromHiddenOverHeads) {
  auto c = ParseEdited(kTinyLlama, [](nlohmann::json& j) { j["head_dim"] = 128; });
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);
  ExpectRoundTrip(*c);
  ExpectError(ParseEdited(kTinyLlama, [](nlohmann::json& j) { j["head_dim"] = 63; }), "head_dim");
}

TEST(ModelConfig, LinearRopeScalingBothSpellings) {
  for (const char* key : {"type", "rope_type"}) {
    auto c = ParseEdited(kTinyLlama, [key](nlohmann::json& j) {
      j["rope_scaling"] = {{key, "linear"}, {"factor", 4.0}};
    });
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->rope_scaling.type, "linear");
    EXPECT_EQ(c->rope_scaling.factor, 4.0);
    ExpectRoundTrip(*c);
  }
}

TEST(ModelConfig, TransformersV5RopeParametersAndDtype) {
  auto c = ParseEdited(kLlama32_1BInstruct, [](nlohmann::json& j) {
    nlohmann::json rp = j["rope_scaling"];
    rp["rope_theta"] = 500000.0;
    j.erase("rope_scaling");
    j.erase("rope_theta");
    j["rope_parameters"] = rp;
    j.erase("torch_dtype");
    j["dtype"] = "bfloat16";
  });
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*c, *ModelConfig::FromJson(kLlama32_1BInstruct));
}

TEST(ModelConfig, ToJsonIsReadableByTransformers) {
  auto c = ModelConfig::FromJson(kQwen2_0_5B);
  ASSERT_TRUE(c.ok());
  nlohmann::json j = nlohmann::json::parse(c->ToJson());
  EXPECT_EQ(j["architectures"], nlohmann::json({"Qwen2ForCausalLM"}));
  EXPECT_EQ(j["model_type"], "qwen2");
  EXPECT_EQ(j["hidden_act"], "silu");
  EXPECT_EQ(j["tie_word_embeddings"], true);
  auto m = ModelConfig::FromJson(kMistral7B);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(nlohmann::json::parse(m->ToJson())["architectures"],
            nlohmann::json({"MistralForCausalLM"}));
  auto l = ModelConfig::FromJson(kLlama32_1BInstruct);
  ASSERT_TRUE(l.ok());
  nlohmann::json lj = nlohmann::json::parse(l->ToJson());
  EXPECT_EQ(lj["architectures"], nlohmann::json({"LlamaForCausalLM"}));
  EXPECT_EQ(lj["rope_scaling"]["rope_type"], "llama3");
}

TEST(ModelConfig, FingerprintIgnoresDtypeButNotArchitecture) {
  auto a = ModelConfig::FromJson(kTinyLlama);
  ASSERT_TRUE(a.ok());
  ModelConfig b = *a;
  b.torch_dtype = "float32";
  EXPECT_EQ(a->Fingerprint(), b.Fingerprint());
  b.num_hidden_layers = 21;
  EXPECT_NE(a->Fingerprint(), b.Fingerprint());
  b = *a;
  b.rope_theta = 10000.000001;
  EXPECT_NE(a->Fingerprint(), b.Fingerprint());
  b = *a;
  b.tie_word_embeddings = true;
  EXPECT_NE(a->Fingerprint(), b.Fingerprint());
  // Stable across runs, builds and platforms: the value is pinned. If this
  // changes on purpose, edge and cloud of different versions stop matching.
  EXPECT_EQ(a->Fingerprint(), 0x0d2e6b8d9cff3265ULL);
  EXPECT_NE(a->Fingerprint(), ModelConfig::FromJson(kSmolLM135M)->Fingerprint());
}

TEST(ModelConfig, FromFile) {
  std::string tmpl = (std::filesystem::path(::testing::TempDir()) / "tandem_cfg_XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::string path = tmpl + "/config.json";
  {
    std::ofstream out(path);
    out << kSmolLM135M;
  }
  auto c = ModelConfig::FromFile(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 576);
  auto missing = ModelConfig::FromFile(tmpl + "/nope.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  {
    std::ofstream out(path);
    out << R"({"model_type": "gpt2"})";
  }
  auto bad = ModelConfig::FromFile(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr(path));
  std::filesystem::remove_all(tmpl);
}

// --- errors -------------------------------------------------------------------

TEST(ModelConfigErrors, UnknownModelType) {
  for (const char* type : {"gpt2", "qwen3", "gemma"}) {
    ExpectError(ParseEdited(kTinyLlama, [type](nlohmann::json& j) { j["model_type"] = type; }),
                "model_type");
  }
}

TEST(ModelConfigErrors, HiddenActGelu) {
  ExpectError(ParseEdited(kTinyLlama, [](nlohmann::json& j) { j["hidden_act"] = "gelu"; }),
              "hidden_act");
}

TEST(ModelConfigErrors, HeadsNotDividingHiddenSize) {
  ExpectError(ParseEdited(kTinyLlama, [](nlohmann::json& j) { j["num_attention_heads"] = 30; }),
              "num_attention_heads");
}

TEST(ModelConfigErrors, KvHeadsNotDividingHeads) {
  ExpectError(ParseEdited(kTinyLlama, [](nlohmann::json& j) { j["num_key_value_heads"] = 5; }),
              "num_key_value_heads");
}

TEST(ModelConfigErrors, MissingHiddenSize) {
  ExpectError(ParseEdited(kTinyLlama, [](nlohmann::json& j) { j.erase("hidden_size"); }),
              "hidden_size");
}

TEST(ModelConfigErrors, NonPositiveOrWrongTypeSizes) {
  ExpectError(ParseEdited(kTinyLlama, [](nlohmann::json& j) { j["vocab_size"] = 0; }),
              "vocab_size");
  ExpectError(ParseEdited(kTinyLlama, [](nlohmann::json& j) { j["num_hidden_layers"] = -3; }),
              "num_hidden_layers");
  ExpectError(ParseEdited(kTinyLlama, [](nlohmann::json& j) { j["intermediate_size"] = "big"; }),
              "intermediate_size");
  ExpectError(ParseEdited(kTinyLlama, [](nlohmann::json& j) { j["hidden_size"] = 2048.5; }),
              "hidden_size");
  ExpectError(ParseEdited(kTinyLlama, [](nlohmann::json& j) { j["rms_norm_eps"] = 0; }),
              "rms_norm_eps");
  ExpectError(ParseEdited(kTinyLlama, [](nlohmann::json& j) { j["tie_word_embeddings"] = 1; }),
              "tie_word_embeddings");
  ExpectError(ParseEdited(kTinyLlama,
                          [](nlohmann::json& j) {
                            j["eos_token_id"] = {1, "x"};
                          }),
              "eos_token_id");
}

TEST(ModelConfigErrors, YarnRopeScaling) {
  ExpectError(ParseEdited(kTinyLlama,
                          [](nlohmann::json& j) {
                            j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
                          }),
              "yarn");
  ExpectError(ParseEdited(kTinyLlama,
                          [](nlohmann::json& j) {
                            j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
                          }),
              "rope_scaling.type");
}

TEST(ModelConfigErrors, IncompleteLlama3RopeScaling) {
  ExpectError(ParseEdited(kLlama32_1BInstruct,
                          [](nlohmann::json& j) { j["rope_scaling"].erase("low_freq_factor"); }),
              "rope_scaling.low_freq_factor");
}

TEST(ModelConfigErrors, NotJsonOrNotObject) {
  EXPECT_EQ(ModelConfig::FromJson("{").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ModelConfig::FromJson("[]").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ModelConfig::FromJson("").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tandem
