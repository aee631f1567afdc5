// tokenizer.json support. The pipeline mirrors Hugging Face `tokenizers`
// (tokenizer/mod.rs, added_vocabulary.rs): split out added tokens that are not
// normalized -> normalize the rest -> split out normalized added tokens ->
// pre-tokenize -> BPE per pre-token -> post-process. Each component is
// implemented only for the variants real checkpoints use; anything else is
// refused at load time with an error that names it.
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tandem/status_macros.h"
#include "tokenizer/bpe.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace tandem {
namespace tokenizer_internal {
namespace {

using json = nlohmann::json;

// The GPT-2 pattern HF's ByteLevel pre-tokenizer applies when use_regex is set.
constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// GPT-2's reversible byte <-> printable character map.
struct ByteMap {
  std::array<std::string, 256> byte_to_utf8;
  absl::flat_hash_map<char32_t, uint8_t> char_to_byte;
  ByteMap() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      char32_t cp = printable ? b : 256 + n++;
      AppendUtf8(cp, &byte_to_utf8[b]);
      char_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};
const ByteMap& GetByteMap() {
  static const ByteMap* map = new ByteMap();
  return *map;
}

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

absl::StatusOr<Behavior> ParseBehavior(const std::string& s) {
  if (s == "Removed") return Behavior::kRemoved;
  if (s == "Isolated") return Behavior::kIsolated;
  if (s == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::kMergedWithNext;
  if (s == "Contiguous") return Behavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat("unknown Split behavior ", s));
}

struct Piece {
  std::string text;
  bool at_origin;  // starts at offset 0 of the original input (Metaspace "first")
};

using Ranges = std::vector<std::pair<size_t, size_t>>;

// HF NormalizedString::split: `matches` (byte ranges) cut `piece`; the pieces
// kept and merged according to `behavior`.
void SplitPiece(const Piece& piece, const Ranges& matches, Behavior behavior, bool invert,
                std::vector<Piece>* out) {
  struct Part {
    size_t begin, end;
    bool is_match;
  };
  std::vector<Part> parts;
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) parts.push_back({prev, b, false});
    parts.push_back({b, e, true});
    prev = e;
  }
  if (prev != piece.text.size()) parts.push_back({prev, piece.text.size(), false});
  if (invert) {
    for (Part& p : parts) p.is_match = !p.is_match;
  }
  std::vector<std::pair<size_t, size_t>> kept;
  bool previous_match = false;
  switch (behavior) {
    case Behavior::kRemoved:
      for (const Part& p : parts) {
        if (!p.is_match) kept.emplace_back(p.begin, p.end);
      }
      break;
    case Behavior::kIsolated:
      for (const Part& p : parts) kept.emplace_back(p.begin, p.end);
      break;
    case Behavior::kMergedWithPrevious:
      for (const Part& p : parts) {
        if (p.is_match && !previous_match && !kept.empty()) {
          kept.back().second = p.end;
        } else {
          kept.emplace_back(p.begin, p.end);
        }
        previous_match = p.is_match;
      }
      break;
    case Behavior::kMergedWithNext:
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->is_match && !previous_match && !kept.empty()) {
          kept.back().first = it->begin;
        } else {
          kept.emplace_back(it->begin, it->end);
        }
        previous_match = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    case Behavior::kContiguous:
      for (const Part& p : parts) {
        if (p.is_match == previous_match && !kept.empty()) {
          kept.back().second = p.end;
        } else {
          kept.emplace_back(p.begin, p.end);
        }
        previous_match = p.is_match;
      }
      break;
  }
  for (const auto& [b, e] : kept) {
    if (b == e) continue;
    out->push_back(Piece{piece.text.substr(b, e - b), piece.at_origin && b == 0});
  }
}

// Byte ranges of regex matches in `text`.
Ranges RegexMatches(const PretokRegex& re, std::string_view text) {
  std::vector<size_t> offsets;
  std::u32string cps = DecodeUtf8(text, &offsets);
  Ranges cp_ranges;
  re.FindAll(cps, &cp_ranges);
  for (auto& [b, e] : cp_ranges) {
    b = offsets[b];
    e = offsets[e];
  }
  return cp_ranges;
}

