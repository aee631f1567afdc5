// ServerMetrics: the server's Prometheus metrics through prometheus-cpp (the
// standard C++ client library, Debian's prometheus-cpp-dev).
//  - counters and gauges of ServerStats, read at scrape time (sessions, streams,
//    memory, queued rows, tokens served, evictions, expirations, bytes, ...);
//  - latency histograms observed as each token is served: the scheduler
//    iteration that produced it (compute), the time it waited before that
//    iteration (queue wait) and both together (Continue latency);
//  - refusals by reason (the status code of every refused call or request).
// Served over HTTP at /metrics when Serve() is called (ServerOptions::
// metrics_address; off by default; see metrics_http.h for why the HTTP part is
// not prometheus-cpp's Exposer), and as text by the Stats RPC.
//
// Thread-safe.
#ifndef TANDEM_CLOUD_SERVER_METRICS_H_
#define TANDEM_CLOUD_SERVER_METRICS_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "tandem/cloud/server.h"

#include "server/metrics_http.h"

namespace prometheus {
class Histogram;
class Registry;
class Counter;
template <typename T>
class Family;
}  // namespace prometheus

namespace tandem::cloud {

class ServerMetrics {
 public:
  // `stats` is called at every scrape (any thread).
  explicit ServerMetrics(std::function<ServerStats()> stats);
  ~ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // Starts the HTTP endpoint on `address` ("host:port", port 0 = a free one).
  // Unavailable when it cannot bind. At most once.
  absl::Status Serve(const std::string& address);
  // The bound port; 0 when not serving.
  int port() const;

  // A token was served: `compute_seconds` is the wall time of the scheduler
  // iteration that produced it, `latency_seconds` the time from the Continue's
  // arrival to its answer (the rest is queue wait).
  void ObserveToken(double compute_seconds, double latency_seconds);
  // A call or request was refused with `code` (label reason="<code name>").
  void CountRefusal(absl::StatusCode code);

  // Prometheus text exposition of everything above.
  std::string Text() const;

 private:
  class StatsCollectable;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<StatsCollectable> stats_;
  prometheus::Histogram* compute_ = nullptr;
  prometheus::Histogram* queue_wait_ = nullptr;
  prometheus::Histogram* latency_ = nullptr;
  prometheus::Family<prometheus::Counter>* refusals_ = nullptr;
  std::unique_ptr<MetricsHttpServer> http_;
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_SERVER_METRICS_H_
