// tandem-cloud: the continuation server.
//
//   tandem-cloud --model models/tandem-tiny --port 50051
//
// Prints "tandem-cloud listening on HOST:PORT" on stdout once it accepts
// connections; SIGINT / SIGTERM shut it down gracefully (refuse new sessions,
// answer in-flight requests for up to --grace-seconds, close every stream);
// SIGHUP re-reads the --api-keys file.
#include <malloc.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include <grpcpp/grpcpp.h>
#include "tandem/wire/tandem.grpc.pb.h"
#include "tandem/cloud/server.h"
#include "tandem/flags.h"
#include "tandem/status_macros.h"
#include "tandem/threads.h"

namespace {

constexpr char kUsage[] = R"(usage: tandem-cloud --model DIR [options]
       tandem-cloud --print-stats HOST:PORT [--api-key KEY]   (a running server's counters)

  --model DIR              Hugging Face checkpoint directory (required)
  --split S                layers [S, L) run here; default: the checkpoint's exits.json split
  --listen HOST            address to bind (default 127.0.0.1; 0.0.0.0 for every interface;
                           IPv6 as ::1 or [::1])
  --port P                 port (default 50051; 0 picks a free one)
  --port-file FILE         write the bound port to FILE once listening
  --max-sessions N         sessions held at once (default 1024)
  --memory-budget BYTES    KV caches + queued rows over all sessions (default 1G);
                           suffixes K, M, G, T accepted (1K = 1024)
  --max-positions N        positions per session (default: the model's context)
  --ttl-seconds T          drop sessions idle this long (default 600)
  --max-message-bytes N    larger messages are refused (default 4M; 1K to 2147483647)
  --max-batch-rows N       rows per scheduler iteration (default 256)
  --max-streams N          session streams open at once (default 1024); more are refused
                           with RESOURCE_EXHAUSTED
  --max-streams-per-identity N
                           the same per API-key identity / client certificate (default 0
                           = only --max-streams)
  --stream-idle-seconds T  end a stream that sends nothing for T seconds (default 120;
                           0 = never); its session stays held for a reconnect
  --stream-open-seconds T  end a stream that sends no Open for T seconds (default 30)
  --keepalive-seconds T    ping a quiet connection after T seconds (default 30) ...
  --keepalive-timeout-seconds T
                           ... and close it when no answer comes within T (default 10)
  --max-session-batch-rows N
                           rows one session adds to an iteration while others wait
                           (default 64; 0 = first come, first served, never split)
  --max-sessions-per-identity N
                           sessions one identity (API key / certificate) may hold;
                           its own idle sessions are evicted first (default 0 = no quota)
  --max-queued-rows-per-identity N
                           rows one identity may have queued and not yet run (default 0)
  --rows-per-second-per-identity R
                           rows one identity may upload per second, token bucket
                           (default 0 = no quota)
  --rows-burst-per-identity N
                           the bucket's size (default 0 = one second's worth)
  --api-keys FILE          require API keys: lines of `identity key`; re-read when the
                           file changes and on SIGHUP (revoked keys are refused at once)
  --tls-cert FILE          PEM certificate (with --tls-key: serve TLS)
  --tls-key FILE           PEM private key
  --tls-client-ca FILE     mutual TLS: clients must present a certificate signed by a CA
                           in FILE (without --api-keys, its common name is the identity)
  --metrics-listen ADDR    serve Prometheus metrics at http://ADDR/metrics (HOST:PORT or a
                           port on 127.0.0.1; off by default; unauthenticated)
  --threads N              compute threads (default 2)
  --stats-interval T       log a stats line every T seconds (default 60; 0 = never)
  --grace-seconds T        drain time on SIGTERM (default 10)
  --no-token-resync        do not load layers [0, S): edges must resync with hidden states
  --quiet                  no structured log on stderr
)";

// Asks a running server for its counters (the Stats RPC) and prints them.
absl::Status PrintStats(const std::string& address, const std::string& api_key) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = tandem::wire::Continuation::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (!api_key.empty()) context.AddMetadata("authorization", "Bearer " + api_key);
  tandem::wire::StatsRequest request;
  tandem::wire::StatsReply reply;
  grpc::Status status = stub->Stats(&context, request, &reply);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat(address, ": ", status.error_message()));
  }
  std::cout << reply.text();
  return absl::OkStatus();
}

