// tandem-link: the link emulator as a stand-alone TCP proxy (see
// bench/link/include/tandem/bench/link_emulator.h for the model it applies).
//
//   tandem-link --target 127.0.0.1:50051 --profile 4g [--port 0] [--port-file F]
//               [--rtt-ms 60 --up-mbps 10 --down-mbps 30 --jitter-ms 2 --loss 0.01]
//               [--cut-at-s 5 --cut-for-s 2 --cut-mode reset|blackhole]
//
// Prints "listening on HOST:PORT" once ready and runs until SIGINT/SIGTERM.
#include <csignal>
#include <fstream>
#include <iostream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tandem/flags.h"
#include "tandem/bench/link_emulator.h"
#include "tandem/status_macros.h"

namespace {

constexpr char kUsage[] = R"(tandem-link: a TCP proxy that emulates a network link.

  --target HOST:PORT   where to forward connections (required)
  --listen HOST        address to listen on (default 127.0.0.1)
  --port N             port to listen on; 0 = a free port (default 0)
  --port-file PATH     write the chosen port to PATH once listening
  --profile NAME       loopback | lan | wifi | 4g | poor (default loopback);
                       the flags below override parts of it
  --rtt-ms X           round-trip time: X/2 ms one-way delay each direction
  --delay-up-ms X      one-way delay client -> target
  --delay-down-ms X    one-way delay target -> client
  --jitter-ms X        per-packet delay spread (uniform +-X), both directions
  --up-mbps X          bandwidth client -> target, Mbit/s (0 = unlimited)
  --down-mbps X        bandwidth target -> client, Mbit/s (0 = unlimited)
  --loss P             probability a packet is lost (delivered late), both directions
  --loss-stall-ms X    how late a lost packet arrives (default 200)
  --cut-at-s X         cut the link X seconds after start ...
  --cut-for-s Y        ... for Y seconds (default: until stopped)
  --cut-mode M         reset (RST every connection) | blackhole (hold bytes); default reset
  --stats-interval S   print counters every S seconds (default 0 = only at exit)
)";

