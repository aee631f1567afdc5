// GrpcTransport: the Transport over gRPC — channel, TLS, API key and session
// metadata; one Continuation.Session call per stream.
#ifndef TANDEM_EDGE_LINK_GRPC_TRANSPORT_H_
#define TANDEM_EDGE_LINK_GRPC_TRANSPORT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "link/transport.h"
#include "tandem/edge/cloud_options.h"

namespace tandem::edge::link {

// InvalidArgument / NotFound for unusable options (e.g. an unreadable CA file).
// Does not connect yet.
absl::StatusOr<std::unique_ptr<Transport>> MakeGrpcTransport(const CloudOptions& options);

}  // namespace tandem::edge::link

#endif  // TANDEM_EDGE_LINK_GRPC_TRANSPORT_H_
