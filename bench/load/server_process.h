// A `tandem-cloud` child process for the load tools: started on a port (the
// same one again after a kill), killed with SIGKILL (a crash, not a drain),
// and observed from outside through /proc/<pid>/status (threads, resident
// memory) and its Stats RPC (the server's own counters).
//
// Thread-compatible.
#ifndef TANDEM_BENCH_LOAD_SERVER_PROCESS_H_
#define TANDEM_BENCH_LOAD_SERVER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tandem::load {

struct ProcessSample {
  int threads = 0;
  int64_t rss_kib = 0;  // VmRSS
};

// Threads and VmRSS of process `pid` (NotFound when it is gone).
absl::StatusOr<ProcessSample> SampleProcess(pid_t pid);
// Samples `pid` every 500 ms until two samples in a row agree on the thread
// count, for at most 10 s (then the last sample); a zero sample once it is gone.
ProcessSample SettledSample(pid_t pid);

class ServerProcess {
 public:
  // `binary` is tandem-cloud; `args` its flags other than --port / --port-file.
  ServerProcess(std::string binary, std::vector<std::string> args);
  ~ServerProcess();  // kills a running child
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts the child on `port` (0 = a free one, then kept for restarts) and
  // waits until it listens (its port file appears), up to `timeout`.
  absl::Status Start(int port, absl::Duration timeout = absl::Seconds(60));
  // SIGKILL and reap.
  void Kill();
  // SIGTERM (graceful drain) and reap.
  void Stop();
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  std::string binary_;
  std::vector<std::string> args_;
  std::string port_file_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// The server's Prometheus text through the Stats RPC ("" when unreachable),
// and one unlabelled metric's value from it (-1 when absent).
std::string ServerMetricsText(const std::string& address);
double MetricValue(const std::string& text, const std::string& name);
// Polls the server's metric `name` until it reads `value` (false after `timeout`).
bool WaitForMetric(const std::string& address, const std::string& name, double value,
                   absl::Duration timeout);

}  // namespace tandem::load

#endif  // TANDEM_BENCH_LOAD_SERVER_PROCESS_H_
