// The one place absl::Status meets the wire: gRPC call statuses and the
// protocol's Error message, both ways. The cloud server and the edge's
// CloudLink use these instead of casting codes inline.
//
// absl::StatusCode and grpc::StatusCode share their numbering (both follow
// google.rpc.Code, 0..16); a code outside it — possible only from a buggy or
// hostile peer — becomes UNKNOWN rather than an out-of-range enum value.
#ifndef TANDEM_PROTO_STATUS_CONVERT_H_
#define TANDEM_PROTO_STATUS_CONVERT_H_

#include <cstdint>
#include "absl/strings/string_view.h"

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "tandem/wire/tandem.pb.h"

namespace tandem::wire {

// Status code from an integer on the wire (kUnknown when not 0..16).
absl::StatusCode StatusCodeFromWire(int64_t code);

// The gRPC status a handler returns for `status` (same code and message).
grpc::Status ToGrpcStatus(const absl::Status& status);
// The absl::Status of a finished call; `context` prefixes the message
// ("cloud: ...") when not empty.
absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view context = "");

// Fills an Error message. `request_id` 0 = not about one request.
void ToProto(const absl::Status& status, uint64_t request_id, bool fatal, Error* out);
// The Error message as a status; `context` prefixes the message when not empty.
absl::Status FromProto(const Error& error, absl::string_view context = "");

}  // namespace tandem::wire

#endif  // TANDEM_PROTO_STATUS_CONVERT_H_
