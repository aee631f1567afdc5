// tandem_load_fault: the bounded load-and-fault test (issue 14). Over loopback
// against a `tandem-cloud` child process:
//   - N well-behaved edge sessions at once (EdgeSession, default collaborative
//     options: calibrated exits, pipelined verification, fp32 hidden states),
//     each generating T greedy tokens;
//   - misbehaving clients all along: garbage bytes on raw TCP and malformed
//     protocol messages, silent streams, abrupt disconnects after a request,
//     floods of context rows (511 rows and a Continue, then gone);
//   - the server SIGKILLed once a third of the tokens are out, and restarted on
//     the same port after an outage.
// Checks: every well-behaved session completes with T tokens; a session that
// never fell back to standalone produced exactly the text of the calm
// reference pass (same prompts, same options, nothing else running); every
// token the cloud decided equals the full model's greedy choice given the
// sequence produced so far (the standalone-resync semantics of
// tests/e2e/faults_test.cc); the server's threads and resident memory return
// near the fresh server's once the clients are gone and the TTL has passed.
// Prints Markdown tables; exit status 1 when a check fails.
//
//   tandem_load_fault --server build/cloud/tandem-cloud
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "loopback.h"
#include "raw_client.h"
#include "server_process.h"
#include "tandem/edge/edge_session.h"
#include "tandem/fingerprint.h"
#include "tandem/flags.h"
#include "tandem/status_macros.h"
#include "tandem/wire/tandem.grpc.pb.h"
#include "wire_convert.h"

namespace tandem::load {
namespace {

constexpr int64_t kSplit = 4;
constexpr int kPromptTokens = 16;

struct Config {
  std::string server;
  int sessions = 64;
  int tokens = 32;
  absl::Duration outage = absl::Seconds(1);
  int silent = 100;
  int garbage = 2;
  int disconnectors = 2;
  int flooders = 2;
  absl::Duration ttl = absl::Seconds(5);
};

// --- misbehaving clients --------------------------------------------------------

struct MisbehaviourCounts {
  std::atomic<int64_t> garbage_connections{0};
  std::atomic<int64_t> malformed_streams{0};
  std::atomic<int64_t> malformed_refused{0};  // ended with an error status, as they should
  std::atomic<int64_t> silent_opened{0};
  std::atomic<int64_t> silent_ended_idle{0};  // DEADLINE_EXCEEDED from the server
  std::atomic<int64_t> silent_ended_other{0}; // the kill, or the end of the run
  std::atomic<int64_t> disconnects{0};
  std::atomic<int64_t> floods{0};
  std::atomic<int64_t> flood_rows{0};
};

wire::ClientMessage OpenMessage(uint64_t fingerprint, const std::string& id, int capacity) {
  wire::ClientMessage m;
  wire::Open* open = m.mutable_open();
  open->set_protocol_version(wire::kProtocolVersion);
  open->set_model_fingerprint(fingerprint);
  open->set_split(kSplit);
  open->mutable_codec()->set_format(wire::HIDDEN_FORMAT_FP32);
  open->set_session_id(id);
  open->set_capacity(capacity);
  return m;
}

wire::ClientMessage RowsMessage(int first, int rows) {
  wire::ClientMessage m;
  wire::Context* c = m.mutable_context();
  c->set_first_position(first);
  CodecSpec spec;
  spec.format = HiddenFormat::kFp32;
  (void)wire::EncodeRows(at::randn({rows, 256}), spec, c->mutable_hidden());
  return m;
}

wire::ClientMessage ContinueMessage(int position) {
  wire::ClientMessage m;
  wire::Continue* c = m.mutable_continue_();
  c->set_request_id(1);
  c->set_position(position);
  CodecSpec spec;
  spec.format = HiddenFormat::kFp32;
  (void)wire::EncodeRows(at::randn({1, 256}), spec, c->mutable_hidden());
  return m;
}

// Raw TCP: random bytes where HTTP/2 is expected, then wait for the server to
// hang up (bounded by a receive timeout).
void GarbageConnection(int port, std::mt19937& rng) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    std::string bytes(256 + rng() % 4096, '\0');
    for (char& b : bytes) b = static_cast<char>(rng());
    (void)!send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    char buffer[4096];
    while (recv(fd, buffer, sizeof(buffer), 0) > 0) {
    }
  }
  close(fd);
}

