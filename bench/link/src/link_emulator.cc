#include "tandem/bench/link_emulator.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <list>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace tandem::bench {
namespace {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

constexpr size_t kReadChunk = 64 << 10;
// Packets due within this slack of "now" are written in the same burst: poll
// cannot sleep that precisely anyway, and one write beats many.
constexpr auto kDeliverySlack = std::chrono::microseconds(20);

Clock::duration ToClock(absl::Duration d) {
  return std::chrono::duration_cast<Clock::duration>(absl::ToChronoNanoseconds(d));
}

std::string ErrnoText(const char* what) { return absl::StrCat(what, ": ", std::strerror(errno)); }

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL, 0);
  if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

// close() with SO_LINGER {on, 0}: the kernel sends RST instead of FIN.
void ResetAndClose(int fd) {
  if (fd < 0) return;
  linger lg{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(fd);
}

void WakeFd(int fd) {
  uint64_t one = 1;
  ssize_t ignored = write(fd, &one, sizeof(one));
  (void)ignored;
}

void DrainFd(int fd) {
  uint64_t value;
  ssize_t ignored = read(fd, &value, sizeof(value));
  (void)ignored;
}

absl::StatusOr<sockaddr_storage> Resolve(const std::string& host, int port, socklen_t* len) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const std::string port_text = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), port_text.c_str(), &hints, &result);
  if (rc != 0 || result == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve '", host, "': ", gai_strerror(rc)));
  }
  sockaddr_storage storage{};
  std::memcpy(&storage, result->ai_addr, result->ai_addrlen);
  *len = result->ai_addrlen;
  freeaddrinfo(result);
  return storage;
}

// What a connection thread needs from the shared state each iteration.
struct Snapshot {
  bool cut = false;
  bool blackhole_restored = false;  // a black-hole cut has ended at `restored_at`
  TimePoint cut_began;
  TimePoint restored_at;
  Clock::duration delay[2];
};

}  // namespace

class LinkEmulator::Impl {
 public:
  explicit Impl(const LinkEmulatorOptions& options) : options_(options) {
    profile_ = options.profile;
  }
  ~Impl();

  absl::Status Listen();
  void StartThreads();

  int port() const { return port_; }
  const LinkEmulatorOptions& options() const { return options_; }

  LinkProfile profile() const {
    absl::MutexLock lock(&mu_);
    return profile_;
  }
  void SetProfile(const LinkProfile& profile);
  void Cut(CutMode mode);
  void Restore();
  bool is_cut() const {
    absl::MutexLock lock(&mu_);
    return cut_;
  }
  void ScheduleCut(absl::Duration after, absl::Duration length, CutMode mode);
  LinkStats stats() const;

  // Called by connection threads.
  Snapshot TakeSnapshot() const;
  // Serialises `bytes` packets onto direction `dir` (0 = up, 1 = down);
  // returns each packet's departure end time (when its last bit left).
  void Serialise(int dir, const std::vector<size_t>& packet_sizes, TimePoint now,
                 std::vector<TimePoint>* ends, DirectionProfile* profile);

  std::atomic<int64_t> bytes[2] = {0, 0};
  std::atomic<int64_t> packets[2] = {0, 0};
  std::atomic<int64_t> packets_stalled{0};
  std::atomic<int64_t> connections_accepted{0};
  std::atomic<int64_t> connections_open{0};
  std::atomic<int64_t> connections_reset{0};
  std::atomic<int64_t> cuts{0};

 private:
  class Connection;

  void ListenerLoop();
  void TimerLoop();
  void Accept();
  void ReapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const LinkEmulatorOptions options_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;
  int port_ = 0;
  sockaddr_storage target_{};
  socklen_t target_len_ = 0;
  std::thread listener_;
  std::thread timer_;

  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  LinkProfile profile_ ABSL_GUARDED_BY(mu_);
  bool cut_ ABSL_GUARDED_BY(mu_) = false;
  CutMode cut_mode_ ABSL_GUARDED_BY(mu_) = CutMode::kReset;
  TimePoint cut_began_ ABSL_GUARDED_BY(mu_);
  bool blackhole_restored_ ABSL_GUARDED_BY(mu_) = false;
  TimePoint restored_at_ ABSL_GUARDED_BY(mu_);
  TimePoint link_free_at_[2] ABSL_GUARDED_BY(mu_);
  std::list<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
  uint64_t next_connection_ ABSL_GUARDED_BY(mu_) = 0;

