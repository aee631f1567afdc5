#include "tokenizer/regex.h"

#include <bitset>
#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tokenizer/unicode.h"

namespace tandem {
namespace tokenizer_internal {
namespace {

#define TANDEM_REGEX_RETURN_IF_ERROR(expr)   \
  do {                                  \
    absl::Status s_ = (expr);           \
    if (!s_.ok()) return s_;            \
  } while (0)

constexpr int kInfinite = std::numeric_limits<int>::max();

// A set of code points: a union of items, optionally negated.
struct CharSet {
  struct Item {
    enum Kind { kRange, kCategories, kNotCategories, kSpace, kNotSpace } kind;
    char32_t lo = 0, hi = 0;
    uint32_t categories = 0;  // bit i set: UnicodeCategory i
  };
  bool negated = false;
  std::vector<Item> items;
  std::bitset<128> ascii;  // precomputed membership for ASCII

  bool ContainsSlow(char32_t c) const {
    bool in = false;
    for (const Item& it : items) {
      switch (it.kind) {
        case Item::kRange: in = c >= it.lo && c <= it.hi; break;
        case Item::kCategories: in = (it.categories >> GetCategory(c)) & 1; break;
        case Item::kNotCategories: in = !((it.categories >> GetCategory(c)) & 1); break;
        case Item::kSpace: in = IsWhiteSpace(c); break;
        case Item::kNotSpace: in = !IsWhiteSpace(c); break;
      }
      if (in) break;
    }
    return in != negated;
  }
  void Finish() {
    for (char32_t c = 0; c < 128; ++c) ascii[c] = ContainsSlow(c);
  }
  bool Contains(char32_t c) const { return c < 128 ? ascii[c] : ContainsSlow(c); }
};

uint32_t CatBit(UnicodeCategory c) { return 1u << c; }
constexpr uint32_t Bits(std::initializer_list<UnicodeCategory> cats) {
  uint32_t b = 0;
  for (auto c : cats) b |= 1u << c;
  return b;
}

bool CategoryMask(std::string_view name, uint32_t* mask) {
  static const struct {
    const char* name;
    uint32_t bits;
  } kNames[] = {
      {"L", Bits({kLu, kLl, kLt, kLm, kLo})}, {"Letter", Bits({kLu, kLl, kLt, kLm, kLo})},
      {"Lu", Bits({kLu})}, {"Ll", Bits({kLl})}, {"Lt", Bits({kLt})}, {"Lm", Bits({kLm})},
      {"Lo", Bits({kLo})}, {"LC", Bits({kLu, kLl, kLt})},
      {"M", Bits({kMn, kMc, kMe})}, {"Mark", Bits({kMn, kMc, kMe})}, {"Mn", Bits({kMn})},
      {"Mc", Bits({kMc})}, {"Me", Bits({kMe})},
      {"N", Bits({kNd, kNl, kNo})}, {"Number", Bits({kNd, kNl, kNo})}, {"Nd", Bits({kNd})},
      {"Nl", Bits({kNl})}, {"No", Bits({kNo})},
      {"P", Bits({kPc, kPd, kPs, kPe, kPi, kPf, kPo})},
      {"Punctuation", Bits({kPc, kPd, kPs, kPe, kPi, kPf, kPo})}, {"Pc", Bits({kPc})},
      {"Pd", Bits({kPd})}, {"Ps", Bits({kPs})}, {"Pe", Bits({kPe})}, {"Pi", Bits({kPi})},
      {"Pf", Bits({kPf})}, {"Po", Bits({kPo})},
      {"S", Bits({kSm, kSc, kSk, kSo})}, {"Symbol", Bits({kSm, kSc, kSk, kSo})},
      {"Sm", Bits({kSm})}, {"Sc", Bits({kSc})}, {"Sk", Bits({kSk})}, {"So", Bits({kSo})},
      {"Z", Bits({kZs, kZl, kZp})}, {"Separator", Bits({kZs, kZl, kZp})}, {"Zs", Bits({kZs})},
      {"Zl", Bits({kZl})}, {"Zp", Bits({kZp})},
      {"C", Bits({kCc, kCf, kCs, kCo, kCn})}, {"Other", Bits({kCc, kCf, kCs, kCo, kCn})},
      {"Cc", Bits({kCc})}, {"Cf", Bits({kCf})}, {"Cs", Bits({kCs})}, {"Co", Bits({kCo})},
      {"Cn", Bits({kCn})},
  };
  for (const auto& n : kNames) {
    if (name == n.name) {
      *mask = n.bits;
      return true;
    }
  }
  return false;
}

// ---- AST -------------------------------------------------------------------

struct Ast {
  enum Kind { kEmpty, kSeq, kAlt, kSet, kRepeat, kLook } kind = kEmpty;
  std::vector<std::unique_ptr<Ast>> children;  // kSeq, kAlt; kRepeat/kLook: [0]
  CharSet set;                                  // kSet
  int min = 1, max = 1;                         // kRepeat
  enum Mode { kGreedy, kLazy, kPossessive } mode = kGreedy;
  bool negative = false;  // kLook
};

class Parser {
 public:
  explicit Parser(std::string_view pattern) : pattern_(pattern) {
    cps_ = DecodeUtf8(pattern);
  }