class Misbehavers {
 public:
  Misbehavers(const Config& config, const std::string& address, int port, uint64_t fingerprint)
      : config_(config), address_(address), port_(port), fingerprint_(fingerprint) {}

  void Start() {
    for (int i = 0; i < config_.garbage; ++i) threads_.emplace_back([this, i] { Garbage(i); });
    threads_.emplace_back([this] { Silent(); });
    for (int i = 0; i < config_.disconnectors; ++i) {
      threads_.emplace_back([this, i] { Disconnector(i); });
    }
    for (int i = 0; i < config_.flooders; ++i) threads_.emplace_back([this, i] { Flooder(i); });
  }
  void Stop() {
    stop_.store(true);
    {
      absl::MutexLock lock(&mu_);
      for (e2e::RawClient* c : silent_) c->Cancel();
    }
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }
  const MisbehaviourCounts& counts() const { return counts_; }

 private:
  void Pause() { absl::SleepFor(absl::Milliseconds(50)); }

  void Garbage(int seed) {
    std::mt19937 rng(1000 + seed);
    while (!stop_.load()) {
      GarbageConnection(port_, rng);
      ++counts_.garbage_connections;
      // A well-formed gRPC stream with a malformed protocol: rows before Open,
      // or an Open of another model.
      e2e::RawClient client(address_);
      client.Send(rng() % 2 ? RowsMessage(0, 4)
                            : OpenMessage(fingerprint_ ^ 1, absl::StrCat("garbage-", rng()), 64));
      const grpc::Status status = client.Finish();
      ++counts_.malformed_streams;
      if (!status.ok()) ++counts_.malformed_refused;
      Pause();
    }
  }

  // Batches of streams that never send anything: ended by the server's idle
  // deadline (or by the kill / the end of the run).
  void Silent() {
    while (!stop_.load()) {
      std::vector<std::unique_ptr<e2e::RawClient>> batch;
      for (int i = 0; i < config_.silent; ++i) {
        batch.push_back(std::make_unique<e2e::RawClient>(address_));
      }
      {
        absl::MutexLock lock(&mu_);
        for (auto& c : batch) silent_.push_back(c.get());
      }
      counts_.silent_opened += config_.silent;
      for (auto& c : batch) {
        const grpc::Status status = c->AwaitEnd();
        if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
          ++counts_.silent_ended_idle;
        } else {
          ++counts_.silent_ended_other;
        }
      }
      {
        absl::MutexLock lock(&mu_);
        silent_.clear();
      }
      Pause();
    }
  }

  // Open, 64 rows, a Continue, and gone without reading the answer.
  void Disconnector(int seed) {
    int n = 0;
    while (!stop_.load()) {
      e2e::RawClient client(address_);
      client.Send(OpenMessage(fingerprint_, absl::StrCat("disconnector-", seed, "-", n++, "-x"), 128));
      client.Send(RowsMessage(0, 64));
      client.Send(ContinueMessage(64));
      client.Cancel();
      (void)client.Finish();
      ++counts_.disconnects;
      Pause();
    }
  }

  // 511 rows and a Continue (a full context's worth of compute), then gone.
  void Flooder(int seed) {
    int n = 0;
    const wire::ClientMessage rows = RowsMessage(0, 511);
    const wire::ClientMessage request = ContinueMessage(511);
    while (!stop_.load()) {
      e2e::RawClient client(address_);
      client.Send(OpenMessage(fingerprint_, absl::StrCat("flooder-", seed, "-", n++, "-xxxxx"), 512));
      client.Send(rows);
      client.Send(request);
      client.Cancel();
      (void)client.Finish();
      ++counts_.floods;
      counts_.flood_rows += 512;
      Pause();
    }
  }

  const Config& config_;
  const std::string address_;
  const int port_;
  const uint64_t fingerprint_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  MisbehaviourCounts counts_;
  absl::Mutex mu_;
  std::vector<e2e::RawClient*> silent_ ABSL_GUARDED_BY(mu_);
};

// --- the server's threads and memory --------------------------------------------

