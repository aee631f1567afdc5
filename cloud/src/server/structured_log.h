// StructuredLog: one JSON object per line ({"ts": ..., "level": ..., "event":
// ..., fields...}) so operators can grep and ship the server's log as is.
#ifndef TANDEM_CLOUD_SERVER_STRUCTURED_LOG_H_
#define TANDEM_CLOUD_SERVER_STRUCTURED_LOG_H_

#include <initializer_list>
#include <ostream>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace tandem::cloud {

// A field value: text is quoted and escaped; numbers are written as is.
struct LogValue {
  LogValue(absl::string_view s) : text(s), quoted(true) {}  // NOLINT
  LogValue(const std::string& s) : text(s), quoted(true) {}  // NOLINT
  LogValue(const char* s) : text(s), quoted(true) {}  // NOLINT
  LogValue(int64_t v);  // NOLINT
  LogValue(int v);      // NOLINT
  LogValue(uint64_t v);  // NOLINT
  LogValue(double v);   // NOLINT
  LogValue(bool v) : text(v ? "true" : "false"), quoted(false) {}  // NOLINT
  std::string text;
  bool quoted;
};

class StructuredLog {
 public:
  // `out` may be null (logging off). Borrowed.
  explicit StructuredLog(std::ostream* out) : out_(out) {}
  void Write(absl::string_view level, absl::string_view event,
             std::initializer_list<std::pair<absl::string_view, LogValue>> fields);
  void Info(absl::string_view event,
            std::initializer_list<std::pair<absl::string_view, LogValue>> fields) {
    Write("info", event, fields);
  }
  void Warn(absl::string_view event,
            std::initializer_list<std::pair<absl::string_view, LogValue>> fields) {
    Write("warn", event, fields);
  }

 private:
  std::ostream* out_;
  absl::Mutex mu_;
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_SERVER_STRUCTURED_LOG_H_
