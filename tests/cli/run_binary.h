// Runs a program as a user would and collects how it ended: exit code or
// signal, stdout and stderr. A program still running at the deadline is killed
// (and reported as timed out).
#ifndef TANDEM_TESTS_CLI_RUN_BINARY_H_
#define TANDEM_TESTS_CLI_RUN_BINARY_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace tandem::testing {

struct RunResult {
  bool timed_out = false;
  int exit_code = -1;   // when it exited
  int signal = 0;       // when a signal ended it (e.g. SIGSEGV = 11)
  std::string out, err;
  bool exited() const { return !timed_out && signal == 0; }
};

// argv[0] is the program's path. Stdin is /dev/null.
RunResult RunBinary(const std::vector<std::string>& argv,
                    absl::Duration timeout = absl::Seconds(60));

// A program running in the background (a server), killed with SIGKILL by the
// destructor if still running.
class BackgroundProcess {
 public:
  explicit BackgroundProcess(const std::vector<std::string>& argv);
  ~BackgroundProcess();
  pid_t pid() const { return pid_; }
  void Signal(int signal);
  // Waits up to `timeout` for it to end.
  RunResult Wait(absl::Duration timeout);
  // What it wrote so far.
  std::string out() const;
  std::string err() const;

 private:
  struct Files;
  std::unique_ptr<Files> files_;
  pid_t pid_ = -1;
  bool done_ = false;
};

}  // namespace tandem::testing

#endif  // TANDEM_TESTS_CLI_RUN_BINARY_H_
