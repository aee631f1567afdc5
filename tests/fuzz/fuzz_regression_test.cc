// Replays every committed fuzz input (tests/fuzz/corpus/<target>/: seeds and
// the inputs that once crashed a target) through its target, in the normal
// test suite — and under AddressSanitizer in `make asan-test`. A failure here
// is a crash, a sanitizer report or a target's own invariant check.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fuzz_target.h"

namespace tandem::fuzz {
namespace {

namespace fs = std::filesystem;

const fs::path kCorpus = fs::path(TANDEM_SOURCE_DIR) / "tests/fuzz/corpus";

class FuzzRegression : public ::testing::TestWithParam<std::string> {};

TEST_P(FuzzRegression, EveryCommittedInputRuns) {
  const std::string& name = GetParam();
  auto it = Registry().find(name);
  ASSERT_NE(it, Registry().end()) << "no target " << name;
  const fs::path dir = kCorpus / name;
  ASSERT_TRUE(fs::is_directory(dir)) << dir << ": every target needs at least a seed";
  int inputs = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    SCOPED_TRACE(entry.path().string());
    EXPECT_EQ(it->second(bytes.data(), bytes.size()), 0);
    ++inputs;
  }
  EXPECT_GT(inputs, 0) << dir;
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzRegression,
                         ::testing::Values("codec_decode", "model_config", "safetensors",
                                           "session_messages", "spm_model", "tokenizer_json"));

TEST(FuzzRegression, EveryTargetIsReplayed) {
  EXPECT_EQ(Registry().size(), 6u) << "a new target needs a line in INSTANTIATE_TEST_SUITE_P";
}

}  // namespace
}  // namespace tandem::fuzz
