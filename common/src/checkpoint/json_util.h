// Small helpers shared by the checkpoint and config readers. Internal.
#ifndef TANDEM_COMMON_SRC_CHECKPOINT_JSON_UTIL_H_
#define TANDEM_COMMON_SRC_CHECKPOINT_JSON_UTIL_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tandem {
namespace json_util {

// A short printable rendering of `j` for error messages (at most ~60 chars).
std::string Abbreviate(const nlohmann::json& j);

// Reads a whole (small) file: a config.json or an index. Files larger than
// `max_bytes` are refused with InvalidArgument; a missing file is NotFound.
absl::StatusOr<std::string> ReadFileToString(const std::string& path,
                                             uint64_t max_bytes = 64 << 20);

// Parses `text` as JSON; parse errors become InvalidArgument prefixed by `what`.
absl::StatusOr<nlohmann::json> Parse(const std::string& text, const std::string& what);

}  // namespace json_util
}  // namespace tandem

#endif  // TANDEM_COMMON_SRC_CHECKPOINT_JSON_UTIL_H_