  // Scheduled cut (timer thread).
  std::optional<TimePoint> scheduled_cut_ ABSL_GUARDED_BY(mu_);
  std::optional<TimePoint> scheduled_restore_ ABSL_GUARDED_BY(mu_);
  absl::Duration scheduled_length_ ABSL_GUARDED_BY(mu_);
  CutMode scheduled_mode_ ABSL_GUARDED_BY(mu_) = CutMode::kReset;
  absl::CondVar timer_cv_;
};

// One proxied connection: one thread moves bytes both ways with ppoll.
class LinkEmulator::Impl::Connection {
 public:
  Connection(Impl* owner, int client_fd, int upstream_fd, uint64_t seed)
      : owner_(owner), rng_(seed) {
    fds_[0] = client_fd;
    fds_[1] = upstream_fd;
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    halves_[0].src = client_fd;
    halves_[0].dst = upstream_fd;
    halves_[1].src = upstream_fd;
    halves_[1].dst = client_fd;
  }
  ~Connection() {
    if (thread_.joinable()) thread_.join();
    if (wake_fd_ >= 0) close(wake_fd_);
  }

  void Start() { thread_ = std::thread([this] { Run(); }); }
  // Ends the connection with RST on both sides (a reset-mode cut).
  void Abort() {
    abort_.store(true);
    Wake();
  }
  // Ends the connection with FIN on both sides (emulator shutdown).
  void Stop() {
    stop_.store(true);
    Wake();
  }
  void Wake() { WakeFd(wake_fd_); }
  bool done() const { return done_.load(); }

 private:
  struct Packet {
    TimePoint sent;
    TimePoint deliver;
    std::string bytes;
  };
  struct Half {
    int src = -1;
    int dst = -1;
    std::deque<Packet> queue;
    int64_t queued_bytes = 0;
    bool src_eof = false;
    bool dst_shut = false;
    std::string out;
    size_t out_offset = 0;
    TimePoint last_deliver;
  };

  TimePoint EffectiveDeliver(int dir, const Packet& p, const Snapshot& s) const {
    if (s.blackhole_restored && p.deliver > s.cut_began && p.sent < s.restored_at) {
      return std::max(p.deliver, s.restored_at + s.delay[dir]);
    }
    return p.deliver;
  }

