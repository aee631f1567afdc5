// The one place absl::Status meets gRPC: call statuses both ways, for the
// cloud server and the edge's gRPC transport. The protocol's Error message
// has no gRPC in it: its conversions are in wire_convert.h.
//
// absl::StatusCode and grpc::StatusCode share their numbering (both follow
// google.rpc.Code, 0..16); codes are mapped through wire::StatusCodeFromWire.
#ifndef TANDEM_PROTO_STATUS_CONVERT_H_
#define TANDEM_PROTO_STATUS_CONVERT_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tandem::wire {

// The gRPC status a handler returns for `status` (same code and message).
grpc::Status ToGrpcStatus(const absl::Status& status);
// The absl::Status of a finished call; `context` prefixes the message
// ("cloud: ...") when not empty.
absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view context = "");

}  // namespace tandem::wire

#endif  // TANDEM_PROTO_STATUS_CONVERT_H_