  absl::StatusOr<std::unique_ptr<Ast>> Parse() {
    auto ast = ParseAlt(false);
    if (!ast.ok()) return ast;
    if (pos_ != cps_.size()) return Error("unbalanced ')'");
    return ast;
  }

 private:
  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("unsupported pre-tokenizer regex (", AsAbsl(what),
                                                   " at code point ", pos_, "): ", AsAbsl(pattern_)));
  }
  bool AtEnd() const { return pos_ >= cps_.size(); }
  char32_t Peek() const { return cps_[pos_]; }

  absl::StatusOr<std::unique_ptr<Ast>> ParseAlt(bool case_insensitive) {
    auto alt = std::make_unique<Ast>();
    alt->kind = Ast::kAlt;
    bool ci = case_insensitive;
    while (true) {
      auto seq = std::make_unique<Ast>();
      seq->kind = Ast::kSeq;
      while (!AtEnd() && Peek() != '|' && Peek() != ')') {
        // Inline flag group "(?i)" changes the rest of the enclosing group.
        if (Peek() == '(' && pos_ + 3 < cps_.size() + 0 && cps_[pos_ + 1] == '?' &&
            cps_[pos_ + 2] == 'i' && cps_[pos_ + 3] == ')') {
          pos_ += 4;
          ci = true;
          continue;
        }
        auto atom = ParseQuantified(ci);
        if (!atom.ok()) return atom.status();
        seq->children.push_back(std::move(*atom));
      }
      alt->children.push_back(std::move(seq));
      if (!AtEnd() && Peek() == '|') {
        ++pos_;
        continue;
      }
      break;
    }
    return alt;
  }

  absl::StatusOr<std::unique_ptr<Ast>> ParseQuantified(bool ci) {
    auto atom_or = ParseAtom(ci);
    if (!atom_or.ok()) return atom_or;
    std::unique_ptr<Ast> atom = std::move(*atom_or);
    while (!AtEnd()) {
      int min, max;
      char32_t c = Peek();
      size_t save = pos_;
      if (c == '?') {
        min = 0, max = 1, ++pos_;
      } else if (c == '*') {
        min = 0, max = kInfinite, ++pos_;
      } else if (c == '+') {
        min = 1, max = kInfinite, ++pos_;
      } else if (c == '{') {
        if (!ParseBraces(&min, &max)) {
          pos_ = save;
          break;  // a literal '{' follows; handled by the next ParseAtom
        }
      } else {
        break;
      }
      if (atom->kind == Ast::kLook || atom->kind == Ast::kEmpty) {
        return Error("quantified assertion");
      }
      auto rep = std::make_unique<Ast>();
      rep->kind = Ast::kRepeat;
      rep->min = min;
      rep->max = max;
      if (!AtEnd() && Peek() == '?') {
        rep->mode = Ast::kLazy;
        ++pos_;
      } else if (!AtEnd() && Peek() == '+') {
        rep->mode = Ast::kPossessive;
        ++pos_;
      }
      if (atom->kind != Ast::kSet && (max == kInfinite || max > 8 || rep->mode == Ast::kPossessive)) {
        return Error("repetition of a group");
      }
      rep->children.push_back(std::move(atom));
      atom = std::move(rep);
    }
    return atom;
  }

