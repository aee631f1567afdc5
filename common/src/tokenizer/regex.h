// A small backtracking regex engine for the pre-tokenizer patterns found in
// tokenizer.json files (GPT-2, GPT-4 cl100k/o200k style, Llama 3, Qwen2/3,
// DeepSeek...). It follows Oniguruma's leftmost-first semantics, which is what
// Hugging Face `tokenizers` uses, on code points.
//
// Supported: literals, `.`, escapes (\r \n \t \f \v \s \S \d \D \w \W \p{..}
// \P{..} with general categories, \xHH \x{H..} \uHHHH, escaped punctuation),
// classes [...] (ranges, negation, the escapes above), groups (...) (?:...),
// (?i:...) and (?i) (ASCII case folding plus U+017F/U+212A), lookahead (?=...)
// (?!...), alternation, and quantifiers ? * + {n} {n,} {n,m} (greedy, lazy `?`,
// possessive `+`). `*`, `+` and open-ended counts only apply to single-character
// atoms; anything else (backreferences, lookbehind, scripts, anchors, nested
// classes) is refused at compile time, so an unknown pattern never silently
// tokenizes differently.
//
// Thread-safety: immutable after Compile; FindAll may be called concurrently.
#ifndef TANDEM_COMMON_SRC_TOKENIZER_REGEX_H_
#define TANDEM_COMMON_SRC_TOKENIZER_REGEX_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem {
namespace tokenizer_internal {

class PretokRegex {
 public:
  static absl::StatusOr<std::unique_ptr<PretokRegex>> Compile(std::string_view pattern);
  ~PretokRegex();

  // Appends the [begin, end) code point ranges of successive non-overlapping,
  // non-empty matches in `text` (leftmost-first, as Oniguruma's find_iter).
  void FindAll(std::u32string_view text, std::vector<std::pair<size_t, size_t>>* out) const;

  // Exposed for tests: does the pattern match at `pos`, and where does it end.
  bool MatchAt(std::u32string_view text, size_t pos, size_t* end) const;

  struct Impl;

 private:
  explicit PretokRegex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tokenizer_internal
}  // namespace tandem

#endif  // TANDEM_COMMON_SRC_TOKENIZER_REGEX_H_