absl::Status Run(int argc, char** argv) {
  using tandem::flags::Flags;
  absl::StatusOr<Flags> parsed = Flags::Parse(
      argc - 1, argv + 1,
      {"model", "split", "listen", "port", "port-file", "max-sessions", "memory-budget",
       "max-positions", "ttl-seconds", "max-message-bytes", "max-batch-rows", "api-keys",
       "max-streams", "max-streams-per-identity", "stream-idle-seconds", "stream-open-seconds",
       "keepalive-seconds", "keepalive-timeout-seconds",
       "max-session-batch-rows", "max-sessions-per-identity", "max-queued-rows-per-identity",
       "rows-per-second-per-identity", "rows-burst-per-identity",
       "tls-cert", "tls-key", "tls-client-ca", "metrics-listen", "threads", "stats-interval", "grace-seconds",
       "print-stats", "api-key"},
      {"no-token-resync", "quiet", "help"});
  if (!parsed.ok()) return parsed.status();
  const Flags& flags = *parsed;
  if (flags.Has("help")) {
    std::cout << kUsage;
    return absl::OkStatus();
  }
  if (flags.Has("print-stats")) return PrintStats(flags.Get("print-stats"), flags.Get("api-key"));
  if (!flags.Has("model")) return absl::InvalidArgumentError("--model is required");

  tandem::cloud::ServerOptions options;
  options.model.model_dir = flags.Get("model");
  options.model.token_resync = !flags.Has("no-token-resync");
  // Every number is range-checked here; a value out of range is refused naming
  // what was typed (never narrowed: --max-message-bytes goes to gRPC as an int).
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  TANDEM_ASSIGN_OR_RETURN(options.model.split, flags.GetInt<int64_t>("split", 0, 0, 4096));
  TANDEM_ASSIGN_OR_RETURN(int port, flags.GetInt<int>("port", 50051, 0, 65535));
  TANDEM_ASSIGN_OR_RETURN(options.listen_address,
                          tandem::cloud::ListenAddress(flags.Get("listen", "127.0.0.1"), port));
  TANDEM_ASSIGN_OR_RETURN(options.limits.max_sessions,
                          flags.GetInt<int64_t>("max-sessions", 1024, 1, 1 << 24));
  TANDEM_ASSIGN_OR_RETURN(
      options.limits.memory_budget_bytes,
      flags.GetBytes("memory-budget", int64_t{1} << 30, 1 << 20, int64_t{1} << 50));
  TANDEM_ASSIGN_OR_RETURN(options.limits.max_positions,
                          flags.GetInt<int64_t>("max-positions", 0, 0, kInt32Max));
  TANDEM_ASSIGN_OR_RETURN(options.limits.idle_ttl,
                          flags.GetSeconds("ttl-seconds", 600, 0, 365 * 24 * 3600.0));
  TANDEM_ASSIGN_OR_RETURN(options.limits.max_batch_rows,
                          flags.GetInt<int64_t>("max-batch-rows", 256, 1, 1 << 20));
  TANDEM_ASSIGN_OR_RETURN(options.limits.max_session_batch_rows,
                          flags.GetInt<int64_t>("max-session-batch-rows", 64, 0, 1 << 20));
  TANDEM_ASSIGN_OR_RETURN(options.limits.max_sessions_per_identity,
                          flags.GetInt<int64_t>("max-sessions-per-identity", 0, 0, 1 << 24));
  TANDEM_ASSIGN_OR_RETURN(options.limits.max_queued_rows_per_identity,
                          flags.GetInt<int64_t>("max-queued-rows-per-identity", 0, 0, kInt32Max));
  TANDEM_ASSIGN_OR_RETURN(options.limits.rows_per_second_per_identity,
                          flags.GetDouble("rows-per-second-per-identity", 0, 0, 1e9));
  TANDEM_ASSIGN_OR_RETURN(options.limits.rows_burst_per_identity,
                          flags.GetInt<int64_t>("rows-burst-per-identity", 0, 0, kInt32Max));
  TANDEM_ASSIGN_OR_RETURN(options.max_message_bytes,
                          flags.GetBytes("max-message-bytes", 4 << 20, 1024, kInt32Max));
  TANDEM_ASSIGN_OR_RETURN(options.max_streams,
                          flags.GetInt<int64_t>("max-streams", 1024, 1, 1 << 24));
  TANDEM_ASSIGN_OR_RETURN(options.max_streams_per_identity,
                          flags.GetInt<int64_t>("max-streams-per-identity", 0, 0, 1 << 24));
  TANDEM_ASSIGN_OR_RETURN(options.stream_idle_timeout,
                          flags.GetSeconds("stream-idle-seconds", 120, 0, 365 * 24 * 3600.0));
  TANDEM_ASSIGN_OR_RETURN(options.stream_open_timeout,
                          flags.GetSeconds("stream-open-seconds", 30, 0, 365 * 24 * 3600.0));
  TANDEM_ASSIGN_OR_RETURN(options.keepalive_time,
                          flags.GetSeconds("keepalive-seconds", 30, 1, 24 * 3600.0));
  TANDEM_ASSIGN_OR_RETURN(options.keepalive_timeout,
                          flags.GetSeconds("keepalive-timeout-seconds", 10, 1, 3600.0));
  options.api_keys_file = flags.Get("api-keys");
  options.tls_cert_file = flags.Get("tls-cert");
  options.tls_key_file = flags.Get("tls-key");
  options.tls_client_ca_file = flags.Get("tls-client-ca");
  if (flags.Has("metrics-listen")) {
    // HOST:PORT, or just PORT (loopback).
    const std::string metrics = flags.Get("metrics-listen");
    if (metrics.find(':') == std::string::npos) {
      TANDEM_ASSIGN_OR_RETURN(int metrics_port,
                              tandem::flags::ParseInt("--metrics-listen", metrics, 0, 65535));
      options.metrics_address = absl::StrCat("127.0.0.1:", metrics_port);
    } else {
      options.metrics_address = metrics;
    }
  }
  TANDEM_ASSIGN_OR_RETURN(options.stats_interval,
                          flags.GetSeconds("stats-interval", 60, 0, 365 * 24 * 3600.0));
  TANDEM_ASSIGN_OR_RETURN(absl::Duration grace,
                          flags.GetSeconds("grace-seconds", 10, 0, 24 * 3600.0));
  TANDEM_ASSIGN_OR_RETURN(int threads, flags.GetInt<int>("threads", 2, 0, 4096));
  tandem::SetComputeThreads(threads);
  // Blocks of 1 MiB and more (KV caches) are mmapped, so freeing one returns
  // it to the system at once: glibc's default threshold rises to the size of
  // the last freed mmapped block, after which caches come from the arenas and
  // stay resident when freed. Measured in docs/decisions.md ("Hardening:
  // resident memory"); the context manager also trims after large frees.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  if (!flags.Has("quiet")) options.log = &std::cerr;

  // Signals are taken synchronously by this thread; every other thread
  // (started below) inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<tandem::cloud::CloudServer> server,
                          tandem::cloud::CloudServer::Start(options));
  if (flags.Has("port-file")) {
    std::ofstream(flags.Get("port-file")) << server->port() << "\n";
  }
  std::cout << "tandem-cloud listening on " << server->address() << std::endl;
  if (server->metrics_port() > 0) {
    std::cout << "tandem-cloud metrics on port " << server->metrics_port() << " (/metrics)"
              << std::endl;
  }
  int received = 0;
  while (sigwait(&signals, &received) == 0 && received == SIGHUP) {
    absl::Status reloaded = server->ReloadApiKeys();  // logged by the server
    std::cout << "tandem-cloud: SIGHUP, API keys "
              << (reloaded.ok() ? "reloaded" : "kept: " + std::string(reloaded.message()))
              << std::endl;
  }
  std::cout << "tandem-cloud: " << (received == SIGINT ? "SIGINT" : "SIGTERM")
            << ", shutting down" << std::endl;
  server->Shutdown(grace);
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::Status status = Run(argc, argv);
  if (!status.ok()) {
    std::cerr << "tandem-cloud: " << status << "\n";
    if (absl::IsInvalidArgument(status)) std::cerr << "\n" << kUsage;
    return 1;
  }
  return 0;
}