class Sampler {
 public:
  explicit Sampler(const ServerProcess* server) : server_(server) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        Sample();
        absl::SleepFor(absl::Milliseconds(100));
      }
    });
  }
  ~Sampler() {
    stop_.store(true);
    thread_.join();
  }
  void Sample() {
    const pid_t pid = server_->pid();
    if (pid <= 0) return;
    absl::StatusOr<ProcessSample> s = SampleProcess(pid);
    if (!s.ok()) return;
    absl::MutexLock lock(&mu_);
    ProcessSample& peak = peaks_[pid];
    peak.threads = std::max(peak.threads, s->threads);
    peak.rss_kib = std::max(peak.rss_kib, s->rss_kib);
  }
  ProcessSample Peak(pid_t pid) {
    absl::MutexLock lock(&mu_);
    return peaks_[pid];
  }

 private:
  const ServerProcess* server_;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  std::map<pid_t, ProcessSample> peaks_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// --- well-behaved sessions ------------------------------------------------------

struct SessionResult {
  absl::Status status;
  std::vector<int32_t> ids;
  std::vector<edge::TokenSource> sources;
  edge::CloudLinkStats cloud;
};

edge::EdgeOptions SessionOptions(const std::string& address) {
  // Defaults of collaborative mode (calibrated exits, pipelined verification)
  // with fp32 hidden states, so the cloud's tokens are the full model's.
  return e2e::CollaborativeOptions(address, "fp32", /*never_exit=*/false);
}

SessionResult RunSession(const std::string& address, const std::vector<int32_t>& prompt,
                         int tokens, std::atomic<int64_t>* produced) {
  SessionResult r;
  auto session = edge::EdgeSession::Create(SessionOptions(address));
  if (!session.ok()) {
    r.status = session.status();
    return r;
  }
  auto summary = (*session)->GenerateIds(prompt, e2e::Greedy(tokens),
                                         [&](const edge::TokenInfo& t) {
                                           if (t.id < 0) return true;
                                           r.sources.push_back(t.source);
                                           if (produced != nullptr) ++*produced;
                                           return true;
                                         });
  if (!summary.ok()) {
    r.status = summary.status();
    return r;
  }
  r.ids = summary->ids;
  r.cloud = summary->cloud;
  return r;
}

std::string Row(const std::string& phase, const ProcessSample& s, const std::string& note) {
  return absl::StrFormat("| %s | %d | %.0f | %s |\n", phase, s.threads, s.rss_kib / 1024.0, note);
}

