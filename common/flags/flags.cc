#include "tandem/flags.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tandem::flags {
namespace {

// Quoted so that an empty or space-padded value is visible in the message.
std::string Quote(absl::string_view text) { return absl::StrCat("'", text, "'"); }

absl::Status OutOfRange(absl::string_view what, absl::string_view text, absl::string_view min,
                        absl::string_view max) {
  return absl::InvalidArgumentError(absl::StrCat(what, " ", Quote(text), " is out of range: ",
                                                 "must be in [", min, ", ", max, "]"));
}

// An optional sign followed by one or more digits and nothing else.
bool LooksLikeInteger(absl::string_view text) {
  size_t i = (!text.empty() && (text[0] == '-' || text[0] == '+')) ? 1 : 0;
  if (i == text.size()) return false;
  for (; i < text.size(); ++i) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) return false;
  }
  return true;
}

absl::Status NotAnInteger(absl::string_view what, absl::string_view text) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, " must be an integer, got ", Quote(text)));
}

}  // namespace

absl::StatusOr<int64_t> ParseInt(absl::string_view what, absl::string_view text, int64_t min,
                                 int64_t max) {
  if (!LooksLikeInteger(text)) return NotAnInteger(what, text);
  int64_t v = 0;
  // SimpleAtoi fails on overflow: the digits are there, the value does not fit.
  if (!absl::SimpleAtoi(text, &v) || v < min || v > max) {
    return OutOfRange(what, text, absl::StrCat(min), absl::StrCat(max));
  }
  return v;
}

absl::StatusOr<uint64_t> ParseUint(absl::string_view what, absl::string_view text, uint64_t min,
                                   uint64_t max) {
  if (!LooksLikeInteger(text)) return NotAnInteger(what, text);
  uint64_t v = 0;
  if (text[0] == '-' || !absl::SimpleAtoi(text, &v) || v < min || v > max) {
    return OutOfRange(what, text, absl::StrCat(min), absl::StrCat(max));
  }
  return v;
}

absl::StatusOr<double> ParseDouble(absl::string_view what, absl::string_view text, double min,
                                   double max) {
  double v = 0;
  const bool parsed = absl::SimpleAtod(text, &v);
  const std::string lower = absl::AsciiStrToLower(text);
  // SimpleAtod also accepts "nan" and "inf"; "1e999" parses to inf (overflow).
  if (!parsed || std::isnan(v) || absl::StrContains(lower, "inf")) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be a finite number, got ", Quote(text)));
  }
  if (!std::isfinite(v) || v < min || v > max) {
    return OutOfRange(what, text, absl::StrCat(min), absl::StrCat(max));
  }
  return v;
}

absl::StatusOr<int64_t> ParseBytes(absl::string_view what, absl::string_view text, int64_t min,
                                   int64_t max) {
  absl::string_view digits = text;
  int shift = 0;
  if (!digits.empty()) {
    switch (absl::ascii_toupper(static_cast<unsigned char>(digits.back()))) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      case 'T': shift = 40; break;
      default: break;
    }
    if (shift > 0) digits.remove_suffix(1);
  }
  if (!LooksLikeInteger(digits)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " must be a byte count (an integer, optionally with K, M, G or T), got ",
        Quote(text)));
  }
  int64_t v = 0;
  const auto range = [&] { return OutOfRange(what, text, absl::StrCat(min), absl::StrCat(max)); };
  if (!absl::SimpleAtoi(digits, &v)) return range();
  if (v > (std::numeric_limits<int64_t>::max() >> shift) ||
      v < (std::numeric_limits<int64_t>::min() >> shift)) {
    return range();
  }
  v = static_cast<int64_t>(static_cast<uint64_t>(v) << shift);
  if (v < min || v > max) return range();
  return v;
}

absl::StatusOr<Flags> Flags::Parse(int argc, char** argv, const std::set<std::string>& with_value,
                                   const std::set<std::string>& switches) {
  Flags flags;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string name = arg.substr(2), value;
    const size_t eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (switches.count(name)) {
      if (inline_value) return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
      flags.values_[name] = "1";
    } else if (with_value.count(name)) {
      if (!inline_value) {
        if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
        value = argv[++i];
      }
      flags.values_[name] = value;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
  }
  return flags;
}

std::string Flags::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

absl::StatusOr<double> Flags::GetDouble(const std::string& name, double fallback, double min,
                                        double max) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  return ParseDouble("--" + name, it->second, min, max);
}

absl::StatusOr<int64_t> Flags::GetBytes(const std::string& name, int64_t fallback, int64_t min,
                                        int64_t max) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  return ParseBytes("--" + name, it->second, min, max);
}

absl::StatusOr<absl::Duration> Flags::GetSeconds(const std::string& name, double fallback_seconds,
                                                 double min_seconds, double max_seconds) const {
  absl::StatusOr<double> seconds = GetDouble(name, fallback_seconds, min_seconds, max_seconds);
  if (!seconds.ok()) return seconds.status();
  return absl::Seconds(*seconds);
}

absl::StatusOr<std::vector<int64_t>> Flags::GetIntList(const std::string& name, int64_t min,
                                                       int64_t max) const {
  std::vector<int64_t> out;
  auto it = values_.find(name);
  if (it == values_.end()) return out;
  for (absl::string_view part : absl::StrSplit(it->second, ',')) {
    absl::StatusOr<int64_t> v =
        ParseInt(absl::StrCat("each value of --", name), absl::StripAsciiWhitespace(part), min, max);
    if (!v.ok()) return v.status();
    out.push_back(*v);
  }
  return out;
}

}  // namespace tandem::flags
