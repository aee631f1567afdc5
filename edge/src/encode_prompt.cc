#include "encode_prompt.h"

#include <exception>

#include "absl/strings/str_cat.h"

namespace tandem::edge {

absl::StatusOr<std::vector<int32_t>> EncodePrompt(const Tokenizer& tokenizer,
                                                  const std::string& prompt,
                                                  const GenerateOptions& options) {
  try {
    return tokenizer.Encode(prompt, options.add_special_tokens);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("Generate: ", e.what()));
  }
}

}  // namespace tandem::edge
