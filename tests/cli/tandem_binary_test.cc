// The `tandem` CLI on broken input: a model producing NaN logits makes
// `generate` and `edge` fail with exit code 1 (they used to print the last id
// forever and exit 0: issue 14, item 5), and numeric flags are range-checked
// (item 8).
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "run_binary.h"
#include "tandem/model.h"
#include "tandem/tokenizer.h"
#include "testing/tiny_model.h"

namespace tandem::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kTokenizer[] = TANDEM_TEST_DATA_DIR "/tokenizer/tiny_bytelevel/tokenizer.json";

// An untied random model whose LM-head row 77 is NaN, with the tiny tokenizer.
void WriteNanModel(const fs::path& dir) {
  auto tokenizer = Tokenizer::Load(kTokenizer);
  ASSERT_TRUE(tokenizer.ok());
  ModelConfig config = TinyBiasConfig();
  config.vocab_size = (*tokenizer)->vocab_size();
  config.eos_token_ids = {};
  auto model = Model::CreateRandom(config, {}, 3);
  ASSERT_TRUE(model.ok());
  {
    at::NoGradGuard no_grad;
    for (auto& [name, t] : (*model)->NamedParameters()) {
      if (name == "lm_head.weight") t[77].fill_(NAN);
    }
  }
  ASSERT_TRUE((*model)->Save(dir.string()).ok());
  fs::copy_file(kTokenizer, dir / "tokenizer.json");
}

RunResult Tandem(std::vector<std::string> args) {
  args.insert(args.begin(), TANDEM_BINARY);
  return RunBinary(args, absl::Seconds(90));
}

TEST(TandemBinary, NanLogitsFailGenerateAndEdge) {
  TempDir dir;
  WriteNanModel(dir.path());
  const std::string model = dir.path().string();
  for (const char* temperature : {"0", "1"}) {
    SCOPED_TRACE(temperature);
    RunResult g = Tandem({"generate", "--model", model, "--prompt", "abc", "--max-new-tokens",
                          "8", "--temperature", temperature});
    ASSERT_TRUE(g.exited()) << g.err;
    EXPECT_EQ(g.exit_code, 1) << g.out << g.err;
    EXPECT_THAT(g.err, HasSubstr("NaN"));
    RunResult e = Tandem({"edge", "--model", model, "--prompt", "abc", "--split", "2",
                          "--fresh-heads", "--max-new-tokens", "8", "--temperature", temperature});
    ASSERT_TRUE(e.exited()) << e.err;
    EXPECT_EQ(e.exit_code, 1) << e.out << e.err;
    EXPECT_THAT(e.err, HasSubstr("NaN"));
  }
}

TEST(TandemBinary, NumericFlagsAreRangeChecked) {
  const std::string model = std::string(TANDEM_SOURCE_DIR) + "/models/tandem-tiny";
  const std::vector<std::vector<std::string>> cases = {
      {"generate", "--max-new-tokens", "4294967297"},
      {"generate", "--top-k", "-1"},
      {"generate", "--temperature", "nan"},
      {"generate", "--seed", "-5"},
      {"edge", "--threads", "99999999999"},
      {"edge", "--exits", "2,x"},
      {"edge", "--threshold", "4:inf"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c[1] + " " + c[2]);
    RunResult r = Tandem({c[0], "--model", model, "--prompt", "abc", c[1], c[2]});
    ASSERT_TRUE(r.exited()) << r.err;
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    const std::string typed = c[2] == "2,x" ? "x" : c[2] == "4:inf" ? "inf" : c[2];
    EXPECT_THAT(r.err, HasSubstr(typed));
  }
}

}  // namespace
}  // namespace tandem::testing