  bool ParseNumber(int* out) {
    size_t start = pos_;
    long v = 0;
    while (!AtEnd() && Peek() >= '0' && Peek() <= '9' && v < 100000) {
      v = v * 10 + (Peek() - '0');
      ++pos_;
    }
    *out = static_cast<int>(v);
    return pos_ > start;
  }

  bool ParseBraces(int* min, int* max) {
    ++pos_;  // '{'
    if (!ParseNumber(min)) return false;
    if (AtEnd()) return false;
    if (Peek() == '}') {
      *max = *min;
      ++pos_;
      return true;
    }
    if (Peek() != ',') return false;
    ++pos_;
    if (!AtEnd() && Peek() == '}') {
      *max = kInfinite;
      ++pos_;
      return true;
    }
    if (!ParseNumber(max) || AtEnd() || Peek() != '}' || *max < *min) return false;
    ++pos_;
    return true;
  }

  static std::unique_ptr<Ast> SetAst(CharSet set) {
    auto a = std::make_unique<Ast>();
    a->kind = Ast::kSet;
    a->set = std::move(set);
    a->set.Finish();
    return a;
  }

  static void AddRange(CharSet* set, char32_t lo, char32_t hi) {
    CharSet::Item it;
    it.kind = CharSet::Item::kRange;
    it.lo = lo;
    it.hi = hi;
    set->items.push_back(it);
  }

  // Adds `c` (and its case variants when `ci`) to `set`.
  absl::Status AddLiteral(CharSet* set, char32_t c, bool ci) {
    AddRange(set, c, c);
    if (!ci) return absl::OkStatus();
    if (c >= 'a' && c <= 'z') AddRange(set, c - 32, c - 32);
    if (c >= 'A' && c <= 'Z') AddRange(set, c + 32, c + 32);
    // Unicode simple case folding maps these onto ASCII letters.
    if (c == 's' || c == 'S') AddRange(set, 0x17F, 0x17F);
    if (c == 'k' || c == 'K') AddRange(set, 0x212A, 0x212A);
    if (c >= 0x80) {
      UnicodeCategory cat = GetCategory(c);
      if (cat == kLu || cat == kLl || cat == kLt) return Error("case-insensitive non-ASCII letter");
    }
    return absl::OkStatus();
  }

