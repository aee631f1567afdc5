#include "run_binary.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/time/clock.h"
#include "testing/tiny_model.h"

namespace tandem::testing {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& out_path,
            const std::string& err_path) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int in = open("/dev/null", O_RDONLY);
    const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || err < 0) _exit(126);
    dup2(in, STDIN_FILENO);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    std::perror("execv");
    _exit(127);
  }
  return pid;
}

// Waits for `pid` with a deadline (polling), killing it when the deadline passes.
void Reap(pid_t pid, absl::Duration timeout, RunResult* result) {
  int status = 0;
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      result->timed_out = true;
      return;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (WIFEXITED(status)) result->exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result->signal = WTERMSIG(status);
}

}  // namespace

RunResult RunBinary(const std::vector<std::string>& argv, absl::Duration timeout) {
  TempDir dir;
  const std::string out_path = (dir.path() / "out").string();
  const std::string err_path = (dir.path() / "err").string();
  RunResult result;
  Reap(Spawn(argv, out_path, err_path), timeout, &result);
  result.out = ReadAll(out_path);
  result.err = ReadAll(err_path);
  return result;
}

struct BackgroundProcess::Files {
  TempDir dir;
  std::string out = (dir.path() / "out").string();
  std::string err = (dir.path() / "err").string();
};

BackgroundProcess::BackgroundProcess(const std::vector<std::string>& argv)
    : files_(std::make_unique<Files>()) {
  pid_ = Spawn(argv, files_->out, files_->err);
}

BackgroundProcess::~BackgroundProcess() {
  if (!done_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

void BackgroundProcess::Signal(int signal) {
  if (!done_) kill(pid_, signal);
}

RunResult BackgroundProcess::Wait(absl::Duration timeout) {
  RunResult result;
  Reap(pid_, timeout, &result);
  done_ = true;
  result.out = out();
  result.err = err();
  return result;
}

std::string BackgroundProcess::out() const { return ReadAll(files_->out); }
std::string BackgroundProcess::err() const { return ReadAll(files_->err); }

}  // namespace tandem::testing