  void Enqueue(int dir, const char* data, size_t n) {
    std::vector<size_t> sizes;
    for (size_t offset = 0; offset < n; offset += kLinkPacketBytes) {
      sizes.push_back(std::min<size_t>(kLinkPacketBytes, n - offset));
    }
    const TimePoint now = Clock::now();
    std::vector<TimePoint> ends;
    DirectionProfile profile;
    owner_->Serialise(dir, sizes, now, &ends, &profile);
    Half& half = halves_[dir];
    const auto delay = ToClock(profile.delay);
    const auto jitter = ToClock(profile.jitter);
    std::uniform_real_distribution<double> unit(-1.0, 1.0);
    std::bernoulli_distribution lost(std::clamp(profile.loss, 0.0, 1.0));
    size_t offset = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      Clock::duration travel = delay;
      if (jitter.count() > 0) {
        travel += std::chrono::duration_cast<Clock::duration>(jitter * unit(rng_));
        if (travel.count() < 0) travel = Clock::duration::zero();
      }
      if (profile.loss > 0 && lost(rng_)) {
        travel += ToClock(profile.loss_stall);
        owner_->packets_stalled.fetch_add(1);
      }
      TimePoint deliver = std::max(ends[i] + travel, half.last_deliver);
      half.last_deliver = deliver;
      half.queue.push_back(Packet{now, deliver, std::string(data + offset, sizes[i])});
      half.queued_bytes += static_cast<int64_t>(sizes[i]);
      offset += sizes[i];
    }
  }

  // Returns false when the destination failed (reset by its peer).
  bool Flush(Half& half) {
    while (half.out_offset < half.out.size()) {
      ssize_t n = send(half.dst, half.out.data() + half.out_offset, half.out.size() - half.out_offset,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        half.out_offset += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    half.out.clear();
    half.out_offset = 0;
    return true;
  }

  void Run() {
    std::vector<char> buffer(kReadChunk);
    bool reset = false;
    while (true) {
      if (abort_.load()) {
        reset = true;
        break;
      }
      if (stop_.load()) break;
      // While cut (black hole; a reset-mode cut aborts instead) nothing moves.
      const Snapshot snap = owner_->TakeSnapshot();
      const TimePoint now = Clock::now();
      std::optional<TimePoint> next;
      bool failed = false;
      for (int dir = 0; dir < 2; ++dir) {
        Half& half = halves_[dir];
        if (!snap.cut) {
          while (!half.queue.empty()) {
            const Packet& p = half.queue.front();
            const TimePoint when = EffectiveDeliver(dir, p, snap);
            if (when > now + kDeliverySlack) {
              next = next ? std::min(*next, when) : when;
              break;
            }
            half.out += p.bytes;
            half.queued_bytes -= static_cast<int64_t>(p.bytes.size());
            owner_->bytes[dir].fetch_add(static_cast<int64_t>(p.bytes.size()));
            owner_->packets[dir].fetch_add(1);
            half.queue.pop_front();
          }
        }
        if (!Flush(half)) failed = true;
        if (half.src_eof && half.queue.empty() && half.out.empty() && !half.dst_shut) {
          shutdown(half.dst, SHUT_WR);
          half.dst_shut = true;
        }
      }
      if (failed) {
        reset = true;
        break;
      }
      if (halves_[0].dst_shut && halves_[1].dst_shut) break;

      pollfd pfds[3];
      for (int i = 0; i < 2; ++i) {
        pfds[i].fd = fds_[i];
        pfds[i].events = 0;
        pfds[i].revents = 0;
      }
      for (int dir = 0; dir < 2; ++dir) {
        Half& half = halves_[dir];
        const int src_index = dir;       // up reads fds_[0], down reads fds_[1]
        const int dst_index = 1 - dir;
        if (!half.src_eof && half.queued_bytes < owner_->options().max_queued_bytes) {
          pfds[src_index].events |= POLLIN;
        }
        if (!half.out.empty()) pfds[dst_index].events |= POLLOUT;
      }
      pfds[2].fd = wake_fd_;
      pfds[2].events = POLLIN;
      pfds[2].revents = 0;
      timespec timeout{};
      timespec* timeout_ptr = nullptr;
      if (next) {
        auto wait = std::max(Clock::duration::zero(), *next - Clock::now());
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
        timeout.tv_sec = static_cast<time_t>(ns / 1000000000);
        timeout.tv_nsec = static_cast<long>(ns % 1000000000);
        timeout_ptr = &timeout;
      }
      int rc = ppoll(pfds, 3, timeout_ptr, nullptr);
      if (rc < 0) {
        if (errno == EINTR) continue;
        reset = true;
        break;
      }
      if (pfds[2].revents & POLLIN) DrainFd(wake_fd_);
      for (int dir = 0; dir < 2; ++dir) {
        Half& half = halves_[dir];
        const pollfd& p = pfds[dir];
        if (half.src_eof || !(p.events & POLLIN)) continue;
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
        // Take everything the sender has written so far: bytes left in the
        // kernel would reach the emulated link only at the next read, and the
        // link would idle meanwhile if this thread was descheduled.
        while (half.queued_bytes < owner_->options().max_queued_bytes) {
          ssize_t n = recv(half.src, buffer.data(), buffer.size(), MSG_DONTWAIT);
          if (n > 0) {
            Enqueue(dir, buffer.data(), static_cast<size_t>(n));
            if (static_cast<size_t>(n) < buffer.size()) break;
            continue;
          }
          if (n == 0) {
            half.src_eof = true;
          } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            failed = true;
          }
          break;
        }
      }
      if (failed) {
        reset = true;
        break;
      }
    }
    if (reset) {
      // Counted before the RST goes out, so a peer that saw it sees the count.
      if (abort_.load()) owner_->connections_reset.fetch_add(1);
      ResetAndClose(fds_[0]);
      ResetAndClose(fds_[1]);
    } else {
      shutdown(fds_[0], SHUT_RDWR);
      shutdown(fds_[1], SHUT_RDWR);
      close(fds_[0]);
      close(fds_[1]);
    }
    owner_->connections_open.fetch_sub(1);
    done_.store(true);
  }

  Impl* owner_;
  int fds_[2];
  int wake_fd_ = -1;
  Half halves_[2];
  std::mt19937_64 rng_;
  std::atomic<bool> abort_{false};
  std::atomic<bool> stop_{false};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

absl::Status LinkEmulator::Impl::Listen() {
  if (options_.target_port <= 0 || options_.target_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("link emulator: target_port must be in [1, 65535], got ", options_.target_port));
  }
  if (options_.listen_port < 0 || options_.listen_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("link emulator: listen_port must be in [0, 65535], got ", options_.listen_port));
  }
  if (options_.max_queued_bytes <= 0) {
    return absl::InvalidArgumentError("link emulator: max_queued_bytes must be positive");
  }
  for (const DirectionProfile* d : {&options_.profile.up, &options_.profile.down}) {
    if (d->delay < absl::ZeroDuration() || d->jitter < absl::ZeroDuration() ||
        d->bandwidth_bps < 0 || d->loss < 0 || d->loss > 1 || d->loss_stall < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          "link emulator: delays, jitter, bandwidth and stalls must be >= 0 and loss in [0, 1]");
    }
  }
  auto target = Resolve(options_.target_host, options_.target_port, &target_len_);
  if (!target.ok()) return target.status();
  target_ = *target;
  socklen_t listen_len = 0;
  auto listen_addr = Resolve(options_.listen_host, options_.listen_port, &listen_len);
  if (!listen_addr.ok()) return listen_addr.status();

  listen_fd_ = socket(listen_addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) return absl::InternalError(ErrnoText("link emulator: socket"));
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(listen_fd_, reinterpret_cast<const sockaddr*>(&*listen_addr), listen_len) != 0) {
    return absl::UnavailableError(ErrnoText(
        absl::StrCat("link emulator: bind ", options_.listen_host, ":", options_.listen_port).c_str()));
  }
  if (listen(listen_fd_, 128) != 0) return absl::InternalError(ErrnoText("link emulator: listen"));
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  port_ = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return absl::InternalError(ErrnoText("link emulator: eventfd"));
  return absl::OkStatus();
}

