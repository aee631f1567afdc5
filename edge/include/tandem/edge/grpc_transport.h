// gRPC as the transport of collaborative mode (library tandem_edge_grpc, CMake
// target Tandem::edge_grpc).
//
// The edge SDK is split in two libraries so that an app that never talks to a
// cloud does not carry gRPC:
//   Tandem::edge       the engine, EdgeSession, the cloud link's policy and its
//                      in-process transport; protobuf, no gRPC.
//   Tandem::edge_grpc  the gRPC transport (and CloudOnlySession); links grpc++.
//
// Linking Tandem::edge_grpc is all an app has to do: it makes gRPC the default
// transport before main() runs, and an EdgeSession whose
// EdgeOptions::cloud.address is set reaches that address over gRPC, as before.
// An app linked with Tandem::edge alone that sets cloud.address gets
// FailedPrecondition from EdgeSession::Create naming the library to link
// (standalone mode, address empty, needs nothing).
//
// How "linking is enough" works with static libraries: Tandem::edge_grpc's
// CMake usage requirements pass the linker `-u tandem_edge_grpc_register`, so
// the object that registers the transport is always pulled into the binary. An
// app that links libtandem_edge_grpc.a by hand, without CMake, must pass that
// flag too (`-Wl,-u,tandem_edge_grpc_register`) or call
// RegisterGrpcTransport() itself.
#ifndef TANDEM_EDGE_GRPC_TRANSPORT_H_
#define TANDEM_EDGE_GRPC_TRANSPORT_H_

namespace tandem::edge {

// Makes gRPC the transport of every CloudLink (EdgeSession in collaborative
// mode) whose CloudOptions::transport is empty. Idempotent and thread-safe;
// already done before main() when the library is linked through CMake. It
// connects nothing: each session's link opens its own channel to
// CloudOptions::address.
void RegisterGrpcTransport();

}  // namespace tandem::edge

// The symbol the linker is told to keep (see above); calling it registers too.
extern "C" void tandem_edge_grpc_register();

#endif  // TANDEM_EDGE_GRPC_TRANSPORT_H_
