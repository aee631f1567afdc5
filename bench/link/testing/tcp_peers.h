// Plain-socket loopback peers for testing and benchmarking the link emulator:
// a server that runs a handler per connection, an echo handler, a client
// connect, and exact send/receive. Blocking sockets with TCP_NODELAY.
#ifndef TANDEM_BENCH_LINK_TESTING_TCP_PEERS_H_
#define TANDEM_BENCH_LINK_TESTING_TCP_PEERS_H_

#include <chrono>
#include <cstddef>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace tandem::bench::testing {

// Listens on 127.0.0.1:<free port> and runs `handler(fd)` on a thread of its
// own for each connection (the server closes fd). Thread-compatible; the
// destructor shuts every connection down and joins.
class TcpServer {
 public:
  explicit TcpServer(std::function<void(int fd)> handler);
  ~TcpServer();
  TcpServer(const TcpServer&) = delete;
  TcpServer& operator=(const TcpServer&) = delete;

  // 0 if the server could not listen.
  int port() const { return port_; }

 private:
  std::function<void(int)> handler_;
  int fd_ = -1;
  int port_ = 0;
  std::thread accept_thread_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<int> client_fds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

// Echoes every byte back until the peer half-closes, then half-closes.
void Echo(int fd);

// Connects to 127.0.0.1:port; receives time out after `receive_timeout`, so a
// broken peer fails a test instead of hanging it. Returns -1 on failure.
int ConnectLoopback(int port,
                    std::chrono::milliseconds receive_timeout = std::chrono::milliseconds(10000));

// Sends / receives exactly n bytes; false on EOF, error or timeout.
bool SendAll(int fd, const char* data, size_t n);
bool RecvAll(int fd, char* data, size_t n);

}  // namespace tandem::bench::testing

#endif  // TANDEM_BENCH_LINK_TESTING_TCP_PEERS_H_