void LinkEmulator::Impl::StartThreads() {
  listener_ = std::thread([this] { ListenerLoop(); });
  timer_ = std::thread([this] { TimerLoop(); });
}

LinkEmulator::Impl::~Impl() {
  std::list<std::unique_ptr<Connection>> connections;
  {
    absl::MutexLock lock(&mu_);
    shutdown_ = true;
    connections.swap(connections_);
  }
  timer_cv_.SignalAll();
  if (wake_fd_ >= 0) WakeFd(wake_fd_);
  if (listener_.joinable()) listener_.join();
  if (timer_.joinable()) timer_.join();
  for (auto& c : connections) c->Stop();
  connections.clear();  // joins each connection's thread
  if (listen_fd_ >= 0) close(listen_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void LinkEmulator::Impl::ListenerLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (shutdown_) return;
      ReapLocked();
    }
    pollfd pfds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int rc = poll(pfds, 2, 200);
    if (rc < 0 && errno != EINTR) return;
    if (pfds[1].revents & POLLIN) DrainFd(wake_fd_);
    if (pfds[0].revents & POLLIN) Accept();
  }
}

void LinkEmulator::Impl::Accept() {
  while (true) {
    int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (client < 0) return;  // EAGAIN: nothing more to accept
    connections_accepted.fetch_add(1);
    bool refuse;
    {
      absl::MutexLock lock(&mu_);
      refuse = cut_ && cut_mode_ == CutMode::kReset;
    }
    if (refuse) {
      connections_reset.fetch_add(1);
      ResetAndClose(client);
      continue;
    }
    int upstream = socket(target_.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (upstream < 0 ||
        connect(upstream, reinterpret_cast<const sockaddr*>(&target_), target_len_) != 0) {
      if (upstream >= 0) close(upstream);
      ResetAndClose(client);
      continue;
    }
    SetNonBlocking(upstream);
    SetNoDelay(upstream);
    SetNoDelay(client);
    absl::MutexLock lock(&mu_);
    if (shutdown_) {
      close(upstream);
      close(client);
      return;
    }
    connections_open.fetch_add(1);
    auto connection =
        std::make_unique<Connection>(this, client, upstream, options_.seed + next_connection_++);
    connection->Start();
    connections_.push_back(std::move(connection));
  }
}

void LinkEmulator::Impl::ReapLocked() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if ((*it)->done()) {
      it = connections_.erase(it);  // joins a thread that has finished
    } else {
      ++it;
    }
  }
}