Ranges LiteralMatches(std::string_view text, std::string_view needle) {
  Ranges out;
  if (needle.empty()) return out;
  for (size_t pos = text.find(needle); pos != std::string_view::npos;
       pos = text.find(needle, pos + needle.size())) {
    out.emplace_back(pos, pos + needle.size());
  }
  return out;
}

std::string ReplaceAll(std::string_view text, const Ranges& matches, std::string_view with) {
  std::string out;
  out.reserve(text.size());
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    out.append(text.substr(prev, b - prev));
    out.append(with);
    prev = e;
  }
  out.append(text.substr(prev));
  return out;
}

// A "pattern" object of HF: {"String": s} or {"Regex": r}.
struct Pattern {
  std::string literal;
  std::unique_ptr<PretokRegex> regex;

  static absl::StatusOr<Pattern> Parse(const json& j) {
    Pattern p;
    if (j.contains("String")) {
      p.literal = j.at("String").get<std::string>();
    } else if (j.contains("Regex")) {
      TANDEM_ASSIGN_OR_RETURN(p.regex, PretokRegex::Compile(j.at("Regex").get<std::string>()));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown pattern ", j.dump()));
    }
    return p;
  }
  Ranges Find(std::string_view text) const {
    return regex ? RegexMatches(*regex, text) : LiteralMatches(text, literal);
  }
};

// ---- Normalizers ---------------------------------------------------------------

struct Normalizer {
  enum Kind { kNfc, kPrepend, kReplace, kStrip } kind;
  std::string text;  // kPrepend: prefix; kReplace: content
  Pattern pattern;   // kReplace
  bool strip_left = false, strip_right = false;

  std::string Apply(std::string s) const {
    switch (kind) {
      case kNfc:
        return NormalizeNfc(s);
      case kPrepend:
        return s.empty() ? s : text + s;
      case kReplace:
        return ReplaceAll(s, pattern.Find(s), text);
      case kStrip: {
        std::vector<size_t> off;
        std::u32string cps = DecodeUtf8(s, &off);
        size_t b = 0, e = cps.size();
        if (strip_left) {
          while (b < e && IsWhiteSpace(cps[b])) ++b;
        }
        if (strip_right) {
          while (e > b && IsWhiteSpace(cps[e - 1])) --e;
        }
        return s.substr(off[b], off[e] - off[b]);
      }
    }
    return s;
  }
};

absl::Status ParseNormalizer(const json& j, std::vector<Normalizer>* out) {
  if (j.is_null()) return absl::OkStatus();
  std::string type = j.at("type").get<std::string>();
  Normalizer n;
  if (type == "Sequence") {
    for (const json& c : j.at("normalizers")) TANDEM_RETURN_IF_ERROR(ParseNormalizer(c, out));
    return absl::OkStatus();
  } else if (type == "NFC") {
    n.kind = Normalizer::kNfc;
  } else if (type == "Prepend") {
    n.kind = Normalizer::kPrepend;
    n.text = j.at("prepend").get<std::string>();
  } else if (type == "Replace") {
    n.kind = Normalizer::kReplace;
    TANDEM_ASSIGN_OR_RETURN(n.pattern, Pattern::Parse(j.at("pattern")));
    n.text = j.at("content").get<std::string>();
  } else if (type == "Strip") {
    n.kind = Normalizer::kStrip;
    n.strip_left = j.value("strip_left", true);
    n.strip_right = j.value("strip_right", true);
  } else {
    return absl::UnimplementedError(absl::StrCat("unsupported normalizer type ", type));
  }
  out->push_back(std::move(n));
  return absl::OkStatus();
}

// ---- Pre-tokenizers ------------------------------------------------------------

enum class PrependScheme { kAlways, kFirst, kNever };

absl::StatusOr<PrependScheme> ParsePrependScheme(const json& j) {
  if (j.contains("prepend_scheme")) {
    std::string s = j.at("prepend_scheme").get<std::string>();
    if (s == "always") return PrependScheme::kAlways;
    if (s == "first") return PrependScheme::kFirst;
    if (s == "never") return PrependScheme::kNever;
    return absl::InvalidArgumentError(absl::StrCat("unknown prepend_scheme ", s));
  }
  // Files older than tokenizers 0.14 use add_prefix_space.
  return j.value("add_prefix_space", true) ? PrependScheme::kAlways : PrependScheme::kNever;
}

