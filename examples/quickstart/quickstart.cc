// Quickstart: edge and cloud collaborating on one machine.
//
//   quickstart [--model DIR] [--prompt TEXT] [--tokens N] [--codec int8]
//
// Starts `tandem-cloud` on loopback (a free port) with the model, runs an edge
// session against it in collaborative mode — tokens the edge's exits are sure
// of are decided on the device, the others by the cloud — prints the text and
// where each token was decided, and a summary: tokens per exit and from the
// cloud, bytes up and down, time. Then stops the server with SIGTERM.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "tandem/edge/edge_session.h"
#include "tandem/flags.h"

namespace {

namespace fs = std::filesystem;

// The server binary: --server, else next to this program, else the build tree's.
std::string ServerBinary(const tandem::flags::Flags& flags) {
  std::string path = flags.Get("server");
  if (!path.empty()) return path;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec && fs::exists(self.parent_path() / "tandem-cloud")) {
    return (self.parent_path() / "tandem-cloud").string();
  }
  return TANDEM_CLOUD_BINARY;
}

// Starts the server; returns its pid and fills *port once it listens.
pid_t StartServer(const std::string& binary, const std::string& model, int* port) {
  char port_file[] = "/tmp/tandem-quickstart-XXXXXX";
  const int fd = mkstemp(port_file);
  if (fd < 0) return -1;
  close(fd);
  fs::remove(port_file);
  const pid_t pid = fork();
  if (pid == 0) {
    // The server's own output would interleave with ours: it goes to a log.
    const int log = open("/tmp/tandem-quickstart-cloud.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (log >= 0) {
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
    }
    execl(binary.c_str(), binary.c_str(), "--model", model.c_str(), "--port", "0", "--port-file",
          port_file, "--stats-interval", "0", static_cast<char*>(nullptr));
    std::perror("exec tandem-cloud");
    _exit(127);
  }
  // Poll for the port file (written once the server listens), with a deadline.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    std::ifstream in(port_file);
    if (in >> *port && *port > 0) {
      fs::remove(port_file);
      return pid;
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return -1;  // it died
    absl::SleepFor(absl::Milliseconds(20));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  auto flags = tandem::flags::Flags::Parse(argc - 1, argv + 1,
                                           {"model", "prompt", "tokens", "codec", "server"}, {});
  absl::StatusOr<int32_t> tokens =
      flags.ok() ? flags->GetInt<int32_t>("tokens", 48, 0, 1 << 20) : flags.status();
  if (!tokens.ok()) {
    std::cerr << "quickstart: " << tokens.status().message()
              << "\nusage: quickstart [--model DIR] [--prompt TEXT] [--tokens N] [--codec int8]"
                 " [--server PATH]\n";
    return 2;
  }
  const std::string model = flags->Get("model", "models/tandem-tiny");
  const std::string prompt = flags->Get("prompt", "And it came to pass");
  const std::string binary = ServerBinary(*flags);

  int port = 0;
  const pid_t server = StartServer(binary, model, &port);
  if (server < 0) {
    std::cerr << "quickstart: could not start " << binary << "\n";
    return 1;
  }
  std::cout << "cloud: tandem-cloud (pid " << server << ") on 127.0.0.1:" << port
            << ", log in /tmp/tandem-quickstart-cloud.log\n";

  tandem::edge::EdgeOptions options;
  options.model_dir = model;  // split, exits, thresholds: from exits.json
  options.cloud.address = "127.0.0.1:" + std::to_string(port);
  options.cloud.codec = flags->Get("codec", "int8");
  int status_code = 0;
  auto session = tandem::edge::EdgeSession::Create(options);
  if (!session.ok()) {
    std::cerr << "quickstart: " << session.status() << "\n";
    status_code = 1;
  } else {
    tandem::edge::GenerateOptions request;
    request.max_new_tokens = *tokens;
    std::string where;  // one letter per token: e = edge exit, C = cloud, f = edge fallback
    std::cout << "edge:  " << (*session)->engine().split() << " of "
              << (*session)->engine().model().config().num_hidden_layers
              << " layers on the device, codec " << options.cloud.codec << "\n\n"
              << prompt;
    auto summary = (*session)->Generate(prompt, request, [&](const tandem::edge::TokenInfo& t) {
      std::cout << t.text << std::flush;
      if (t.id >= 0) {
        where += t.source == tandem::edge::TokenSource::kCloud  ? 'C'
                 : t.source == tandem::edge::TokenSource::kExit ? 'e'
                                                                 : 'f';
      }
      return true;
    });
    std::cout << "\n\n";
    if (!summary.ok()) {
      std::cerr << "quickstart: " << summary.status() << "\n";
      status_code = 1;
    } else {
      const auto& s = *summary;
      std::cout << "decided where (e = edge exit, C = cloud, f = edge fallback):\n  " << where
                << "\n";
      std::cout << absl::StrFormat("%d tokens: ", s.generated_tokens);
      for (const auto& [layer, n] : s.counts.exited) std::cout << "exit@" << layer << " " << n << ", ";
      for (const auto& [layer, n] : s.counts.fallback) std::cout << "fallback@" << layer << " " << n << ", ";
      std::cout << "cloud " << s.counts.cloud << "\n";
      std::cout << absl::StrFormat(
          "edge share %.1f%%; bytes up %d (context %d for %d rows, requests %d), down %d\n",
          100.0 * (s.generated_tokens - s.counts.cloud) / std::max<int64_t>(1, s.generated_tokens),
          s.cloud.bytes_up, s.cloud.context_bytes, s.cloud.context_rows, s.cloud.continue_bytes,
          s.cloud.bytes_down);
      std::cout << absl::StrFormat(
          "time %.3f s (%.1f ms/token overall, prefill %.3f s); %d drafts sent to the cloud "
          "while decoding on: %d confirmed, %d replaced (%d tokens rolled back), %.1f ms "
          "verdict round trip, %.1f ms of cloud compute each, %.3f s spent waiting\n",
          s.total_seconds, 1e3 * s.total_seconds / std::max<int64_t>(1, s.generated_tokens),
          s.prefill_seconds, s.speculation.drafts, s.speculation.accepted,
          s.speculation.rejected, s.speculation.rolled_back,
          1e3 * s.cloud.request_seconds / std::max<int64_t>(1, s.cloud.cloud_tokens),
          1e3 * s.cloud.cloud_compute_seconds / std::max<int64_t>(1, s.cloud.cloud_tokens),
          s.speculation.wait_seconds);
    }
  }
  session = absl::StatusOr<std::unique_ptr<tandem::edge::EdgeSession>>(nullptr);  // close the stream
  kill(server, SIGTERM);
  int status = 0;
  waitpid(server, &status, 0);
  return status_code;
}
