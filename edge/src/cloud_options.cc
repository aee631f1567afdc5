#include "tandem/edge/cloud_options.h"

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"

namespace tandem::edge {

absl::Status CloudOptions::Validate() const {
  if (request_timeout <= absl::ZeroDuration() || connect_timeout <= absl::ZeroDuration() ||
      reconnect_initial_backoff <= absl::ZeroDuration() ||
      reconnect_max_backoff < reconnect_initial_backoff) {
    return absl::InvalidArgumentError("cloud timeouts and backoffs must be positive");
  }
  if (upload_batch_rows < 1) return absl::InvalidArgumentError("upload_batch_rows must be >= 1");
  if (max_message_bytes < 1024 || max_message_bytes > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes ", max_message_bytes, " must be in [1024, 2147483647]"));
  }
  if (tls_client_cert_file.empty() != tls_client_key_file.empty() ||
      (!tls_client_cert_file.empty() && tls_root_certs_file.empty())) {
    return absl::InvalidArgumentError(
        "mutual TLS needs a client certificate, its key and tls_root_certs_file");
  }
  if (max_in_flight < 0 || max_in_flight > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_in_flight must be in [0, 4096], got ", max_in_flight));
  }
  if (min_in_flight < 1 || min_in_flight > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_in_flight must be in [1, 4096], got ", min_in_flight));
  }
  if (draft_top_k < 1 || draft_top_k > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("draft_top_k must be in [1, 64], got ", draft_top_k));
  }
  return absl::OkStatus();
}

}  // namespace tandem::edge