struct PreTokenizer {
  enum Kind { kSplit, kByteLevel, kMetaspace } kind;
  Pattern pattern;
  Behavior behavior = Behavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;
  std::unique_ptr<PretokRegex> byte_level_regex;  // null: use_regex false
  std::string replacement;
  PrependScheme prepend_scheme = PrependScheme::kAlways;
  bool metaspace_split = true;

  void Apply(std::vector<Piece>* pieces) const {
    std::vector<Piece> out;
    out.reserve(pieces->size() * 2);
    for (Piece& p : *pieces) {
      switch (kind) {
        case kSplit:
          SplitPiece(p, pattern.Find(p.text), behavior, invert, &out);
          break;
        case kByteLevel: {
          if (add_prefix_space && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, " ");
          size_t first = out.size();
          if (byte_level_regex) {
            SplitPiece(p, RegexMatches(*byte_level_regex, p.text), Behavior::kIsolated, false,
                       &out);
          } else if (!p.text.empty()) {
            out.push_back(std::move(p));
          }
          const ByteMap& map = GetByteMap();
          for (size_t i = first; i < out.size(); ++i) {
            std::string mapped;
            mapped.reserve(out[i].text.size() * 2);
            for (unsigned char c : out[i].text) mapped += map.byte_to_utf8[c];
            out[i].text = std::move(mapped);
          }
          break;
        }
        case kMetaspace: {
          p.text = ReplaceAll(p.text, LiteralMatches(p.text, " "), replacement);
          bool starts = p.text.compare(0, replacement.size(), replacement) == 0;
          if (!starts && (prepend_scheme == PrependScheme::kAlways ||
                          (prepend_scheme == PrependScheme::kFirst && p.at_origin))) {
            p.text.insert(0, replacement);
          }
          if (metaspace_split) {
            SplitPiece(p, LiteralMatches(p.text, replacement), Behavior::kMergedWithNext, false,
                       &out);
          } else if (!p.text.empty()) {
            out.push_back(std::move(p));
          }
          break;
        }
      }
    }
    *pieces = std::move(out);
  }
};

absl::StatusOr<PreTokenizer> MakeRegexSplit(const char* regex, Behavior behavior, bool invert) {
  PreTokenizer p;
  p.kind = PreTokenizer::kSplit;
  TANDEM_ASSIGN_OR_RETURN(p.pattern.regex, PretokRegex::Compile(regex));
  p.behavior = behavior;
  p.invert = invert;
  return p;
}

absl::Status ParsePreTokenizer(const json& j, std::vector<PreTokenizer>* out) {
  if (j.is_null()) return absl::OkStatus();
  std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const json& c : j.at("pretokenizers")) TANDEM_RETURN_IF_ERROR(ParsePreTokenizer(c, out));
    return absl::OkStatus();
  }
  PreTokenizer p;
  if (type == "Split") {
    p.kind = PreTokenizer::kSplit;
    TANDEM_ASSIGN_OR_RETURN(p.pattern, Pattern::Parse(j.at("pattern")));
    TANDEM_ASSIGN_OR_RETURN(p.behavior, ParseBehavior(j.at("behavior").get<std::string>()));
    p.invert = j.value("invert", false);
  } else if (type == "ByteLevel") {
    p.kind = PreTokenizer::kByteLevel;
    p.add_prefix_space = j.value("add_prefix_space", true);
    if (j.value("use_regex", true)) {
      TANDEM_ASSIGN_OR_RETURN(p.byte_level_regex, PretokRegex::Compile(kGpt2Pattern));
    }
  } else if (type == "Metaspace") {
    p.kind = PreTokenizer::kMetaspace;
    p.replacement = j.value("replacement", std::string("\xE2\x96\x81"));
    TANDEM_ASSIGN_OR_RETURN(p.prepend_scheme, ParsePrependScheme(j));
    p.metaspace_split = j.value("split", true);
  } else if (type == "Digits") {
    TANDEM_ASSIGN_OR_RETURN(
        p, MakeRegexSplit("\\p{N}",
                          j.value("individual_digits", false) ? Behavior::kIsolated
                                                               : Behavior::kContiguous,
                          false));
  } else if (type == "Whitespace") {
    TANDEM_ASSIGN_OR_RETURN(p, MakeRegexSplit("\\w+|[^\\w\\s]+", Behavior::kRemoved, true));
  } else if (type == "WhitespaceSplit") {
    TANDEM_ASSIGN_OR_RETURN(p, MakeRegexSplit("\\s", Behavior::kRemoved, false));
  } else {
    return absl::UnimplementedError(absl::StrCat("unsupported pre_tokenizer type ", type));
  }
  out->push_back(std::move(p));
  return absl::OkStatus();
}