absl::Status Run(int argc, char** argv) {
  using tandem::flags::Flags;
  using tandem::flags::ParseInt;
  constexpr double kDay = 24 * 3600.0;
  TANDEM_ASSIGN_OR_RETURN(
      Flags flags,
      Flags::Parse(argc - 1, argv + 1,
                   {"target", "listen", "port", "port-file", "profile", "rtt-ms", "delay-up-ms",
                    "delay-down-ms", "jitter-ms", "up-mbps", "down-mbps", "loss", "loss-stall-ms",
                    "cut-at-s", "cut-for-s", "cut-mode", "stats-interval"},
                   {"help"}));
  if (flags.Has("help")) {
    std::cout << kUsage;
    return absl::OkStatus();
  }
  namespace tb = tandem::bench;
  tb::LinkEmulatorOptions options;
  const std::string target = flags.Get("target");
  const size_t colon = target.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("--target HOST:PORT is required");
  TANDEM_ASSIGN_OR_RETURN(int64_t target_port,
                          ParseInt("the port of --target", target.substr(colon + 1), 1, 65535));
  options.target_port = static_cast<int>(target_port);
  options.target_host = target.substr(0, colon);
  if (options.target_host.size() > 2 && options.target_host.front() == '[') {
    options.target_host = options.target_host.substr(1, options.target_host.size() - 2);
  }
  options.listen_host = flags.Get("listen", "127.0.0.1");
  TANDEM_ASSIGN_OR_RETURN(options.listen_port, flags.GetInt<int>("port", 0, 0, 65535));
  TANDEM_ASSIGN_OR_RETURN(options.profile, tb::LinkProfile::Named(flags.Get("profile", "loopback")));
  tb::LinkProfile& p = options.profile;
  if (flags.Has("rtt-ms")) {
    TANDEM_ASSIGN_OR_RETURN(double rtt, flags.GetDouble("rtt-ms", 0, 0, kDay * 1e3));
    p.up.delay = p.down.delay = absl::Milliseconds(rtt / 2);
  }
  TANDEM_ASSIGN_OR_RETURN(double up_ms, flags.GetDouble("delay-up-ms", absl::ToDoubleMilliseconds(p.up.delay), 0, kDay * 1e3));
  TANDEM_ASSIGN_OR_RETURN(double down_ms,
                          flags.GetDouble("delay-down-ms", absl::ToDoubleMilliseconds(p.down.delay), 0, kDay * 1e3));
  p.up.delay = absl::Milliseconds(up_ms);
  p.down.delay = absl::Milliseconds(down_ms);
  if (flags.Has("jitter-ms")) {
    TANDEM_ASSIGN_OR_RETURN(double jitter, flags.GetDouble("jitter-ms", 0, 0, kDay * 1e3));
    p.up.jitter = p.down.jitter = absl::Milliseconds(jitter);
  }
  TANDEM_ASSIGN_OR_RETURN(double up_mbps, flags.GetDouble("up-mbps", p.up.bandwidth_bps / 1e6, 0, 1e6));
  TANDEM_ASSIGN_OR_RETURN(double down_mbps, flags.GetDouble("down-mbps", p.down.bandwidth_bps / 1e6, 0, 1e6));
  p.up.bandwidth_bps = up_mbps * 1e6;
  p.down.bandwidth_bps = down_mbps * 1e6;
  if (flags.Has("loss")) {
    TANDEM_ASSIGN_OR_RETURN(double loss, flags.GetDouble("loss", 0, 0, 1));
    p.up.loss = p.down.loss = loss;
  }
  if (flags.Has("loss-stall-ms")) {
    TANDEM_ASSIGN_OR_RETURN(double stall, flags.GetDouble("loss-stall-ms", 200, 0, kDay * 1e3));
    p.up.loss_stall = p.down.loss_stall = absl::Milliseconds(stall);
  }
  const std::string mode_name = flags.Get("cut-mode", "reset");
  if (mode_name != "reset" && mode_name != "blackhole") {
    return absl::InvalidArgumentError("--cut-mode must be reset or blackhole");
  }
  const tb::CutMode mode = mode_name == "reset" ? tb::CutMode::kReset : tb::CutMode::kBlackHole;
  TANDEM_ASSIGN_OR_RETURN(double stats_interval, flags.GetDouble("stats-interval", 0, 0, kDay));

  // Signals are taken synchronously; threads started below inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  TANDEM_ASSIGN_OR_RETURN(auto link, tb::LinkEmulator::Start(options));
  if (flags.Has("cut-at-s")) {
    TANDEM_ASSIGN_OR_RETURN(double at, flags.GetDouble("cut-at-s", 0, 0, kDay));
    absl::Duration length = absl::InfiniteDuration();
    if (flags.Has("cut-for-s")) {
      TANDEM_ASSIGN_OR_RETURN(double seconds, flags.GetDouble("cut-for-s", 0, 0, kDay));
      length = absl::Seconds(seconds);
    }
    link->ScheduleCut(absl::Seconds(at), length, mode);
  }
  if (flags.Has("port-file")) {
    std::ofstream(flags.Get("port-file")) << link->port() << "\n";
  }
  std::cout << "listening on " << link->address() << " -> " << target << std::endl;

  auto print_stats = [&link] {
    const tb::LinkStats s = link->stats();
    std::cerr << "bytes up " << s.bytes_up << " down " << s.bytes_down << ", packets up "
              << s.packets_up << " down " << s.packets_down << ", stalled " << s.packets_stalled
              << ", connections accepted " << s.connections_accepted << " open "
              << s.connections_open << " reset " << s.connections_reset << ", cuts " << s.cuts
              << std::endl;
  };
  while (true) {
    int signal = 0;
    if (stats_interval > 0) {
      timespec wait{static_cast<time_t>(stats_interval),
                    static_cast<long>((stats_interval - static_cast<time_t>(stats_interval)) * 1e9)};
      signal = sigtimedwait(&signals, nullptr, &wait);
      if (signal < 0) {
        print_stats();
        continue;
      }
    } else {
      sigwait(&signals, &signal);
    }
    break;
  }
  print_stats();
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::Status status = Run(argc, argv);
  if (!status.ok()) {
    std::cerr << "tandem-link: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
