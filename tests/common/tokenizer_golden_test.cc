// Compares Tandem's tokenizer with golden ids and decoded text produced by the
// Hugging Face `tokenizers` library (tools/tokenizer_golden.js) on the tricky
// strings of tests/data/tokenizer/strings.json.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tandem/tokenizer.h"

namespace tandem {
namespace {

using nlohmann::json;

std::string DataDir() { return TANDEM_TEST_DATA_DIR "/tokenizer"; }

// Where a tokenizer's files live: the tiny ones are committed, the real ones
// are fetched by tools/fetch_test_data.sh.
std::string TokenizerDir(const std::string& name) {
  if (name.rfind("tiny_", 0) == 0) return DataDir() + "/" + name;
  return std::string(TANDEM_SOURCE_DIR) + "/third_party/npm/tokenizers/" + name;
}

bool Exists(const std::string& path) { return std::ifstream(path).good(); }

json ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

std::string Show(const std::string& s) {
  return json(s).dump();  // escapes control characters
}

class TokenizerGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerGoldenTest, MatchesHuggingFace) {
  const std::string name = GetParam();
  const std::string dir = TokenizerDir(name);
  if (!Exists(dir + "/tokenizer.json")) {
    GTEST_SKIP() << dir << "/tokenizer.json is missing; run tools/fetch_test_data.sh";
  }
  auto tok = Tokenizer::Load(dir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  json golden = ReadJson(DataDir() + "/golden_" + name + ".json");
  int passed = 0, total = 0;
  for (const json& c : golden.at("cases")) {
    ++total;
    const std::string text = c.at("text").get<std::string>();
    const auto want = c.at("ids").get<std::vector<int32_t>>();
    const auto want_plain = c.at("ids_no_special").get<std::vector<int32_t>>();
    auto ids = (*tok)->Encode(text, /*add_special_tokens=*/true);
    auto plain = (*tok)->Encode(text, /*add_special_tokens=*/false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    ASSERT_TRUE(plain.ok()) << plain.status();
    bool ok = true;
    EXPECT_EQ(*ids, want) << (ok = false, "ids of " + Show(text));
    EXPECT_EQ(*plain, want_plain) << (ok = false, "ids (no special) of " + Show(text));
    auto decoded = (*tok)->Decode(want, /*skip_special_tokens=*/false);
    auto decoded_skip = (*tok)->Decode(want, /*skip_special_tokens=*/true);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    ASSERT_TRUE(decoded_skip.ok()) << decoded_skip.status();
    EXPECT_EQ(*decoded, c.at("decoded").get<std::string>())
        << (ok = false, "decode of " + Show(text));
    EXPECT_EQ(*decoded_skip, c.at("decoded_skip_special").get<std::string>())
        << (ok = false, "decode (skip special) of " + Show(text));
    ok = ok && *ids == want && *plain == want_plain &&
         *decoded == c.at("decoded").get<std::string>() &&
         *decoded_skip == c.at("decoded_skip_special").get<std::string>();
    passed += ok;
  }
  std::cout << "[ golden   ] " << name << ": " << passed << "/" << total
            << " strings match Hugging Face exactly\n";
}

INSTANTIATE_TEST_SUITE_P(All, TokenizerGoldenTest,
                         ::testing::Values("tiny_bytelevel", "tiny_sp", "tiny_metaspace", "llama3",
                                           "qwen3", "llama2"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tandem