// ---- Decoders ------------------------------------------------------------------

struct Decoder {
  enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind;
  std::string from, to;  // kReplace (literal pattern); kMetaspace: from = replacement
  std::string strip_content;
  int strip_start = 0, strip_stop = 0;
  bool metaspace_prepend = true;

  void Apply(std::vector<std::string>* tokens) const {
    switch (kind) {
      case kByteLevel: {
        const ByteMap& map = GetByteMap();
        std::string bytes;
        for (const std::string& t : *tokens) {
          std::u32string cps = DecodeUtf8(t);
          std::string tb;
          bool all = true;
          for (char32_t c : cps) {
            auto it = map.char_to_byte.find(c);
            if (it == map.char_to_byte.end()) {
              all = false;
              break;
            }
            tb.push_back(static_cast<char>(it->second));
          }
          bytes += all ? tb : t;
        }
        *tokens = {Utf8Lossy(bytes)};
        break;
      }
      case kReplace:
        for (std::string& t : *tokens) t = ReplaceAll(t, LiteralMatches(t, from), to);
        break;
      case kByteFallback: {
        std::vector<std::string> out;
        std::string pending;
        int pending_count = 0;
        auto flush = [&]() {
          if (pending_count == 0) return;
          if (IsValidUtf8(pending)) {
            out.push_back(pending);
          } else {
            for (int i = 0; i < pending_count; ++i) out.push_back("\xEF\xBF\xBD");
          }
          pending.clear();
          pending_count = 0;
        };
        for (std::string& t : *tokens) {
          if (t.size() == 6 && t[0] == '<' && t[1] == '0' && t[2] == 'x' && t[5] == '>' &&
              isxdigit(static_cast<unsigned char>(t[3])) &&
              isxdigit(static_cast<unsigned char>(t[4]))) {
            pending.push_back(static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16)));
            ++pending_count;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        *tokens = std::move(out);
        break;
      }
      case kFuse:
        *tokens = {absl::StrJoin(*tokens, "")};
        break;
      case kStrip:
        for (std::string& t : *tokens) {
          size_t n = strip_content.size();
          int cut = 0;
          while (cut < strip_start && (cut + 1) * n <= t.size() &&
                 t.compare(cut * n, n, strip_content) == 0)
            ++cut;
          size_t begin = cut * n;
          size_t end = t.size();
          for (int k = 0; k < strip_stop && end >= begin + n &&
                          t.compare(end - n, n, strip_content) == 0;
               ++k)
            end -= n;
          t = t.substr(begin, end - begin);
        }
        break;
      case kMetaspace:
        for (size_t i = 0; i < tokens->size(); ++i) {
          std::string& t = (*tokens)[i];
          t = ReplaceAll(t, LiteralMatches(t, from), (i == 0 && metaspace_prepend) ? "" : " ");
        }
        break;
    }
  }
};

absl::Status ParseDecoder(const json& j, std::vector<Decoder>* out) {
  if (j.is_null()) return absl::OkStatus();
  std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const json& c : j.at("decoders")) TANDEM_RETURN_IF_ERROR(ParseDecoder(c, out));
    return absl::OkStatus();
  }
  Decoder d;
  if (type == "ByteLevel") {
    d.kind = Decoder::kByteLevel;
  } else if (type == "Replace") {
    d.kind = Decoder::kReplace;
    const json& pat = j.at("pattern");
    if (!pat.contains("String")) {
      return absl::UnimplementedError("Replace decoder with a regex pattern is not supported");
    }
    d.from = pat.at("String").get<std::string>();
    d.to = j.at("content").get<std::string>();
  } else if (type == "ByteFallback") {
    d.kind = Decoder::kByteFallback;
  } else if (type == "Fuse") {
    d.kind = Decoder::kFuse;
  } else if (type == "Strip") {
    d.kind = Decoder::kStrip;
    d.strip_content = j.at("content").get<std::string>();
    d.strip_start = j.value("start", 0);
    d.strip_stop = j.value("stop", 0);
  } else if (type == "Metaspace") {
    d.kind = Decoder::kMetaspace;
    d.from = j.value("replacement", std::string("\xE2\x96\x81"));
    TANDEM_ASSIGN_OR_RETURN(PrependScheme scheme, ParsePrependScheme(j));
    d.metaspace_prepend = scheme != PrependScheme::kNever;
  } else {
    return absl::UnimplementedError(absl::StrCat("unsupported decoder type ", type));
  }
  out->push_back(std::move(d));
  return absl::OkStatus();
}

