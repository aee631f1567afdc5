// Many edge sessions against one server at once: every session completes and
// gets the same tokens as when it is served alone; the scheduler batches.
#include <thread>

#include <gtest/gtest.h>

#include "loopback.h"
#include "tandem/threads.h"

namespace tandem::e2e {
namespace {

using edge::EdgeSession;

TEST(Concurrency, SixteenSessionsEqualSerialRuns) {
  constexpr int kSessions = 16, kTokens = 24;
  SetComputeThreads(1);  // 16 decode threads share 2 cores
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const auto prompts = Prompts(kSessions, 20);
  std::vector<std::unique_ptr<EdgeSession>> sessions;
  for (int i = 0; i < kSessions; ++i) {
    auto session = EdgeSession::Create(CollaborativeOptions(server->address(), "int8", true));
    ASSERT_TRUE(session.ok()) << session.status();
    sessions.push_back(std::move(*session));
  }

  // Serial: one session at a time.
  std::vector<std::vector<int32_t>> serial(kSessions);
  for (int i = 0; i < kSessions; ++i) {
    auto summary = sessions[i]->GenerateIds(prompts[i], Greedy(kTokens));
    ASSERT_TRUE(summary.ok()) << summary.status();
    ASSERT_EQ(summary->counts.cloud, kTokens);
    serial[i] = summary->ids;
  }
  const int64_t serial_batches = server->stats().context.batches;

  // Concurrent: all at once.
  std::vector<std::vector<int32_t>> concurrent(kSessions);
  std::vector<int64_t> cloud_tokens(kSessions, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kSessions; ++i) {
    threads.emplace_back([&, i] {
      auto summary = sessions[i]->GenerateIds(prompts[i], Greedy(kTokens));
      if (summary.ok()) {
        concurrent[i] = summary->ids;
        cloud_tokens[i] = summary->counts.cloud;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const cloud::ServerStats stats = server->stats();
  for (int i = 0; i < kSessions; ++i) {
    EXPECT_EQ(cloud_tokens[i], kTokens) << "session " << i;
    EXPECT_EQ(concurrent[i], serial[i]) << "session " << i;
  }
  const int64_t concurrent_batches = stats.context.batches - serial_batches;
  std::printf("[concurrency] %d sessions x %d tokens: %lld scheduler batches concurrently "
              "(serially %lld)\n",
              kSessions, kTokens, static_cast<long long>(concurrent_batches),
              static_cast<long long>(serial_batches));
  EXPECT_LT(concurrent_batches, serial_batches) << "the scheduler should batch across sessions";
  SetComputeThreads(2);
}

}  // namespace
}  // namespace tandem::e2e
