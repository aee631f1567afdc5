// CloudOptions: how an edge session reaches a `tandem-cloud` server in
// collaborative mode (DESIGN.md, "One decode step on the edge", step 3). An
// empty address means standalone mode: the network is never used.
#ifndef TANDEM_EDGE_CLOUD_OPTIONS_H_
#define TANDEM_EDGE_CLOUD_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace tandem::edge {
namespace link {
class Transport;  // src/link/transport.h
}

// How the edge rebuilds the cloud's context when the cloud lost it (eviction,
// restart, another replica).
enum class ResyncPolicy {
  // Token ids when the cloud rebuilds from position 0 and can run [0, S)
  // itself (4 bytes a position); hidden states otherwise.
  kAuto,
  // Always replay encoded hidden states (the cloud never runs [0, S); costs the
  // codec's bytes a position).
  kHiddenStates,
  // Token ids whenever the cloud accepts them (falls back to hidden states for
  // a tail after a position the cloud still holds).
  kTokenIds,
};
const char* ResyncPolicyName(ResyncPolicy p);

struct CloudOptions {
  // host:port of the server; empty = standalone. Non-empty needs a transport:
  // link Tandem::edge_grpc for gRPC (see `transport` below).
  std::string address;
  // Hidden-state codec on the wire (tandem/codec.h): fp32, fp16, bf16, int8,
  // int4, int4-g64, each optionally +zstd / +zstdN. fp32 is exact; int8 keeps
  // agreement with the full model at ~4x fewer bytes than fp32.
  std::string codec = "int8";
  // How long a token may wait for the cloud before the edge decides it
  // itself. Includes the network round trip and the cloud's queue.
  absl::Duration request_timeout = absl::Seconds(1);
  // How long one connection attempt may take.
  absl::Duration connect_timeout = absl::Seconds(2);
  // Reconnection backoff after a failure: doubles from initial up to max.
  absl::Duration reconnect_initial_backoff = absl::Milliseconds(50);
  absl::Duration reconnect_max_backoff = absl::Seconds(5);
  ResyncPolicy resync = ResyncPolicy::kAuto;
  // Context upload batching: rows are sent once this many are waiting, or
  // when the oldest has waited upload_max_delay, or right before a request.
  int64_t upload_batch_rows = 16;
  absl::Duration upload_max_delay = absl::Milliseconds(20);
  // Sent as `authorization: Bearer <api_key>` when not empty.
  std::string api_key;
  // PEM file of the CAs to trust; set = TLS. Leave empty only on loopback or
  // inside a trusted network: hidden states can be inverted back to text.
  std::string tls_root_certs_file;
  // TLS: the name to expect in the server certificate instead of the host.
  std::string tls_server_name;
  // Mutual TLS (a server with a client CA): this client's PEM certificate chain
  // and private key. Both or neither; they need tls_root_certs_file.
  std::string tls_client_cert_file;
  std::string tls_client_key_file;
  // Largest message sent or accepted, in [1024, 2^31 - 1] (gRPC takes an int).
  int64_t max_message_bytes = 4 << 20;

  // --- Pipelined speculative verification (cloud_continuation.h) ---
  // Drafts that may await the cloud's verdict at once while the edge decodes
  // on top of them. 0 = the blocking policy: wait for each verdict before the
  // next step (what prior systems do; kept for comparison). To hide a round
  // trip it must cover RTT / (edge time per token) drafts.
  int32_t max_in_flight = 32;
  // Adapt the window between min(min_in_flight, max_in_flight) and
  // max_in_flight: halve it at each
  // rollback, grow it by one at each accepted draft (AIMD). A smaller window
  // wastes fewer edge steps after a rejection but waits more.
  bool adaptive_depth = true;
  int32_t min_in_flight = 4;
  // Under sampling, the draft is drawn from the fallback exit's distribution cut
  // to this many most likely tokens, and that distribution is sent with it
  // (8 bytes a token) so the cloud can apply the speculative sampling rule.
  int32_t draft_top_k = 8;

  // How to reach the server; empty = the default transport: gRPC to `address`
  // when the app links Tandem::edge_grpc (tandem/edge/grpc_transport.h), none
  // otherwise — then EdgeSession::Create / CloudLink::Create fail with
  // FailedPrecondition naming the library to link. Set for tests and custom
  // transports (an in-process server, a fault injector: src/link/). Called
  // once per CloudLink.
  std::function<std::unique_ptr<link::Transport>()> transport;

  // InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

}  // namespace tandem::edge

#endif  // TANDEM_EDGE_CLOUD_OPTIONS_H_