// ---- Added tokens --------------------------------------------------------------

struct AddedToken {
  int32_t id;
  std::string content;
  bool special, lstrip, rstrip, single_word, normalized;
};

bool IsWordChar(char32_t c) {
  if (c == '_') return true;
  switch (GetCategory(c)) {
    case kLu: case kLl: case kLt: case kLm: case kLo: case kMn: case kMc: case kMe:
    case kNd: case kNl: case kPc:
      return true;
    default:
      return false;
  }
}

// Leftmost-longest matching of a set of strings (HF uses aho-corasick with
// MatchKind::LeftmostLongest), then HF's lstrip/rstrip/single_word rules.
class AddedTokenMatcher {
 public:
  struct Segment {
    size_t begin, end;
    int32_t id;  // -1: plain text
  };

  void Add(std::string_view pattern, const AddedToken* token) {
    if (pattern.empty()) return;
    int node = 0;
    for (unsigned char c : pattern) {
      uint64_t key = (static_cast<uint64_t>(node) << 8) | c;
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        terminal_.push_back(nullptr);
        it = edges_.emplace(key, static_cast<int>(terminal_.size()) - 1).first;
      }
      node = it->second;
    }
    if (terminal_[node] == nullptr) terminal_[node] = token;  // first definition wins
    first_byte_[static_cast<unsigned char>(pattern[0])] = true;
  }
  bool empty() const { return edges_.empty(); }

  std::vector<Segment> Split(std::string_view text) const {
    std::vector<Segment> out;
    size_t start_offset = 0;
    for (size_t i = 0; i < text.size();) {
      if (!first_byte_[static_cast<unsigned char>(text[i])]) {
        ++i;
        continue;
      }
      int node = 0;
      const AddedToken* best = nullptr;
      size_t best_end = 0;
      for (size_t j = i; j < text.size(); ++j) {
        auto it = edges_.find((static_cast<uint64_t>(node) << 8) |
                              static_cast<unsigned char>(text[j]));
        if (it == edges_.end()) break;
        node = it->second;
        if (terminal_[node]) {
          best = terminal_[node];
          best_end = j + 1;
        }
      }
      if (!best) {
        ++i;
        continue;
      }
      size_t start = i, stop = best_end;
      i = best_end;
      if (best->single_word) {
        bool start_space = start == 0 || !EndsWithWord(text.substr(0, start));
        bool stop_space = stop == text.size() || !StartsWithWord(text.substr(stop));
        if (!start_space || !stop_space) continue;
      }
      if (best->lstrip) {
        start = std::max(SpaceLeftmostAtEnd(text.substr(0, start)), start_offset);
      }
      if (best->rstrip) stop += SpaceRightmostAtStart(text.substr(stop));
      if (start_offset < start) out.push_back({start_offset, start, -1});
      out.push_back({start, stop, best->id});
      start_offset = stop;
      i = std::max(i, stop);
    }
    if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
    return out;
  }

 private:
  static bool EndsWithWord(std::string_view s) {
    std::u32string cps = DecodeUtf8(s.substr(s.size() > 4 ? LastCharStart(s) : 0));
    return !cps.empty() && IsWordChar(cps.back());
  }
  static bool StartsWithWord(std::string_view s) {
    if (s.empty()) return false;
    size_t len = std::min<size_t>(Utf8SeqLen(static_cast<unsigned char>(s[0])), s.size());
    std::u32string cps = DecodeUtf8(s.substr(0, len));
    return !cps.empty() && IsWordChar(cps[0]);
  }
  static size_t LastCharStart(std::string_view s) {
    size_t i = s.size() - 1;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
    return i;
  }
  static size_t SpaceLeftmostAtEnd(std::string_view s) {
    std::vector<size_t> off;
    std::u32string cps = DecodeUtf8(s, &off);
    size_t k = cps.size();
    while (k > 0 && IsWhiteSpace(cps[k - 1])) --k;
    return off[k];
  }
  static size_t SpaceRightmostAtStart(std::string_view s) {
    std::vector<size_t> off;
    std::u32string cps = DecodeUtf8(s, &off);
    size_t k = 0;
    while (k < cps.size() && IsWhiteSpace(cps[k])) ++k;
    return off[k];
  }

  absl::flat_hash_map<uint64_t, int> edges_;
  std::vector<const AddedToken*> terminal_{nullptr};  // node 0 is the root
  std::array<bool, 256> first_byte_{};
};

