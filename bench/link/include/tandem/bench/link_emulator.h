// A TCP proxy that emulates a network link between an edge and a cloud server:
// one-way delay and jitter per direction, a bandwidth cap per direction with
// serialisation delay (bytes queue behind each other as on a real link), random
// loss modelled as stalls, and cuts (scheduled or on demand) followed by
// recovery. Kernel netem is not available on the machines this project runs on
// (docs/decisions.md, "Benchmarks"), so the benchmark suite and the loopback
// end-to-end tests put this proxy between `EdgeSession` and `tandem-cloud`.
//
// It forwards any number of long-lived, bidirectional TCP connections at once
// (gRPC multiplexes every stream over one HTTP/2 connection). Byte order within
// a connection is preserved; nothing is reordered or duplicated.
//
// The model, per direction ("up" = client -> target, i.e. edge -> cloud;
// "down" = target -> client):
//   - bytes read from the sender are cut into packets of at most
//     `kLinkPacketBytes`;
//   - each packet is serialised onto the direction's link: it starts when the
//     link is free (the link is shared by every connection in that direction,
//     as one radio or one uplink is) and takes `bytes * 8 / bandwidth` seconds;
//   - it then travels `delay + U(-jitter, +jitter)` (uniform, clamped at zero);
//   - with probability `loss` it is "lost" and arrives `loss_stall` later (TCP
//     retransmits it; everything behind it in the same connection waits —
//     head-of-line blocking);
//   - a packet is never delivered before the one sent ahead of it on the same
//     connection (TCP is in-order), so jitter never reorders bytes.
//
// Cuts: while the link is cut nothing is delivered in either direction.
//   - `CutMode::kReset`: every open connection is aborted with a TCP RST on
//     both sides at the moment of the cut, and connections accepted during the
//     cut are reset at once. Peers see "connection reset" (gRPC: UNAVAILABLE)
//     immediately — like a NAT rebinding or a server restart.
//   - `CutMode::kBlackHole`: connections stay open but silent; bytes sent during
//     the cut (and packets in flight when it began) are held and delivered
//     `delay` after the link is restored, as TCP retransmission would. New
//     connections are accepted (the emulator cannot hold back a loopback SYN)
//     but carry no bytes until the restore. Peers see only silence, so
//     deadlines and keepalives, not errors, detect it — like a tunnel or a
//     dead Wi-Fi.
//
// Thread-safety: `LinkEmulator` is thread-safe; every method may be called
// from any thread while traffic flows. Profile changes apply to bytes read
// after the change. One thread per connection plus one listener thread.
//
// Timing: the emulator sleeps with nanosecond-resolution `ppoll` timeouts on
// the monotonic clock; on an idle machine deliveries are within ~0.1 ms of
// their schedule. It adds its own cost (a copy and a wake-up per burst), so
// emulate links, not sub-0.1 ms latencies.
#ifndef TANDEM_BENCH_LINK_EMULATOR_H_
#define TANDEM_BENCH_LINK_EMULATOR_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tandem::bench {

// Largest packet the emulator serialises as one unit (an Ethernet MSS).
inline constexpr int kLinkPacketBytes = 1448;

// One direction of the link.
struct DirectionProfile {
  // One-way propagation delay. RTT = up.delay + down.delay (+ serialisation).
  absl::Duration delay = absl::ZeroDuration();
  // Each packet's delay is drawn uniformly from [delay - jitter, delay + jitter]
  // (clamped at zero), then held behind earlier packets of its connection.
  absl::Duration jitter = absl::ZeroDuration();
  // Bandwidth cap in bits per second (payload bytes * 8; TCP/IP headers are
  // not counted). 0 = unlimited.
  double bandwidth_bps = 0;
  // Probability that a packet is lost, in [0, 1]. A lost packet is not dropped
  // (TCP would resend it) but delivered `loss_stall` late.
  double loss = 0;
  // Extra delay of a lost packet: a retransmission timeout. Linux's minimum RTO
  // is 200 ms; fast retransmit would take about one RTT.
  absl::Duration loss_stall = absl::Milliseconds(200);
};

