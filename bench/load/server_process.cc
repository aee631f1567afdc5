#include "server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tandem/wire/tandem.grpc.pb.h"

extern char** environ;

namespace tandem::load {

absl::StatusOr<ProcessSample> SampleProcess(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  if (!status) return absl::NotFoundError(absl::StrCat("no process ", pid));
  ProcessSample sample;
  std::string line;
  while (std::getline(status, line)) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "Threads:")) {
      (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &sample.threads);
    } else if (absl::ConsumePrefix(&rest, "VmRSS:")) {
      rest = absl::StripAsciiWhitespace(rest);
      (void)absl::ConsumeSuffix(&rest, "kB");
      (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &sample.rss_kib);
    }
  }
  return sample;
}

ProcessSample SettledSample(pid_t pid) {
  ProcessSample last = SampleProcess(pid).value_or(ProcessSample{});
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(500));
    ProcessSample now = SampleProcess(pid).value_or(ProcessSample{});
    if (now.threads == last.threads) return now;
    last = now;
  }
  return last;
}

ServerProcess::ServerProcess(std::string binary, std::vector<std::string> args)
    : binary_(std::move(binary)),
      args_(std::move(args)),
      port_file_(absl::StrCat("/tmp/tandem-load-port-", getpid(), "-",
                              reinterpret_cast<uintptr_t>(this))) {}

ServerProcess::~ServerProcess() {
  Kill();
  std::remove(port_file_.c_str());
}

absl::Status ServerProcess::Start(int port, absl::Duration timeout) {
  if (pid_ > 0) return absl::FailedPreconditionError("the server is running");
  if (port == 0) port = port_;
  std::remove(port_file_.c_str());
  std::vector<std::string> argv = {binary_};
  argv.insert(argv.end(), args_.begin(), args_.end());
  for (const std::string& a : {std::string("--port"), std::to_string(port),
                               std::string("--port-file"), port_file_}) {
    argv.push_back(a);
  }
  std::vector<char*> raw;
  for (std::string& a : argv) raw.push_back(a.data());
  raw.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, binary_.c_str(), &actions, nullptr, raw.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return absl::InternalError(absl::StrCat("cannot start ", binary_));
  pid_ = pid;
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(absl::StrCat(binary_, " exited before listening"));
    }
    std::ifstream in(port_file_);
    int bound = 0;
    if (in >> bound && bound > 0) {
      port_ = bound;
      return absl::OkStatus();
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  Kill();
  return absl::DeadlineExceededError("the server did not start listening in time");
}

void ServerProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void ServerProcess::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

std::string ServerMetricsText(const std::string& address) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = wire::Continuation::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  wire::StatsRequest request;
  wire::StatsReply reply;
  if (!stub->Stats(&context, request, &reply).ok()) return "";
  return reply.text();
}

double MetricValue(const std::string& text, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, name) || !absl::ConsumePrefix(&line, " ")) continue;
    double value = 0;
    if (absl::SimpleAtod(line, &value)) return value;
  }
  return -1;
}

bool WaitForMetric(const std::string& address, const std::string& name, double value,
                   absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (MetricValue(ServerMetricsText(address), name) == value) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

}  // namespace tandem::load