// ---- Post-processor -------------------------------------------------------------

struct TemplateItem {
  bool is_sequence;
  std::vector<int32_t> ids;
};

absl::Status ParsePostProcessor(const json& j, std::vector<std::vector<TemplateItem>>* out) {
  if (j.is_null()) return absl::OkStatus();
  std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const json& c : j.at("processors")) TANDEM_RETURN_IF_ERROR(ParsePostProcessor(c, out));
    return absl::OkStatus();
  }
  if (type == "ByteLevel") return absl::OkStatus();  // only adjusts offsets
  std::vector<TemplateItem> tmpl;
  if (type == "TemplateProcessing") {
    const json& special = j.at("special_tokens");
    for (const json& item : j.at("single")) {
      if (item.contains("Sequence")) {
        if (item.at("Sequence").at("id").get<std::string>() != "A") {
          return absl::InvalidArgumentError("TemplateProcessing single template uses sequence B");
        }
        tmpl.push_back({true, {}});
      } else if (item.contains("SpecialToken")) {
        std::string name = item.at("SpecialToken").at("id").get<std::string>();
        if (!special.contains(name)) {
          return absl::InvalidArgumentError(
              absl::StrCat("TemplateProcessing refers to undefined special token ", name));
        }
        tmpl.push_back({false, special.at(name).at("ids").get<std::vector<int32_t>>()});
      } else {
        return absl::InvalidArgumentError(absl::StrCat("bad template item ", item.dump()));
      }
    }
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    tmpl.push_back({false, {j.at("cls").at(1).get<int32_t>()}});
    tmpl.push_back({true, {}});
    tmpl.push_back({false, {j.at("sep").at(1).get<int32_t>()}});
  } else {
    return absl::UnimplementedError(absl::StrCat("unsupported post_processor type ", type));
  }
  out->push_back(std::move(tmpl));
  return absl::OkStatus();
}

// ---- The tokenizer ---------------------------------------------------------------

class HfTokenizer : public Tokenizer {
 public:
  absl::Status Init(const json& j, const json& config);

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special_tokens) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(id_to_token_.size()); }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  bool IsSpecial(int32_t id) const override {
    return id >= 0 && static_cast<size_t>(id) < special_.size() && special_[id];
  }
  int32_t TokenToId(std::string_view token) const override {
    auto it = added_by_content_.find(AsAbsl(token));
    if (it != added_by_content_.end()) return it->second;
    auto v = model_->vocab().find(AsAbsl(token));
    return v == model_->vocab().end() ? -1 : v->second;
  }

 private:
  void EncodeText(std::string_view text, bool at_origin, std::vector<int32_t>* ids) const;
  std::string Normalize(std::string_view text) const {
    std::string s(text);
    for (const Normalizer& n : normalizers_) s = n.Apply(std::move(s));
    return s;
  }
  int32_t FindSpecial(std::initializer_list<const char*> names) const {
    for (const char* n : names) {
      auto it = added_by_content_.find(n);
      if (it != added_by_content_.end()) return it->second;
    }
    return -1;
  }

  std::vector<Normalizer> normalizers_;
  std::vector<PreTokenizer> pre_tokenizers_;
  std::unique_ptr<BpeModel> model_;
  std::vector<std::vector<TemplateItem>> post_processors_;
  std::vector<Decoder> decoders_;
  std::vector<AddedToken> added_;  // stable: matchers point into it
  AddedTokenMatcher raw_matcher_, normalized_matcher_;
  absl::flat_hash_map<std::string, int32_t> added_by_content_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> assigned_;
  std::vector<bool> special_;
  int32_t bos_id_ = -1, eos_id_ = -1;
};