struct LinkProfile {
  DirectionProfile up;    // client -> target (edge -> cloud)
  DirectionProfile down;  // target -> client (cloud -> edge)

  // A symmetric link: `rtt / 2` each way, the same bandwidth both ways.
  static LinkProfile Symmetric(absl::Duration rtt, double bandwidth_bps);

  // Presets used by the benchmark suite (bench/README.md lists their values):
  // "loopback" (no shaping), "lan" (1 ms RTT, 1 Gbit/s), "wifi" (20 ms ± 2 ms,
  // 50 Mbit/s), "4g" (60 ms ± 5 ms, 10 Mbit/s up / 30 down), "poor" (150 ms ±
  // 15 ms, 1 Mbit/s up / 2 down, 1% loss). Unknown names are InvalidArgument.
  static absl::StatusOr<LinkProfile> Named(const std::string& name);
};

enum class CutMode {
  kReset,      // abort connections with RST; refuse (reset) new ones
  kBlackHole,  // hold every byte until the restore
};

// Counters since start. Bytes are payload bytes delivered to the receiver.
struct LinkStats {
  int64_t bytes_up = 0;
  int64_t bytes_down = 0;
  int64_t packets_up = 0;
  int64_t packets_down = 0;
  int64_t packets_stalled = 0;      // "lost" packets (delivered `loss_stall` late)
  int64_t connections_accepted = 0;
  int64_t connections_open = 0;
  int64_t connections_reset = 0;    // aborted by a reset-mode cut, or refused during one
  int64_t cuts = 0;                 // cuts begun (on demand or scheduled)
};

struct LinkEmulatorOptions {
  // Where to listen. Port 0 picks a free port (see LinkEmulator::port()).
  std::string listen_host = "127.0.0.1";
  int listen_port = 0;
  // Where to forward every accepted connection. Connecting is done when a
  // client connects; if it fails the client's connection is reset.
  std::string target_host = "127.0.0.1";
  int target_port = 0;
  LinkProfile profile;
  // Bytes one direction of one connection may hold before the emulator stops
  // reading from the sender (TCP back-pressure then reaches the sender).
  int64_t max_queued_bytes = 4 << 20;
  // Seed for jitter and loss (per connection: seed + connection number).
  uint64_t seed = 1;
};

class LinkEmulator {
 public:
  // Binds, listens and starts the listener thread. Errors: InvalidArgument
  // (bad options), Unavailable / Internal (socket errors, with errno text).
  static absl::StatusOr<std::unique_ptr<LinkEmulator>> Start(const LinkEmulatorOptions& options);

  // Stops accepting, closes every connection (FIN, not RST) and joins threads.
  ~LinkEmulator();
  LinkEmulator(const LinkEmulator&) = delete;
  LinkEmulator& operator=(const LinkEmulator&) = delete;

  int port() const;
  // "host:port" to give a client (e.g. CloudOptions::address).
  std::string address() const;

  LinkProfile profile() const;
  void SetProfile(const LinkProfile& profile);

  // Cuts the link now (no-op if already cut). See the file comment for modes.
  void Cut(CutMode mode);
  // Ends a cut (no-op if not cut). Black-holed bytes flow again.
  void Restore();
  bool is_cut() const;
  // Cuts the link `after` from now for `length`, then restores it, on a timer
  // thread. Replaces an earlier schedule that has not begun. `length` may be
  // absl::InfiniteDuration() (restore by hand).
  void ScheduleCut(absl::Duration after, absl::Duration length, CutMode mode);

  LinkStats stats() const;

  class Impl;

 private:
  explicit LinkEmulator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::bench

#endif  // TANDEM_BENCH_LINK_EMULATOR_H_
