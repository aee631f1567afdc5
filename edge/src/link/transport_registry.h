// The process's default Transport: what a CloudLink uses when
// CloudOptions::transport is empty. tandem_edge itself knows no network
// library, so it starts with none; tandem_edge_grpc registers gRPC
// (RegisterGrpcTransport, tandem/edge/grpc_transport.h) when it is linked.
#ifndef TANDEM_EDGE_LINK_TRANSPORT_REGISTRY_H_
#define TANDEM_EDGE_LINK_TRANSPORT_REGISTRY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "link/transport.h"
#include "tandem/edge/cloud_options.h"

namespace tandem::edge::link {

// Makes a transport to `options.address` (TLS, API key, limits from options).
using TransportFactory = absl::StatusOr<std::unique_ptr<Transport>> (*)(const CloudOptions& options);

// Sets the default (null: none). Thread-safe; the last call wins. Meant to be
// called before main() by a transport library, or once at start-up.
void SetDefaultTransportFactory(TransportFactory factory);
// The default, or null when no transport library registered one. Thread-safe.
TransportFactory DefaultTransportFactory();

}  // namespace tandem::edge::link

#endif  // TANDEM_EDGE_LINK_TRANSPORT_REGISTRY_H_
