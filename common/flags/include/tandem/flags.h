// Command-line flags for Tandem's binaries (`tandem`, `tandem-cloud`, the
// quickstart, tools): `--name value`, `--name=value` and `--switch`, with every
// number parsed into its target type and range-checked. A value that is not a
// number, does not fit, or lies outside the flag's range is refused with
// InvalidArgument naming the flag and the text the user typed — never wrapped,
// truncated or clamped (issue 14: `--max-message-bytes 4294967296` used to
// become 0 when narrowed for gRPC).
//
// Flag parsing lives only in binaries: libraries take options structs.
// Thread-compatible value type.
#ifndef TANDEM_FLAGS_H_
#define TANDEM_FLAGS_H_

#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <string>
#include "absl/strings/string_view.h"
#include <type_traits>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tandem::flags {

// Parses `text` as a base-10 integer in [min, max] (both inclusive).
// `what` names the value in the error ("--port", "exit layer in --exits").
absl::StatusOr<int64_t> ParseInt(absl::string_view what, absl::string_view text, int64_t min,
                                 int64_t max);
absl::StatusOr<uint64_t> ParseUint(absl::string_view what, absl::string_view text, uint64_t min,
                                   uint64_t max);
// A finite decimal number in [min, max] ("nan", "inf" are refused).
absl::StatusOr<double> ParseDouble(absl::string_view what, absl::string_view text, double min,
                                   double max);
// A byte count: an integer with an optional binary suffix K, M, G or T
// (1K = 1024), in [min, max]; overflow is out of range, not wrap-around.
absl::StatusOr<int64_t> ParseBytes(absl::string_view what, absl::string_view text, int64_t min,
                                   int64_t max);

class Flags {
 public:
  // `with_value`: flags that take a value; `switches`: flags that do not.
  // Unknown flags, positional arguments, a missing value or a value given to a
  // switch are InvalidArgument. A flag given twice keeps the last value.
  static absl::StatusOr<Flags> Parse(int argc, char** argv, const std::set<std::string>& with_value,
                                     const std::set<std::string>& switches);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const;

  // The flag as an integer of type T in [min, max], or `fallback` when absent
  // (the fallback is not checked: it is the programmer's, not the user's).
  template <typename T>
  absl::StatusOr<T> GetInt(const std::string& name, T fallback, T min, T max) const {
    static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
    auto it = values_.find(name);
    if (it == values_.end()) return fallback;
    if constexpr (std::is_unsigned_v<T>) {
      absl::StatusOr<uint64_t> v = ParseUint("--" + name, it->second, min, max);
      if (!v.ok()) return v.status();
      return static_cast<T>(*v);
    } else {
      absl::StatusOr<int64_t> v = ParseInt("--" + name, it->second, min, max);
      if (!v.ok()) return v.status();
      return static_cast<T>(*v);
    }
  }
  absl::StatusOr<double> GetDouble(const std::string& name, double fallback, double min,
                                   double max) const;
  absl::StatusOr<int64_t> GetBytes(const std::string& name, int64_t fallback, int64_t min,
                                   int64_t max) const;
  // Seconds as a decimal number in [min_seconds, max_seconds].
  absl::StatusOr<absl::Duration> GetSeconds(const std::string& name, double fallback_seconds,
                                            double min_seconds, double max_seconds) const;
  // A comma-separated list of integers, each in [min, max]; empty when absent.
  absl::StatusOr<std::vector<int64_t>> GetIntList(const std::string& name, int64_t min,
                                                  int64_t max) const;

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace tandem::flags

#endif  // TANDEM_FLAGS_H_
