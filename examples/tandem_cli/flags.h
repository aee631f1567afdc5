// A minimal `--name value` / `--name=value` / `--switch` parser for the CLI's
// subcommands. Flag parsing lives only in binaries.
#ifndef TANDEM_EXAMPLES_TANDEM_CLI_FLAGS_H_
#define TANDEM_EXAMPLES_TANDEM_CLI_FLAGS_H_

#include <map>
#include <set>
#include <string>

#include "absl/status/statusor.h"

namespace tandem::cli {

class Flags {
 public:
  // `with_value`: flags that take a value; `switches`: flags that do not.
  // Anything else, or a missing value, is InvalidArgument.
  static absl::StatusOr<Flags> Parse(int argc, char** argv, const std::set<std::string>& with_value,
                                     const std::set<std::string>& switches);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  absl::StatusOr<int64_t> GetInt(const std::string& name, int64_t fallback) const;
  absl::StatusOr<double> GetDouble(const std::string& name, double fallback) const;

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace tandem::cli

#endif  // TANDEM_EXAMPLES_TANDEM_CLI_FLAGS_H_
