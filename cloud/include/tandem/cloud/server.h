// CloudServer: the continuation server (`tandem-cloud`) — the gRPC service of
// proto/tandem.proto on top of a ContextManager. One bidirectional stream per
// edge session; many sessions share one model, one memory budget and one
// scheduler that batches their work.
//
//   auto server = tandem::cloud::CloudServer::Start(options);
//   ... (*server)->port() ...
//   (*server)->Shutdown(absl::Seconds(5));   // drains, then stops
//
// Security: API keys (`authorization: Bearer <key>` call metadata) map to
// identities; a session belongs to the identity that opened it. TLS when a
// certificate and key are given (use it on anything but loopback: hidden states
// can be inverted back to text). Every message is validated and bounded before
// use; one client's bad input ends only its own stream.
//
// Thread-safety: all methods may be called from any thread.
#ifndef TANDEM_CLOUD_SERVER_H_
#define TANDEM_CLOUD_SERVER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/cloud/cloud_model.h"
#include "tandem/cloud/context_manager.h"

namespace tandem::cloud {

struct ServerOptions {
  // host:port to listen on; port 0 picks a free one (see CloudServer::port()).
  std::string listen_address = "127.0.0.1:0";
  // The model half to serve (ignored when Start is given a model).
  CloudModelOptions model;
  ContextLimits limits;
  // gRPC refuses larger messages (RESOURCE_EXHAUSTED). Bounds the rows one
  // Context may carry too.
  int64_t max_message_bytes = 4 << 20;
  // Rows one Context message may carry.
  int64_t max_rows_per_message = 4096;
  // API key -> identity. With neither keys nor a key file there is no
  // authentication: every client is "anonymous" (or, under mutual TLS, named
  // by its certificate), and sessions are protected only by their unguessable
  // ids.
  std::map<std::string, std::string> api_keys;
  // A key file (`identity key` lines, see ReadApiKeyFile), added to api_keys.
  // Re-read without a restart when its modification time, size or inode
  // changes (checked on every new call) and on ReloadApiKeys(): a key removed
  // from it is refused on its next call, and streams open under it are ended.
  // A file that fails to parse on reload keeps the previous keys (logged as
  // api_keys_reload_failed).
  std::string api_keys_file;
  // PEM files; both set = TLS, both empty = plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Mutual TLS: a PEM bundle of the certificate authorities that sign client
  // certificates. Set = every client must present a certificate they signed
  // (the handshake fails otherwise); without API keys a client's identity is
  // then "x509:<its certificate's common name>". Needs tls_cert_file/key_file.
  std::string tls_client_ca_file;
  // Prometheus metrics over HTTP (GET /metrics) on this "host:port" (port 0 =
  // a free one, see CloudServer::metrics_port()); empty = off (the default).
  // Counters and gauges of stats(), latency histograms (compute per token,
  // queue wait, Continue latency) and refusals by reason. Bind it to an
  // operator-only interface: it is unauthenticated.
  std::string metrics_address;
  // Session streams open at once, over all clients; one more is refused with
  // RESOURCE_EXHAUSTED (counted as a refusal). Streams cost no thread each (the
  // server uses gRPC's callback API), only their protocol state and gRPC's
  // buffers; sessions' KV caches are bounded by limits.memory_budget_bytes.
  int64_t max_streams = 1024;
  // Session streams open at once per identity (API key identity, client
  // certificate name, or "anonymous"); 0 = only max_streams applies.
  int64_t max_streams_per_identity = 0;
  // A stream that has sent no message for this long is ended (status
  // DEADLINE_EXCEEDED, after a fatal Error saying why); its session stays held
  // (until limits.idle_ttl) unless it holds no position, so the edge resumes it
  // on a new stream. Zero = no limit. Keep it above the longest pause an edge
  // makes between tokens.
  absl::Duration stream_idle_timeout = absl::Seconds(120);
  // A stream whose first message (Open) has not arrived this long after it
  // started is ended the same way. Zero = only stream_idle_timeout applies.
  absl::Duration stream_open_timeout = absl::Seconds(30);
  // HTTP/2 keepalive: the server pings a connection after this long without
  // activity and closes it when no answer comes within keepalive_timeout
  // (catches peers that vanished without closing their TCP connection).
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // A stats line is logged this often (0 = never).
  absl::Duration stats_interval = absl::ZeroDuration();
  // Structured log (one JSON object per line); nullptr = no logging.
  std::ostream* log = nullptr;
};

// "host:port" for ServerOptions::listen_address from a host as an operator
// types it: a bare IPv6 literal ("::1") gets brackets ("[::1]:50051").
// InvalidArgument for an empty host, unbalanced brackets, whitespace, or a
// port outside [0, 65535].
absl::StatusOr<std::string> ListenAddress(const std::string& host, int port);

// Reads an API key file: one `identity key` pair per line, `#` comments.
absl::StatusOr<std::map<std::string, std::string>> ReadApiKeyFile(const std::string& path);

struct ServerStats {
  int64_t streams_opened = 0;
  int64_t streams_active = 0;
  int64_t messages_in = 0;
  int64_t bytes_in = 0;          // serialized client messages
  int64_t bytes_out = 0;         // serialized server messages
  int64_t context_messages = 0;
  int64_t continue_requests = 0;
  int64_t tokens_sent = 0;
  int64_t resyncs_sent = 0;
  int64_t errors_sent = 0;
  int64_t auth_failures = 0;
  int64_t streams_refused = 0;      // over max_streams / max_streams_per_identity
  int64_t streams_idle_ended = 0;   // ended by stream_idle_timeout / stream_open_timeout /
                                    // a silent stream whose session expired
  int64_t cloud_only_requests = 0;  // Generate calls admitted (cloud-only mode)
  int64_t cloud_only_tokens = 0;    // tokens they streamed
  int64_t cloud_only_active = 0;    // gauge
  int64_t going_away_sent = 0;      // GoingAway messages (drain)
  int64_t drain_refusals = 0;       // Continues refused because the server was draining
  int64_t resident_bytes = 0;       // gauge: the process's VmRSS (-1 if unreadable)
  ContextStats context;
};

class CloudServer {
 public:
  // Loads the model (options.model) and starts listening. Errors: the model's,
  // InvalidArgument for bad options, Unavailable when the address cannot be
  // bound, NotFound for missing TLS files.
  static absl::StatusOr<std::unique_ptr<CloudServer>> Start(const ServerOptions& options);
  // Same with a model already loaded (tests, benchmarks).
  static absl::StatusOr<std::unique_ptr<CloudServer>> Start(
      const ServerOptions& options, std::shared_ptr<const CloudModel> model);
  // Shuts down with no grace if still running.
  ~CloudServer();
  CloudServer(const CloudServer&) = delete;
  CloudServer& operator=(const CloudServer&) = delete;

