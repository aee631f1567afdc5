#include "server/structured_log.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tandem::cloud {
namespace {

void AppendEscaped(std::string* out, absl::string_view s) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (c < 0x20) {
          out->append(absl::StrFormat("\\u%04x", c));
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

}  // namespace

LogValue::LogValue(int64_t v) : text(absl::StrCat(v)), quoted(false) {}
LogValue::LogValue(int v) : text(absl::StrCat(v)), quoted(false) {}
LogValue::LogValue(uint64_t v) : text(absl::StrCat(v)), quoted(false) {}
LogValue::LogValue(double v)
    : text(std::isfinite(v) ? absl::StrFormat("%.6g", v) : "null"), quoted(false) {}

void StructuredLog::Write(absl::string_view level, absl::string_view event,
                          std::initializer_list<std::pair<absl::string_view, LogValue>> fields) {
  if (out_ == nullptr) return;
  std::string line = "{\"ts\":";
  AppendEscaped(&line, absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()));
  line.append(",\"level\":");
  AppendEscaped(&line, level);
  line.append(",\"event\":");
  AppendEscaped(&line, event);
  for (const auto& [key, value] : fields) {
    line.push_back(',');
    AppendEscaped(&line, key);
    line.push_back(':');
    if (value.quoted) {
      AppendEscaped(&line, value.text);
    } else {
      line.append(value.text);
    }
  }
  line.append("}\n");
  absl::MutexLock lock(&mu_);
  *out_ << line << std::flush;
}

}  // namespace tandem::cloud