  // Parses an escape after '\'. Adds to `set`.
  absl::Status ParseEscape(CharSet* set, bool ci, bool in_class) {
    if (AtEnd()) return Error("trailing backslash");
    char32_t c = cps_[pos_++];
    CharSet::Item it;
    switch (c) {
      case 'r': return AddLiteral(set, '\r', false);
      case 'n': return AddLiteral(set, '\n', false);
      case 't': return AddLiteral(set, '\t', false);
      case 'f': return AddLiteral(set, '\f', false);
      case 'v': return AddLiteral(set, '\v', false);
      case 'a': return AddLiteral(set, '\a', false);
      case 'e': return AddLiteral(set, 0x1B, false);
      case 's': it.kind = CharSet::Item::kSpace; set->items.push_back(it); return absl::OkStatus();
      case 'S': it.kind = CharSet::Item::kNotSpace; set->items.push_back(it); return absl::OkStatus();
      case 'd':
      case 'D':
        it.kind = c == 'd' ? CharSet::Item::kCategories : CharSet::Item::kNotCategories;
        it.categories = CatBit(kNd);
        set->items.push_back(it);
        return absl::OkStatus();
      case 'w':
      case 'W':
        it.kind = c == 'w' ? CharSet::Item::kCategories : CharSet::Item::kNotCategories;
        it.categories = Bits({kLu, kLl, kLt, kLm, kLo, kMn, kMc, kMe, kNd, kNl, kPc});
        set->items.push_back(it);
        return absl::OkStatus();
      case 'p':
      case 'P': {
        std::string name;
        if (!AtEnd() && Peek() == '{') {
          ++pos_;
          bool neg = false;
          if (!AtEnd() && Peek() == '^') {
            neg = true;
            ++pos_;
          }
          while (!AtEnd() && Peek() != '}') AppendUtf8(cps_[pos_++], &name);
          if (AtEnd()) return Error("unterminated \\p{");
          ++pos_;
          if (neg) c = c == 'p' ? 'P' : 'p';
        } else if (!AtEnd()) {
          AppendUtf8(cps_[pos_++], &name);
        }
        if (!CategoryMask(name, &it.categories)) {
          return Error(absl::StrCat("unknown Unicode property \\p{", name, "}"));
        }
        it.kind = c == 'p' ? CharSet::Item::kCategories : CharSet::Item::kNotCategories;
        set->items.push_back(it);
        return absl::OkStatus();
      }
      case 'x':
      case 'u': {
        int digits = c == 'u' ? 4 : 2;
        bool braced = !AtEnd() && Peek() == '{';
        if (braced) {
          ++pos_;
          digits = 8;
        }
        char32_t v = 0;
        int n = 0;
        while (!AtEnd() && n < digits && isxdigit(static_cast<int>(Peek() < 128 ? Peek() : 0))) {
          char32_t h = Peek();
          v = v * 16 + (h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
          ++pos_, ++n;
        }
        if (n == 0) return Error("bad hex escape");
        if (braced) {
          if (AtEnd() || Peek() != '}') return Error("bad hex escape");
          ++pos_;
        }
        return AddLiteral(set, v, ci);
      }
      default:
        if (c < 128 && (isalnum(static_cast<int>(c)))) {
          return Error(absl::StrCat("escape \\", std::string(1, static_cast<char>(c))));
        }
        (void)in_class;
        return AddLiteral(set, c, ci);
    }
  }

  absl::StatusOr<std::unique_ptr<Ast>> ParseClass(bool ci) {
    ++pos_;  // '['
    CharSet set;
    if (!AtEnd() && Peek() == '^') {
      set.negated = true;
      ++pos_;
    }
    bool first = true;
    while (true) {
      if (AtEnd()) return Error("unterminated character class");
      char32_t c = Peek();
      if (c == ']' && !first) {
        ++pos_;
        break;
      }
      first = false;
      if (c == '[') return Error("nested character class");
      if (c == '&' && pos_ + 1 < cps_.size() && cps_[pos_ + 1] == '&') {
        return Error("class intersection");
      }
      char32_t lo;
      if (c == '\\') {
        ++pos_;
        CharSet tmp;
        TANDEM_REGEX_RETURN_IF_ERROR(ParseEscape(&tmp, false, true));
        if (tmp.items.size() != 1 || tmp.items[0].kind != CharSet::Item::kRange) {
          for (auto& it : tmp.items) set.items.push_back(it);
          continue;
        }
        lo = tmp.items[0].lo;
      } else {
        lo = c;
        ++pos_;
      }
      char32_t hi = lo;
      if (pos_ + 1 < cps_.size() && Peek() == '-' && cps_[pos_ + 1] != ']') {
        ++pos_;
        char32_t h = Peek();
        if (h == '\\') {
          ++pos_;
          CharSet tmp;
          TANDEM_REGEX_RETURN_IF_ERROR(ParseEscape(&tmp, false, true));
          if (tmp.items.size() != 1 || tmp.items[0].kind != CharSet::Item::kRange) {
            return Error("bad class range");
          }
          hi = tmp.items[0].lo;
        } else {
          hi = h;
          ++pos_;
        }
        if (hi < lo) return Error("reversed class range");
      }
      if (ci) {
        for (char32_t x = lo; x <= hi && x < 0x250; ++x) {
          if ((x >= 'a' && x <= 'z') || (x >= 'A' && x <= 'Z') || x >= 0x80) {
            return Error("case-insensitive class with letters");
          }
        }
        if (hi >= 0x250) return Error("case-insensitive class with letters");
      }
      AddRange(&set, lo, hi);
    }
    return SetAst(std::move(set));
  }

  absl::StatusOr<std::unique_ptr<Ast>> ParseAtom(bool ci) {
    char32_t c = Peek();
    if (c == '(') {
      ++pos_;
      bool group_ci = ci;
      auto look = std::make_unique<Ast>();
      bool is_look = false;
      if (!AtEnd() && Peek() == '?') {
        ++pos_;
        if (AtEnd()) return Error("bad group");
        char32_t k = Peek();
        if (k == ':') {
          ++pos_;
        } else if (k == '=' || k == '!') {
          ++pos_;
          is_look = true;
          look->kind = Ast::kLook;
          look->negative = k == '!';
        } else if (k == 'i' && pos_ + 1 < cps_.size() && cps_[pos_ + 1] == ':') {
          pos_ += 2;
          group_ci = true;
        } else {
          return Error("group kind (?" + EncodeUtf8(std::u32string(1, k)) + ")");
        }
      }
      auto inner = ParseAlt(group_ci);
      if (!inner.ok()) return inner;
      if (AtEnd() || Peek() != ')') return Error("missing ')'");
      ++pos_;
      if (is_look) {
        look->children.push_back(std::move(*inner));
        return look;
      }
      return inner;
    }
    if (c == '[') return ParseClass(ci);
    if (c == '.') {
      ++pos_;
      CharSet set;
      set.negated = true;
      AddRange(&set, '\n', '\n');
      return SetAst(std::move(set));
    }
    if (c == '^' || c == '$') return Error("anchor");
    if (c == '*' || c == '+' || c == '?') return Error("dangling quantifier");
    CharSet set;
    if (c == '\\') {
      ++pos_;
      if (!AtEnd() && (Peek() == 'b' || Peek() == 'B' || Peek() == 'A' || Peek() == 'z' ||
                       Peek() == 'Z' || Peek() == 'G' || (Peek() >= '1' && Peek() <= '9') ||
                       Peek() == 'k' || Peek() == 'X' || Peek() == 'R')) {
        return Error("assertion or backreference escape");
      }
      TANDEM_REGEX_RETURN_IF_ERROR(ParseEscape(&set, ci, false));
    } else {
      ++pos_;
      TANDEM_REGEX_RETURN_IF_ERROR(AddLiteral(&set, c, ci));
    }
    return SetAst(std::move(set));
  }


  std::string_view pattern_;
  std::u32string cps_;
  size_t pos_ = 0;
};

// ---- Compiled program --------------------------------------------------------

struct Node {
  enum Kind { kAccept, kSet, kRepeatSet, kAlt, kLook } kind;
  int next = -1;
  int set = -1;  // index into sets
  int min = 0, max = 0;
  Ast::Mode mode = Ast::kGreedy;
  std::vector<int> branches;  // kAlt
  int sub = -1;               // kLook
  bool negative = false;
};

}  // namespace

struct PretokRegex::Impl {
  std::vector<Node> nodes;
  std::vector<CharSet> sets;
  int start = -1;

