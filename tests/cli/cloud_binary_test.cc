// tandem-cloud as an operator runs it: numeric flags are range-checked and a
// refused value is named (issue 14, item 8); an address it cannot own ends it
// with a message and exit code 1, never a crash (item 9).
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/clock.h"
#include "run_binary.h"
#include "testing/tiny_model.h"

namespace tandem::testing {
namespace {

using ::testing::HasSubstr;

const std::string kModel = std::string(TANDEM_SOURCE_DIR) + "/models/tandem-tiny";

RunResult Cloud(std::vector<std::string> args) {
  args.insert(args.begin(), TANDEM_CLOUD_BINARY);
  return RunBinary(args, absl::Seconds(90));
}

void ExpectRefusal(const RunResult& r, const std::string& typed) {
  ASSERT_FALSE(r.timed_out) << "the server started instead of refusing " << typed;
  ASSERT_EQ(r.signal, 0) << "killed by signal " << r.signal << "\n" << r.err;
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr(typed));
}

// The example: 2^32 passed validation and became 0 for gRPC.
TEST(CloudBinary, MaxMessageBytesBeyondIntIsRefusedNamingTheValue) {
  RunResult r = Cloud({"--model", kModel, "--port", "0", "--max-message-bytes", "4294967296"});
  ExpectRefusal(r, "4294967296");
  EXPECT_THAT(r.err, HasSubstr("out of range"));
}

TEST(CloudBinary, EveryNumericFlagIsRangeChecked) {
  const std::vector<std::vector<std::string>> cases = {
      {"--port", "70000"},           {"--port", "-1"},
      {"--threads", "-2"},           {"--ttl-seconds", "nan"},
      {"--memory-budget", "99999999999999G"}, {"--max-sessions", "0"},
      {"--max-batch-rows", "12x"},   {"--grace-seconds", "1e999"},
      {"--split", "-1"},             {"--stats-interval", "-5"},
      {"--max-positions", "9999999999"}, {"--max-streams", "0"},
      {"--max-streams-per-identity", "-1"}, {"--stream-idle-seconds", "-3"},
      {"--stream-open-seconds", "x"},  {"--keepalive-seconds", "0.5"},
      {"--keepalive-timeout-seconds", "99999"}};
  for (const auto& c : cases) {
    std::vector<std::string> args = {"--model", kModel, "--port", "0"};
    args.insert(args.end(), c.begin(), c.end());
    SCOPED_TRACE(c[0] + " " + c[1]);
    ExpectRefusal(Cloud(args), c[1]);
  }
}

// Item 9: an address that is not this machine's used to print gRPC's bind
// error and then die of SIGSEGV. (192.0.2.1 is TEST-NET-1: never local, and a
// literal, so no DNS query leaves the machine; hosts that need resolving, like
// the 256.1.1.1, take the same failed-bind path.)
TEST(CloudBinary, AnAddressItCannotOwnIsAClearErrorNotACrash) {
  for (const char* host : {"192.0.2.1", "[::1"}) {
    SCOPED_TRACE(host);
    RunResult r = Cloud({"--model", kModel, "--listen", host, "--port", "0"});
    ASSERT_FALSE(r.timed_out);
    ASSERT_EQ(r.signal, 0) << "killed by signal " << r.signal << "\n" << r.err;
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr(host));
  }
}

// SIGHUP re-reads --api-keys. The file is rewritten in place with a key of the
// same length and its modification time restored, so it looks unchanged on
// disk: only the signal can make the server notice.
TEST(CloudBinary, SighupReloadsTheApiKeyFile) {
  TempDir dir;
  const std::filesystem::path keys = dir.path() / "keys.txt";
  const std::string old_key = "bob-key-0123456789abcdefgh";
  const std::string new_key = "bob-key-ZYXWVUTSRQPONMLKJI";
  std::ofstream(keys) << "bob " << old_key << "\n";
  const auto mtime = std::filesystem::last_write_time(keys);
  const std::string port_file = (dir.path() / "port").string();
  BackgroundProcess server({TANDEM_CLOUD_BINARY, "--model", kModel, "--port", "0", "--port-file",
                            port_file, "--api-keys", keys.string(), "--stats-interval", "0",
                            "--quiet", "--threads", "1"});
  int port = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (port == 0 && absl::Now() < deadline) {
    std::ifstream(port_file) >> port;
    if (port == 0) absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_GT(port, 0) << server.err();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  auto stats = [&](const std::string& key) {
    return RunBinary({TANDEM_CLOUD_BINARY, "--print-stats", address, "--api-key", key},
                     absl::Seconds(30));
  };
  ASSERT_EQ(stats(old_key).exit_code, 0);

  {
    std::fstream f(keys, std::ios::in | std::ios::out);
    f << "bob " << new_key << "\n";
  }
  std::filesystem::last_write_time(keys, mtime);
  EXPECT_EQ(stats(old_key).exit_code, 0) << "reloaded without SIGHUP";
  EXPECT_NE(stats(new_key).exit_code, 0);

  server.Signal(SIGHUP);
  const absl::Time reload_deadline = absl::Now() + absl::Seconds(30);
  while (stats(new_key).exit_code != 0 && absl::Now() < reload_deadline) {
  }
  EXPECT_EQ(stats(new_key).exit_code, 0) << server.out() << server.err();
  RunResult revoked = stats(old_key);
  EXPECT_NE(revoked.exit_code, 0);
  EXPECT_THAT(revoked.err, HasSubstr("API key"));

  server.Signal(SIGTERM);
  RunResult end = server.Wait(absl::Seconds(60));
  EXPECT_TRUE(end.exited()) << end.err;
  EXPECT_EQ(end.exit_code, 0);
  EXPECT_THAT(end.out, HasSubstr("SIGHUP, API keys reloaded"));
}

}  // namespace
}  // namespace tandem::testing