void LinkEmulator::Impl::TimerLoop() {
  absl::MutexLock lock(&mu_);
  while (!shutdown_) {
    std::optional<TimePoint> next;
    if (scheduled_cut_) next = scheduled_cut_;
    if (scheduled_restore_ && (!next || *scheduled_restore_ < *next)) next = scheduled_restore_;
    if (!next) {
      timer_cv_.Wait(&mu_);
      continue;
    }
    const TimePoint now = Clock::now();
    if (now < *next) {
      timer_cv_.WaitWithTimeout(&mu_, absl::FromChrono(*next - now));
      continue;
    }
    if (scheduled_cut_ && *scheduled_cut_ <= now) {
      const TimePoint began = *scheduled_cut_;
      scheduled_cut_.reset();
      if (scheduled_length_ != absl::InfiniteDuration()) {
        scheduled_restore_ = began + ToClock(scheduled_length_);
      }
      const CutMode mode = scheduled_mode_;
      mu_.Unlock();
      Cut(mode);
      mu_.Lock();
    } else if (scheduled_restore_ && *scheduled_restore_ <= now) {
      scheduled_restore_.reset();
      mu_.Unlock();
      Restore();
      mu_.Lock();
    }
  }
}

void LinkEmulator::Impl::SetProfile(const LinkProfile& profile) {
  absl::MutexLock lock(&mu_);
  profile_ = profile;
  for (auto& c : connections_) c->Wake();
}

void LinkEmulator::Impl::Cut(CutMode mode) {
  absl::MutexLock lock(&mu_);
  if (cut_) return;
  cut_ = true;
  cut_mode_ = mode;
  cut_began_ = Clock::now();
  blackhole_restored_ = false;
  cuts.fetch_add(1);
  for (auto& c : connections_) {
    if (mode == CutMode::kReset) {
      c->Abort();
    } else {
      c->Wake();
    }
  }
}

void LinkEmulator::Impl::Restore() {
  absl::MutexLock lock(&mu_);
  if (!cut_) return;
  cut_ = false;
  restored_at_ = Clock::now();
  blackhole_restored_ = cut_mode_ == CutMode::kBlackHole;
  // Serialisation restarts from the restore: a link that was down has no queue.
  for (TimePoint& t : link_free_at_) t = std::max(t, restored_at_);
  for (auto& c : connections_) c->Wake();
}

void LinkEmulator::Impl::ScheduleCut(absl::Duration after, absl::Duration length, CutMode mode) {
  absl::MutexLock lock(&mu_);
  scheduled_cut_ = Clock::now() + ToClock(std::max(after, absl::ZeroDuration()));
  scheduled_restore_.reset();
  scheduled_length_ = std::max(length, absl::ZeroDuration());
  scheduled_mode_ = mode;
  timer_cv_.SignalAll();
}

Snapshot LinkEmulator::Impl::TakeSnapshot() const {
  absl::MutexLock lock(&mu_);
  Snapshot s;
  s.cut = cut_;
  s.blackhole_restored = blackhole_restored_;
  s.cut_began = cut_began_;
  s.restored_at = restored_at_;
  s.delay[0] = ToClock(profile_.up.delay);
  s.delay[1] = ToClock(profile_.down.delay);
  return s;
}