absl::Status Run(int argc, char** argv) {
  TANDEM_ASSIGN_OR_RETURN(
      flags::Flags f,
      flags::Flags::Parse(argc - 1, argv + 1,
                          {"server", "sessions", "tokens", "outage-seconds", "silent", "garbage",
                           "disconnectors", "flooders", "ttl-seconds"},
                          {}));
  Config config;
  if (!f.Has("server")) return absl::InvalidArgumentError("--server BIN (tandem-cloud) is required");
  config.server = f.Get("server");
  TANDEM_ASSIGN_OR_RETURN(config.sessions, f.GetInt<int>("sessions", 64, 1, 1024));
  TANDEM_ASSIGN_OR_RETURN(config.tokens, f.GetInt<int>("tokens", 32, 3, 400));
  TANDEM_ASSIGN_OR_RETURN(config.outage, f.GetSeconds("outage-seconds", 1, 0, 60));
  TANDEM_ASSIGN_OR_RETURN(config.silent, f.GetInt<int>("silent", 100, 0, 1000));
  TANDEM_ASSIGN_OR_RETURN(config.garbage, f.GetInt<int>("garbage", 2, 0, 64));
  TANDEM_ASSIGN_OR_RETURN(config.disconnectors, f.GetInt<int>("disconnectors", 2, 0, 64));
  TANDEM_ASSIGN_OR_RETURN(config.flooders, f.GetInt<int>("flooders", 2, 0, 64));
  TANDEM_ASSIGN_OR_RETURN(config.ttl, f.GetSeconds("ttl-seconds", 5, 1, 600));

  const std::string model_dir = e2e::ShippedModelDir();
  TANDEM_ASSIGN_OR_RETURN(uint64_t fingerprint,
                          SplitFingerprint(e2e::ShippedFullModel(), kSplit));
  ServerProcess server(
      config.server,
      {"--model", model_dir, "--split", std::to_string(kSplit), "--quiet", "--stats-interval",
       "0", "--threads", "2", "--ttl-seconds", absl::StrCat(absl::ToDoubleSeconds(config.ttl)),
       "--stream-idle-seconds", "3", "--stream-open-seconds", "2", "--grace-seconds", "1"});
  TANDEM_RETURN_IF_ERROR(server.Start(0));
  const std::string address = server.address();
  std::string table =
      "| phase | server threads | server RSS MiB | note |\n|---|---:|---:|---|\n";
  const ProcessSample fresh = SettledSample(server.pid());
  table += Row("fresh server", fresh, absl::StrCat("pid ", server.pid()));

  // The calm reference: the same prompts and options, one at a time.
  const auto prompts = e2e::Prompts(config.sessions, kPromptTokens);
  std::vector<std::vector<int32_t>> reference;
  int reference_fallbacks = 0;
  for (const auto& prompt : prompts) {
    SessionResult r = RunSession(address, prompt, config.tokens, nullptr);
    TANDEM_RETURN_IF_ERROR(r.status);
    reference_fallbacks += std::count(r.sources.begin(), r.sources.end(),
                                      edge::TokenSource::kFallback);
    reference.push_back(r.ids);
  }
  TANDEM_RETURN_IF_ERROR(WaitForMetric(address, "tandem_streams_active", 0, absl::Seconds(30))
                             ? absl::OkStatus()
                             : absl::DeadlineExceededError("reference streams did not end"));
  const ProcessSample warmed = SettledSample(server.pid());
  table += Row("after the calm reference pass", warmed,
               absl::StrCat(config.sessions, " sessions one at a time"));

  // The storm.
  Sampler sampler(&server);
  const pid_t first_pid = server.pid();
  Misbehavers misbehavers(config, address, server.port(), fingerprint);
  misbehavers.Start();
  std::atomic<int64_t> produced{0};
  std::vector<SessionResult> results(config.sessions);
  std::vector<std::thread> sessions;
  const absl::Time storm_start = absl::Now();
  for (int i = 0; i < config.sessions; ++i) {
    sessions.emplace_back([&, i] {
      results[i] = RunSession(address, prompts[i], config.tokens, &produced);
    });
  }
  const int64_t kill_at = int64_t{config.sessions} * config.tokens / 3;
  while (produced.load() < kill_at) absl::SleepFor(absl::Milliseconds(5));
  const ProcessSample before_kill = SampleProcess(first_pid).value_or(ProcessSample{});
  server.Kill();
  const absl::Time killed = absl::Now();
  absl::SleepFor(config.outage);
  TANDEM_RETURN_IF_ERROR(server.Start(server.port()));
  const absl::Duration down = absl::Now() - killed;
  const pid_t second_pid = server.pid();
  for (std::thread& t : sessions) t.join();
  const absl::Duration storm = absl::Now() - storm_start;
  misbehavers.Stop();
  table += Row("storm, first server at the kill", before_kill,
               absl::StrCat(produced.load() >= kill_at ? "" : "?", "after ", kill_at, " tokens"));
  table += Row("storm, first server peak", sampler.Peak(first_pid), "SIGKILL");
  table += Row("storm, restarted server peak", sampler.Peak(second_pid),
               absl::StrFormat("down %.1f s", absl::ToDoubleSeconds(down)));
  // Departed clients' sessions stay held until the TTL (so that a reconnect
  // resumes them): wait for the streams to end and the sessions to expire.
  const bool streams_gone =
      WaitForMetric(address, "tandem_streams_active", 0, absl::Seconds(60));
  const bool sessions_gone = WaitForMetric(address, "tandem_sessions", 0, config.ttl * 4 +
                                                                            absl::Seconds(30));
  const ProcessSample end = SettledSample(second_pid);
  table += Row("end: clients gone, sessions expired", end,
               absl::StrCat(streams_gone ? "0 streams" : "STREAMS LEFT", ", ",
                            sessions_gone ? "0 sessions" : "SESSIONS LEFT"));
  const std::string metrics = ServerMetricsText(address);

  // Checks.
  int completed = 0, exact = 0, with_fallback = 0, failed = 0;
  int64_t cloud_tokens = 0, cloud_agreed = 0, fallback_tokens = 0, exit_tokens = 0;
  std::string failures;
  for (int i = 0; i < config.sessions; ++i) {
    const SessionResult& r = results[i];
    if (!r.status.ok() || static_cast<int>(r.ids.size()) != config.tokens) {
      ++failed;
      absl::StrAppend(&failures, "session ", i, ": ", r.status.ToString(), ", ", r.ids.size(),
                      " tokens\n");
      continue;
    }
    ++completed;
    const std::vector<bool> agree = e2e::AgreesWithFull(prompts[i], r.ids);
    bool fell_back = false;
    for (size_t t = 0; t < r.ids.size(); ++t) {
      switch (r.sources[t]) {
        case edge::TokenSource::kCloud:
          ++cloud_tokens;
          cloud_agreed += agree[t];
          if (!agree[t]) absl::StrAppend(&failures, "session ", i, " token ", t,
                                         ": the cloud's token is not the full model's\n");
          break;
        case edge::TokenSource::kFallback:
          ++fallback_tokens;
          fell_back = true;
          break;
        case edge::TokenSource::kExit:
          ++exit_tokens;
          break;
      }
    }
    if (fell_back) {
      ++with_fallback;
    } else if (r.ids == reference[i]) {
      ++exact;
    } else {
      absl::StrAppend(&failures, "session ", i, ": no fallback, yet not the reference text\n");
    }
  }
  // gRPC starts some of its threads lazily: the baseline is the warmed server.
  const int baseline_threads = std::max(fresh.threads, warmed.threads);
  const bool threads_back = end.threads <= baseline_threads + 4;
  const bool rss_back = end.rss_kib <= fresh.rss_kib + 256 * 1024;

  const MisbehaviourCounts& m = misbehavers.counts();
  std::cout << absl::StrFormat(
      "## Load and fault: %d edge sessions x %d tokens, server killed once\n\n"
      "storm %.1f s; %d well-behaved sessions completed, %d failed; %d produced exactly the calm "
      "reference text, %d fell back to standalone during the outage (their text is checked "
      "token by token instead); reference pass fallbacks: %d\n\n"
      "tokens: %d cloud (%d equal to the full model's greedy choice), %d exit, %d fallback\n\n",
      config.sessions, config.tokens, absl::ToDoubleSeconds(storm), completed, failed, exact,
      with_fallback, reference_fallbacks, cloud_tokens, cloud_agreed, exit_tokens,
      fallback_tokens);
  std::cout << absl::StrFormat(
      "misbehaving clients: %d garbage TCP connections, %d malformed streams (%d refused), "
      "%d silent streams (%d ended by the idle deadline, %d by the kill or the end), %d abrupt "
      "disconnects after a request, %d floods (%d rows)\n\n",
      m.garbage_connections.load(), m.malformed_streams.load(), m.malformed_refused.load(),
      m.silent_opened.load(), m.silent_ended_idle.load(), m.silent_ended_other.load(),
      m.disconnects.load(), m.floods.load(), m.flood_rows.load());
  std::cout << table << "\n";
  std::cout << absl::StrFormat(
      "restarted server's counters at the end: streams opened %.0f, refused %.0f, idle-ended "
      "%.0f, sessions expired %.0f, evicted %.0f\n\n",
      MetricValue(metrics, "tandem_streams_opened_total"),
      MetricValue(metrics, "tandem_streams_refused_total"),
      MetricValue(metrics, "tandem_streams_idle_ended_total"),
      MetricValue(metrics, "tandem_sessions_expired_total"),
      MetricValue(metrics, "tandem_sessions_evicted_total"));
  const bool ok = failed == 0 && failures.empty() && cloud_tokens == cloud_agreed &&
                  threads_back && rss_back && streams_gone && sessions_gone;
  std::cout << "checks: sessions " << (failed == 0 ? "ok" : "FAILED") << ", texts "
            << (failures.empty() ? "ok" : "FAILED") << ", threads within 4 of the warmed server's "
            << (threads_back ? "ok" : "FAILED") << ", RSS within 256 MiB of it "
            << (rss_back ? "ok" : "FAILED") << "\n";
  if (!failures.empty()) std::cout << "\n" << failures;
  server.Stop();
  return ok ? absl::OkStatus() : absl::InternalError("a check failed");
}

}  // namespace
}  // namespace tandem::load

int main(int argc, char** argv) {
  absl::Status status = tandem::load::Run(argc, argv);
  if (!status.ok()) {
    std::cerr << "tandem_load_fault: " << status << "\n";
    return 1;
  }
  return 0;
}