absl::Status HfTokenizer::Init(const json& j, const json& config) {
  if (!j.is_object()) return absl::InvalidArgumentError("tokenizer.json is not a JSON object");
  TANDEM_RETURN_IF_ERROR(ParseNormalizer(j.value("normalizer", json()), &normalizers_));
  TANDEM_RETURN_IF_ERROR(ParsePreTokenizer(j.value("pre_tokenizer", json()), &pre_tokenizers_));
  TANDEM_RETURN_IF_ERROR(ParseDecoder(j.value("decoder", json()), &decoders_));

  const json& model = j.at("model");
  std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE") {
    return absl::UnimplementedError(absl::StrCat("unsupported tokenizer model type ", type));
  }
  if (!model.value("dropout", json()).is_null() && model.at("dropout").get<double>() != 0.0) {
    return absl::UnimplementedError("BPE dropout is not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    json v = model.value(key, json());
    if (!v.is_null() && !v.get<std::string>().empty()) {
      return absl::UnimplementedError(absl::StrCat("BPE ", key, " is not supported"));
    }
  }
  BpeOptions options;
  json unk = model.value("unk_token", json());
  if (!unk.is_null()) options.unk_token = unk.get<std::string>();
  options.fuse_unk = model.value("fuse_unk", false);
  options.byte_fallback = model.value("byte_fallback", false);
  options.ignore_merges = model.value("ignore_merges", false);

  absl::flat_hash_map<std::string, int32_t> vocab;
  const json& jvocab = model.at("vocab");
  if (!jvocab.is_object()) return absl::InvalidArgumentError("BPE vocab is not an object");
  vocab.reserve(jvocab.size());
  for (auto it = jvocab.begin(); it != jvocab.end(); ++it) {
    vocab[it.key()] = it.value().get<int32_t>();
  }
  std::vector<std::pair<std::string, std::string>> merges;
  const json& jmerges = model.value("merges", json::array());
  merges.reserve(jmerges.size());
  for (const json& m : jmerges) {
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      size_t sp = s.find(' ', 1);
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat("malformed BPE merge \"", s, "\""));
      }
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2) {
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return absl::InvalidArgumentError(absl::StrCat("malformed BPE merge ", m.dump()));
    }
  }
  TANDEM_ASSIGN_OR_RETURN(model_, BpeModel::Create(std::move(vocab), merges, options));

  int32_t size = model_->max_id() + 1;
  const json& jadded = j.value("added_tokens", json::array());
  added_.reserve(jadded.size());
  for (const json& a : jadded) {
    AddedToken t;
    t.id = a.at("id").get<int32_t>();
    t.content = a.at("content").get<std::string>();
    t.special = a.value("special", false);
    t.lstrip = a.value("lstrip", false);
    t.rstrip = a.value("rstrip", false);
    t.single_word = a.value("single_word", false);
    t.normalized = a.value("normalized", !t.special);
    if (t.id < 0) return absl::InvalidArgumentError("negative added token id");
    size = std::max(size, t.id + 1);
    added_.push_back(std::move(t));
  }
  id_to_token_.assign(size, std::string());
  assigned_.assign(size, false);
  special_.assign(size, false);
  for (const auto& [tok, id] : model_->vocab()) {
    id_to_token_[id] = tok;
    assigned_[id] = true;
  }
  for (const AddedToken& t : added_) {
    id_to_token_[t.id] = t.content;
    assigned_[t.id] = true;
    special_[t.id] = t.special;
    added_by_content_[t.content] = t.id;
    if (t.normalized) {
      normalized_matcher_.Add(Normalize(t.content), &t);
    } else {
      raw_matcher_.Add(t.content, &t);
    }
  }

  TANDEM_RETURN_IF_ERROR(ParsePostProcessor(j.value("post_processor", json()), &post_processors_));
  for (const auto& tmpl : post_processors_) {
    for (const TemplateItem& item : tmpl) {
      for (int32_t id : item.ids) {
        if (id < 0 || id >= size) {
          return absl::InvalidArgumentError(
              absl::StrCat("post_processor special token id ", id, " is out of range"));
        }
      }
    }
  }

  // BOS/EOS: tokenizer_config.json when present, else the template, else the
  // usual names among the added tokens.
  auto config_token = [&](const char* key) -> int32_t {
    if (!config.is_object() || !config.contains(key)) return -1;
    const json& v = config.at(key);
    if (v.is_string()) return TokenToId(v.get<std::string>());
    if (v.is_object() && v.contains("content")) return TokenToId(v.at("content").get<std::string>());
    return -1;
  };
  // A config that names no BOS (Qwen: "bos_token": null) means there is none.
  auto config_has = [&](const char* key) { return config.is_object() && config.contains(key); };
  bos_id_ = config_token("bos_token");
  eos_id_ = config_token("eos_token");
  if (bos_id_ < 0 && !config_has("bos_token")) {
    for (const auto& tmpl : post_processors_) {
      if (!tmpl.empty() && !tmpl[0].is_sequence && tmpl[0].ids.size() == 1) bos_id_ = tmpl[0].ids[0];
    }
  }
  if (bos_id_ < 0 && !config_has("bos_token")) {
    bos_id_ = FindSpecial({"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"});
  }
  if (eos_id_ < 0 && !config_has("eos_token")) {
    eos_id_ = FindSpecial({"</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>", "<|im_end|>"});
  }
  return absl::OkStatus();
}

