// EncodePrompt: the prompt step both EdgeSession::Generate and
// CloudOnlySession::Generate go through.
#include "encode_prompt.h"

#include <stdexcept>

#include <gtest/gtest.h>

namespace tandem::edge {
namespace {

// Encodes "ok" as {1, 2} (with a leading 0 when add_special_tokens), refuses
// "bad" with its own error and throws on anything else.
class ScriptedTokenizer : public Tokenizer {
 public:
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens) const override {
    if (text == "bad") return absl::InvalidArgumentError("invalid UTF-8");
    if (text != "ok") throw std::runtime_error("tokenizer broke");
    if (add_special_tokens) return std::vector<int32_t>{0, 1, 2};
    return std::vector<int32_t>{1, 2};
  }
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t>, bool) const override {
    return std::string();
  }
  int32_t vocab_size() const override { return 3; }
  int32_t bos_id() const override { return 0; }
  int32_t eos_id() const override { return -1; }
  bool IsSpecial(int32_t id) const override { return id == 0; }
  int32_t TokenToId(std::string_view) const override { return -1; }
};

TEST(EncodePrompt, HonoursAddSpecialTokens) {
  ScriptedTokenizer tokenizer;
  GenerateOptions options;
  options.add_special_tokens = true;
  EXPECT_EQ(*EncodePrompt(tokenizer, "ok", options), (std::vector<int32_t>{0, 1, 2}));
  options.add_special_tokens = false;
  EXPECT_EQ(*EncodePrompt(tokenizer, "ok", options), (std::vector<int32_t>{1, 2}));
}

TEST(EncodePrompt, TheTokenizersErrorPassesThroughItsExceptionBecomesInternal) {
  ScriptedTokenizer tokenizer;
  EXPECT_EQ(EncodePrompt(tokenizer, "bad", GenerateOptions{}).status(),
            absl::InvalidArgumentError("invalid UTF-8"));
  EXPECT_EQ(EncodePrompt(tokenizer, "boom", GenerateOptions{}).status(),
            absl::InternalError("Generate: tokenizer broke"));
}

}  // namespace
}  // namespace tandem::edge
