// Unicode helpers for the tokenizer (no ICU): UTF-8 coding, general categories,
// White_Space and NFC. Tables come from tools/gen_unicode_tables.py.
// All functions are pure and thread-safe.
//
// Note: Debian's Abseil is built with its own absl::string_view (not an alias
// of std::string_view); AsAbsl converts for heterogeneous hash-map lookups.
#ifndef TANDEM_COMMON_SRC_TOKENIZER_UNICODE_H_
#define TANDEM_COMMON_SRC_TOKENIZER_UNICODE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"

namespace tandem {
namespace tokenizer_internal {

inline absl::string_view AsAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

// Mirrors CATEGORIES in tools/gen_unicode_tables.py.
enum UnicodeCategory : uint8_t {
  kCn, kLu, kLl, kLt, kLm, kLo, kMn, kMc, kMe, kNd, kNl, kNo,
  kPc, kPd, kPs, kPe, kPi, kPf, kPo, kSm, kSc, kSk, kSo, kZs,
  kZl, kZp, kCc, kCf, kCs, kCo,
};

UnicodeCategory GetCategory(char32_t cp);
bool IsWhiteSpace(char32_t cp);  // Unicode White_Space (= Rust/Oniguruma \s).
const char* UnicodeVersion();

// True if `text` is well-formed UTF-8 (no surrogates, no overlongs).
bool IsValidUtf8(std::string_view text);
// Decodes well-formed UTF-8 (check with IsValidUtf8 first). `offsets`, if
// given, receives the byte offset of each code point plus a final text.size().
std::u32string DecodeUtf8(std::string_view text, std::vector<size_t>* offsets = nullptr);
void AppendUtf8(char32_t cp, std::string* out);
std::string EncodeUtf8(std::u32string_view cps);
// Byte length of the UTF-8 sequence starting with `lead` (1 for invalid leads).
int Utf8SeqLen(unsigned char lead);
// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes U+FFFD.
std::string Utf8Lossy(std::string_view bytes);

// Unicode Normalization Form C.
std::string NormalizeNfc(std::string_view utf8);

}  // namespace tokenizer_internal
}  // namespace tandem

#endif  // TANDEM_COMMON_SRC_TOKENIZER_UNICODE_H_