  int Add(Node n) {
    nodes.push_back(std::move(n));
    return static_cast<int>(nodes.size()) - 1;
  }

  int Compile(const Ast& ast, int next) {
    switch (ast.kind) {
      case Ast::kEmpty:
        return next;
      case Ast::kSeq: {
        int cur = next;
        for (auto it = ast.children.rbegin(); it != ast.children.rend(); ++it) {
          cur = Compile(**it, cur);
        }
        return cur;
      }
      case Ast::kAlt: {
        if (ast.children.size() == 1) return Compile(*ast.children[0], next);
        Node n;
        n.kind = Node::kAlt;
        for (const auto& c : ast.children) n.branches.push_back(Compile(*c, next));
        return Add(std::move(n));
      }
      case Ast::kSet: {
        sets.push_back(ast.set);
        Node n;
        n.kind = Node::kSet;
        n.set = static_cast<int>(sets.size()) - 1;
        n.next = next;
        return Add(std::move(n));
      }
      case Ast::kRepeat: {
        const Ast& child = *ast.children[0];
        if (child.kind == Ast::kSet) {
          sets.push_back(child.set);
          Node n;
          n.kind = Node::kRepeatSet;
          n.set = static_cast<int>(sets.size()) - 1;
          n.min = ast.min;
          n.max = ast.max;
          n.mode = ast.mode;
          n.next = next;
          return Add(std::move(n));
        }
        // Bounded repetition of a group: unroll (max <= 8, checked by parser).
        int cur = next;
        for (int i = ast.max; i > ast.min; --i) {
          int body = Compile(child, cur);
          Node alt;
          alt.kind = Node::kAlt;
          if (ast.mode == Ast::kLazy) {
            alt.branches = {next, body};
          } else {
            alt.branches = {body, next};
          }
          // Optional copies chain: each optional copy may continue to `next`.
          cur = Add(std::move(alt));
        }
        for (int i = 0; i < ast.min; ++i) cur = Compile(child, cur);
        return cur;
      }
      case Ast::kLook: {
        Node accept;
        accept.kind = Node::kAccept;
        int acc = Add(std::move(accept));
        Node n;
        n.kind = Node::kLook;
        n.sub = Compile(*ast.children[0], acc);
        n.negative = ast.negative;
        n.next = next;
        return Add(std::move(n));
      }
    }
    return next;
  }

