// MetricsHttpServer: answers `GET /metrics` over HTTP/1.0 with a text produced
// on demand — the transport of the server's Prometheus metrics.
//
// Why not prometheus-cpp's own Exposer: it runs on civetweb, whose threads get
// a fixed 100 KB stack; in a process that loads libtorch, OpenBLAS and glog the
// static TLS alone is ~108 KB, so civetweb cannot start a thread ("Cannot
// create threads"). The metrics themselves (registry, histograms, text format)
// are prometheus-cpp's; only this small responder is ours.
//
// One thread, one connection at a time (scrapes are rare); a client gets 2 s
// to send its request head (at most 8 KiB) and is then dropped, so a silent
// connection cannot hold the endpoint. Thread-safe; Stop() is idempotent.
#ifndef TANDEM_CLOUD_SERVER_METRICS_HTTP_H_
#define TANDEM_CLOUD_SERVER_METRICS_HTTP_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace tandem::cloud {

class MetricsHttpServer {
 public:
  // Binds `address` ("host:port" with a numeric host, IPv6 in brackets; port
  // 0 = a free one) and serves `text()` at /metrics. InvalidArgument for a bad
  // address, Unavailable when it cannot bind.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, std::function<std::string()> text);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }
  void Stop();

 private:
  MetricsHttpServer() = default;
  void Loop();
  void Serve(int fd);

  std::function<std::string()> text_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};  // a pipe: writing to it ends Loop()
  int port_ = 0;
  std::atomic<bool> stopped_{false};
  std::thread thread_;
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_SERVER_METRICS_HTTP_H_
