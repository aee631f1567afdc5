// The link emulator's precision: measured round-trip time and throughput
// against their settings on loopback (tests/bench/link_emulator_test.cc checks
// the same with tolerances wide enough for a loaded machine). Counters:
// `setting_ms` / `setting_mbps`, and `excess_ms` (RTT above the setting) or
// `of_cap` (throughput / cap). Manual time = the measured quantity.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>
#include <unistd.h>

#include "benchmark/benchmark.h"
#include "tandem/bench/link_emulator.h"
#include "testing/tcp_peers.h"

namespace tandem::bench {
namespace {

using Clock = std::chrono::steady_clock;

std::unique_ptr<LinkEmulator> Start(int target_port, const LinkProfile& profile) {
  LinkEmulatorOptions options;
  options.target_port = target_port;
  options.profile = profile;
  auto link = LinkEmulator::Start(options);
  return link.ok() ? std::move(*link) : nullptr;
}

// One iteration = one 64-byte ping through the link and back.
void BM_LinkRoundTrip(benchmark::State& state) {
  const double rtt_ms = static_cast<double>(state.range(0));
  testing::TcpServer server(testing::Echo);
  auto link = Start(server.port(), LinkProfile::Symmetric(absl::Milliseconds(rtt_ms), 0));
  if (link == nullptr) return state.SkipWithError("cannot start the link emulator");
  int fd = testing::ConnectLoopback(link->port());
  char ping[64] = {1}, pong[64];
  double total = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    if (!testing::SendAll(fd, ping, sizeof(ping)) || !testing::RecvAll(fd, pong, sizeof(pong))) {
      state.SkipWithError("ping failed");
      break;
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    total += seconds;
    state.SetIterationTime(seconds);
  }
  close(fd);
  state.counters["setting_ms"] = rtt_ms;
  if (state.iterations() > 0) {
    state.counters["excess_ms"] = total / static_cast<double>(state.iterations()) * 1e3 - rtt_ms;
  }
}
BENCHMARK(BM_LinkRoundTrip)->Arg(1)->Arg(20)->Arg(60)->Arg(150)->UseManualTime()
    ->Unit(benchmark::kMillisecond)->Iterations(40);

// One iteration = 1 MiB down a capped link (first byte sent to last received,
// minus the one-way delay of 1 ms).
void BM_LinkThroughput(benchmark::State& state) {
  const double mbps = static_cast<double>(state.range(0));
  constexpr size_t kBytes = 1 << 20;
  testing::TcpServer server([](int fd) {
    std::string data(kBytes, 'x');
    char request;
    while (testing::RecvAll(fd, &request, 1)) {
      if (!testing::SendAll(fd, data.data(), data.size())) return;
    }
  });
  LinkProfile profile;
  profile.up.delay = profile.down.delay = absl::Milliseconds(1);
  profile.down.bandwidth_bps = mbps * 1e6;
  auto link = Start(server.port(), profile);
  if (link == nullptr) return state.SkipWithError("cannot start the link emulator");
  int fd = testing::ConnectLoopback(link->port());
  std::vector<char> buffer(kBytes);
  double total = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    if (!testing::SendAll(fd, "g", 1) || !testing::RecvAll(fd, buffer.data(), buffer.size())) {
      state.SkipWithError("transfer failed");
      break;
    }
    // The request's trip up (1 ms) and the first byte's trip down (1 ms).
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count() - 0.002;
    total += seconds;
    state.SetIterationTime(seconds);
  }
  close(fd);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBytes));
  state.counters["setting_mbps"] = mbps;
  if (total > 0) {
    state.counters["of_cap"] =
        static_cast<double>(state.iterations() * kBytes) * 8 / total / (mbps * 1e6);
  }
}
BENCHMARK(BM_LinkThroughput)->Arg(10)->Arg(50)->Arg(200)->Arg(1000)->UseManualTime()
    ->Unit(benchmark::kMillisecond)->MinTime(1.0);

}  // namespace
}  // namespace tandem::bench
