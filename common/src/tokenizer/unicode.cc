#include "tokenizer/unicode.h"

#include <algorithm>

namespace tandem {
namespace tokenizer_internal {
namespace {

struct CategoryRange {
  char32_t first, last;
  uint8_t category;
};
struct WhiteSpaceRange {
  char32_t first, last;
};
struct CccRange {
  char32_t first, last;
  uint8_t ccc;
};
struct DecompositionEntry {
  char32_t cp;
  uint16_t offset;
  uint8_t length;
};
struct CompositionEntry {
  char32_t first, second, composite;
};

#include "tokenizer/unicode_tables.inc"

// Hangul syllable constants (Unicode ch. 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28;
constexpr int kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint8_t Ccc(char32_t cp) {
  if (cp < 0x300) return 0;
  auto it = std::upper_bound(std::begin(kCccRanges), std::end(kCccRanges), cp,
                             [](char32_t c, const CccRange& r) { return c < r.first; });
  if (it == std::begin(kCccRanges)) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

void Decompose(char32_t cp, std::u32string* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    int s = cp - kSBase;
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out->push_back(kTBase + s % kTCount);
    return;
  }
  if (cp >= 0xC0) {
    auto it = std::lower_bound(
        std::begin(kDecompositions), std::end(kDecompositions), cp,
        [](const DecompositionEntry& e, char32_t c) { return e.cp < c; });
    if (it != std::end(kDecompositions) && it->cp == cp) {
      for (int i = 0; i < it->length; ++i) Decompose(kDecompositionData[it->offset + i], out);
      return;
    }
  }
  out->push_back(cp);
}

// Returns the primary composite of (a, b) or 0.
char32_t Compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  auto it = std::lower_bound(std::begin(kCompositions), std::end(kCompositions),
                             std::make_pair(a, b),
                             [](const CompositionEntry& e, std::pair<char32_t, char32_t> k) {
                               return e.first != k.first ? e.first < k.first
                                                         : e.second < k.second;
                             });
  if (it != std::end(kCompositions) && it->first == a && it->second == b) return it->composite;
  return 0;
}

}  // namespace

UnicodeCategory GetCategory(char32_t cp) {
  auto it = std::upper_bound(std::begin(kCategoryRanges), std::end(kCategoryRanges), cp,
                             [](char32_t c, const CategoryRange& r) { return c < r.first; });
  if (it == std::begin(kCategoryRanges)) return kCn;
  --it;
  return cp <= it->last ? static_cast<UnicodeCategory>(it->category) : kCn;
}

bool IsWhiteSpace(char32_t cp) {
  for (const auto& r : kWhiteSpaceRanges) {
    if (cp < r.first) return false;
    if (cp <= r.last) return true;
  }
  return false;
}

const char* UnicodeVersion() { return kUnicodeVersion; }

int Utf8SeqLen(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

namespace {
// Length of the valid UTF-8 sequence at text[i], or 0 if invalid; when invalid
// `*maximal` gets the length of the maximal subpart (at least 1).
int ValidSeqAt(std::string_view text, size_t i, int* maximal) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t n = text.size();
  unsigned char c = s[i];
  *maximal = 1;
  if (c < 0x80) return 1;
  int len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (int k = 1; k < len; ++k) {
    if (i + k >= n) return 0;
    unsigned char b = s[i + k];
    unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return 0;
    *maximal = k + 1;
  }
  return len;
}
}  // namespace

bool IsValidUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    int m;
    int len = ValidSeqAt(text, i, &m);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string Utf8Lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    int m;
    int len = ValidSeqAt(bytes, i, &m);
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      i += m;
    } else {
      out.append(bytes.data() + i, len);
      i += len;
    }
  }
  return out;
}

std::u32string DecodeUtf8(std::string_view text, std::vector<size_t>* offsets) {
  std::u32string out;
  out.reserve(text.size());
  if (offsets) {
    offsets->clear();
    offsets->reserve(text.size() + 1);
  }
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < text.size();) {
    if (offsets) offsets->push_back(i);
    unsigned char c = s[i];
    char32_t cp;
    int len = Utf8SeqLen(c);
    if (i + len > text.size()) len = 1;
    switch (len) {
      case 1: cp = c; break;
      case 2: cp = ((c & 0x1F) << 6) | (s[i + 1] & 0x3F); break;
      case 3: cp = ((c & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F); break;
      default:
        cp = ((c & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) |
             (s[i + 3] & 0x3F);
    }
    out.push_back(cp);
    i += len;
  }
  if (offsets) offsets->push_back(text.size());
  return out;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string EncodeUtf8(std::u32string_view cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t cp : cps) AppendUtf8(cp, &out);
  return out;
}

std::string NormalizeNfc(std::string_view utf8) {
  // Fast path: text below U+0300 is already NFC (no decompositions compose
  // differently and there are no combining marks).
  bool simple = true;
  for (unsigned char c : utf8) {
    if (c >= 0xCC) {  // lead bytes of U+0300 and above
      simple = false;
      break;
    }
  }
  if (simple) return std::string(utf8);
  std::u32string cps = DecodeUtf8(utf8);
  std::u32string d;
  d.reserve(cps.size() + 8);
  for (char32_t cp : cps) Decompose(cp, &d);
  // Canonical ordering: stable sort of each run of non-starters by ccc.
  for (size_t i = 0; i < d.size();) {
    if (Ccc(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && Ccc(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j,
                     [](char32_t a, char32_t b) { return Ccc(a) < Ccc(b); });
    i = j;
  }
  // Canonical composition.
  std::u32string out;
  out.reserve(d.size());
  size_t starter = std::u32string::npos;
  int last_ccc = -1;
  for (char32_t cp : d) {
    int ccc = Ccc(cp);
    if (starter != std::u32string::npos && (last_ccc == -1 || (last_ccc != 0 && last_ccc < ccc))) {
      char32_t c = Compose(out[starter], cp);
      if (c != 0) {
        out[starter] = c;
        continue;
      }
    }
    if (ccc == 0) {
      starter = out.size();
      last_ccc = -1;
    } else {
      last_ccc = ccc;
    }
    out.push_back(cp);
  }
  return EncodeUtf8(out);
}

}  // namespace tokenizer_internal
}  // namespace tandem