  // The bound port and "host:port" to dial.
  int port() const;
  std::string address() const;

  // Re-reads ServerOptions::api_keys_file now (tandem-cloud does on SIGHUP)
  // and ends the streams of keys it no longer holds. On a parse error the
  // previous keys stay and the error is returned.
  absl::Status ReloadApiKeys();

  // Graceful shutdown (drain), within `grace`: refuses new streams and Opens
  // (UNAVAILABLE); refuses Continues that arrive from now on (a non-fatal
  // UNAVAILABLE Error each); answers every Continue accepted before; then
  // sends GoingAway on every session stream (after the replies queued on it)
  // and waits for the edges to close their streams; at the deadline it
  // cancels what is left and stops. Logs server_stopped with drained:true
  // when every accepted Continue was answered and every stream (and
  // cloud-only generation) ended by itself in time. Idempotent.
  void Shutdown(absl::Duration grace);
  // Blocks until Shutdown has finished.
  void Wait();

  ServerStats stats() const;
  // Prometheus text exposition of the metrics (as served at /metrics and by
  // the Stats RPC).
  std::string MetricsText() const;
  // The /metrics port; 0 when ServerOptions::metrics_address is empty.
  int metrics_port() const;
  ContextManager& contexts();

 private:
  CloudServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_SERVER_H_
