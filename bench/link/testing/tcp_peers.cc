#include "testing/tcp_peers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

namespace tandem::bench::testing {

TcpServer::TcpServer(std::function<void(int)> handler) : handler_(std::move(handler)) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd_, 64) != 0 ||
      getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return;
  }
  port_ = ntohs(addr.sin_port);
  accept_thread_ = std::thread([this] {
    while (true) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      int on = 1;
      setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        close(c);
        return;
      }
      client_fds_.push_back(c);
      threads_.emplace_back([this, c] { handler_(c); });
    }
  });
}

TcpServer::~TcpServer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (int c : client_fds_) shutdown(c, SHUT_RDWR);
  }
  shutdown(fd_, SHUT_RDWR);
  close(fd_);
  if (accept_thread_.joinable()) accept_thread_.join();
  absl::MutexLock lock(&mu_);
  for (auto& t : threads_) t.join();
  for (int c : client_fds_) close(c);
}

void Echo(int fd) {
  char buffer[65536];
  while (true) {
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) {
      shutdown(fd, SHUT_WR);
      return;
    }
    if (!SendAll(fd, buffer, static_cast<size_t>(n))) return;
  }
}

int ConnectLoopback(int port, std::chrono::milliseconds receive_timeout) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  int on = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  timeval tv{static_cast<time_t>(receive_timeout.count() / 1000),
             static_cast<suseconds_t>((receive_timeout.count() % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

bool SendAll(int fd, const char* data, size_t n) {
  for (size_t off = 0; off < n;) {
    ssize_t w = send(fd, data + off, n - off, MSG_NOSIGNAL);
    if (w <= 0) return false;
    off += static_cast<size_t>(w);
  }
  return true;
}

bool RecvAll(int fd, char* data, size_t n) {
  for (size_t off = 0; off < n;) {
    ssize_t r = recv(fd, data + off, n - off, 0);
    if (r <= 0) return false;
    off += static_cast<size_t>(r);
  }
  return true;
}

}  // namespace tandem::bench::testing