  bool Match(std::u32string_view text, int node, size_t pos, size_t* end) const {
    while (true) {
      const Node& n = nodes[node];
      switch (n.kind) {
        case Node::kAccept:
          *end = pos;
          return true;
        case Node::kSet:
          if (pos >= text.size() || !sets[n.set].Contains(text[pos])) return false;
          ++pos;
          node = n.next;
          continue;
        case Node::kRepeatSet: {
          const CharSet& set = sets[n.set];
          size_t count = 0;
          size_t limit = n.max == kInfinite ? text.size() - pos
                                            : std::min<size_t>(n.max, text.size() - pos);
          if (n.mode == Ast::kLazy) {
            while (count < static_cast<size_t>(n.min)) {
              if (count >= limit || !set.Contains(text[pos + count])) return false;
              ++count;
            }
            while (true) {
              if (Match(text, n.next, pos + count, end)) return true;
              if (count >= limit || !set.Contains(text[pos + count])) return false;
              ++count;
            }
          }
          while (count < limit && set.Contains(text[pos + count])) ++count;
          if (count < static_cast<size_t>(n.min)) return false;
          if (n.mode == Ast::kPossessive) {
            pos += count;
            node = n.next;
            continue;
          }
          for (size_t k = count + 1; k-- > static_cast<size_t>(n.min);) {
            if (Match(text, n.next, pos + k, end)) return true;
          }
          return false;
        }
        case Node::kAlt:
          for (size_t i = 0; i + 1 < n.branches.size(); ++i) {
            if (Match(text, n.branches[i], pos, end)) return true;
          }
          node = n.branches.back();
          continue;
        case Node::kLook: {
          size_t e;
          bool m = Match(text, n.sub, pos, &e);
          if (m == n.negative) return false;
          node = n.next;
          continue;
        }
      }
    }
  }
};

PretokRegex::PretokRegex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PretokRegex::~PretokRegex() = default;

absl::StatusOr<std::unique_ptr<PretokRegex>> PretokRegex::Compile(std::string_view pattern) {
  if (!IsValidUtf8(pattern)) return absl::InvalidArgumentError("regex is not valid UTF-8");
  Parser parser(pattern);
  auto ast = parser.Parse();
  if (!ast.ok()) return ast.status();
  auto impl = std::make_unique<Impl>();
  Node accept;
  accept.kind = Node::kAccept;
  int acc = impl->Add(std::move(accept));
  impl->start = impl->Compile(**ast, acc);
  return std::unique_ptr<PretokRegex>(new PretokRegex(std::move(impl)));
}

bool PretokRegex::MatchAt(std::u32string_view text, size_t pos, size_t* end) const {
  return impl_->Match(text, impl_->start, pos, end);
}

void PretokRegex::FindAll(std::u32string_view text,
                          std::vector<std::pair<size_t, size_t>>* out) const {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end;
    if (impl_->Match(text, impl_->start, pos, &end) && end > pos) {
      out->emplace_back(pos, end);
      pos = end;
    } else {
      ++pos;
    }
  }
}

}  // namespace tokenizer_internal
}  // namespace tandem