void HfTokenizer::EncodeText(std::string_view text, bool at_origin,
                             std::vector<int32_t>* ids) const {
  std::vector<Piece> pieces{Piece{std::string(text), at_origin}};
  for (const PreTokenizer& p : pre_tokenizers_) p.Apply(&pieces);
  for (const Piece& p : pieces) model_->Tokenize(p.text, ids);
}

absl::StatusOr<std::vector<int32_t>> HfTokenizer::Encode(std::string_view text,
                                                         bool add_special_tokens) const {
  if (!IsValidUtf8(text)) return absl::InvalidArgumentError("Encode: text is not valid UTF-8");
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  for (const auto& seg : raw_matcher_.Split(text)) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    std::string normalized = Normalize(text.substr(seg.begin, seg.end - seg.begin));
    bool at_origin = seg.begin == 0;
    if (normalized_matcher_.empty()) {
      EncodeText(normalized, at_origin, &ids);
      continue;
    }
    for (const auto& sub : normalized_matcher_.Split(normalized)) {
      if (sub.id >= 0) {
        ids.push_back(sub.id);
      } else {
        EncodeText(std::string_view(normalized).substr(sub.begin, sub.end - sub.begin),
                   at_origin && sub.begin == 0, &ids);
      }
    }
  }
  if (add_special_tokens) {
    for (const auto& tmpl : post_processors_) {
      std::vector<int32_t> out;
      out.reserve(ids.size() + 4);
      for (const TemplateItem& item : tmpl) {
        if (item.is_sequence) {
          out.insert(out.end(), ids.begin(), ids.end());
        } else {
          out.insert(out.end(), item.ids.begin(), item.ids.end());
        }
      }
      ids = std::move(out);
    }
  }
  return ids;
}

absl::StatusOr<std::string> HfTokenizer::Decode(absl::Span<const int32_t> ids,
                                                bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("Decode: id ", id, " is out of range [0, ", vocab_size(), ")"));
    }
    if (!assigned_[id]) continue;  // a hole in the id space; HF skips it too
    if (skip_special_tokens && special_[id]) continue;
    tokens.push_back(id_to_token_[id]);
  }
  if (decoders_.empty()) return Utf8Lossy(absl::StrJoin(tokens, " "));
  for (const Decoder& d : decoders_) d.Apply(&tokens);
  std::string out = absl::StrJoin(tokens, "");
  return IsValidUtf8(out) ? out : Utf8Lossy(out);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateHfTokenizer(std::string_view json_text,
                                                             std::string_view config_json) {
  auto tok = std::make_unique<HfTokenizer>();
  try {
    json j = json::parse(json_text);
    json config;
    if (!config_json.empty()) {
      config = json::parse(config_json, nullptr, /*allow_exceptions=*/false);
      if (config.is_discarded()) config = json();
    }
    TANDEM_RETURN_IF_ERROR(tok->Init(j, config));
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed tokenizer.json: ", e.what()));
  }
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

}  // namespace tokenizer_internal
}  // namespace tandem