void LinkEmulator::Impl::Serialise(int dir, const std::vector<size_t>& packet_sizes, TimePoint now,
                                   std::vector<TimePoint>* ends, DirectionProfile* profile) {
  absl::MutexLock lock(&mu_);
  *profile = dir == 0 ? profile_.up : profile_.down;
  TimePoint free_at = std::max(link_free_at_[dir], now);
  ends->clear();
  for (size_t bytes : packet_sizes) {
    if (profile->bandwidth_bps > 0) {
      free_at += std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(static_cast<double>(bytes) * 8.0 / profile->bandwidth_bps));
    }
    ends->push_back(free_at);
  }
  link_free_at_[dir] = free_at;
}

LinkStats LinkEmulator::Impl::stats() const {
  LinkStats s;
  s.bytes_up = bytes[0].load();
  s.bytes_down = bytes[1].load();
  s.packets_up = packets[0].load();
  s.packets_down = packets[1].load();
  s.packets_stalled = packets_stalled.load();
  s.connections_accepted = connections_accepted.load();
  s.connections_open = connections_open.load();
  s.connections_reset = connections_reset.load();
  s.cuts = cuts.load();
  return s;
}

// ---------------------------------------------------------------------------

LinkProfile LinkProfile::Symmetric(absl::Duration rtt, double bandwidth_bps) {
  LinkProfile p;
  p.up.delay = p.down.delay = rtt / 2;
  p.up.bandwidth_bps = p.down.bandwidth_bps = bandwidth_bps;
  return p;
}

absl::StatusOr<LinkProfile> LinkProfile::Named(const std::string& name) {
  if (name == "loopback") return LinkProfile{};
  if (name == "lan") return Symmetric(absl::Milliseconds(1), 1e9);
  if (name == "wifi") {
    LinkProfile p = Symmetric(absl::Milliseconds(20), 50e6);
    p.up.jitter = p.down.jitter = absl::Milliseconds(1);
    return p;
  }
  if (name == "4g") {
    LinkProfile p = Symmetric(absl::Milliseconds(60), 0);
    p.up.bandwidth_bps = 10e6;
    p.down.bandwidth_bps = 30e6;
    p.up.jitter = p.down.jitter = absl::Microseconds(2500);
    return p;
  }
  if (name == "poor") {
    LinkProfile p = Symmetric(absl::Milliseconds(150), 0);
    p.up.bandwidth_bps = 1e6;
    p.down.bandwidth_bps = 2e6;
    p.up.jitter = p.down.jitter = absl::Microseconds(7500);
    p.up.loss = p.down.loss = 0.01;
    return p;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown link profile '", name, "' (known: loopback, lan, wifi, 4g, poor)"));
}

absl::StatusOr<std::unique_ptr<LinkEmulator>> LinkEmulator::Start(
    const LinkEmulatorOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  absl::Status status = impl->Listen();
  if (!status.ok()) return status;
  impl->StartThreads();
  return std::unique_ptr<LinkEmulator>(new LinkEmulator(std::move(impl)));
}

LinkEmulator::LinkEmulator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LinkEmulator::~LinkEmulator() = default;

int LinkEmulator::port() const { return impl_->port(); }
std::string LinkEmulator::address() const {
  const std::string& host = impl_->options().listen_host;
  const bool v6 = host.find(':') != std::string::npos;
  return v6 ? absl::StrCat("[", host, "]:", impl_->port()) : absl::StrCat(host, ":", impl_->port());
}
LinkProfile LinkEmulator::profile() const { return impl_->profile(); }
void LinkEmulator::SetProfile(const LinkProfile& profile) { impl_->SetProfile(profile); }
void LinkEmulator::Cut(CutMode mode) { impl_->Cut(mode); }
void LinkEmulator::Restore() { impl_->Restore(); }
bool LinkEmulator::is_cut() const { return impl_->is_cut(); }
void LinkEmulator::ScheduleCut(absl::Duration after, absl::Duration length, CutMode mode) {
  impl_->ScheduleCut(after, length, mode);
}
LinkStats LinkEmulator::stats() const { return impl_->stats(); }

}  // namespace tandem::bench
