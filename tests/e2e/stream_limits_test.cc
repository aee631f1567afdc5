// Idle streams are bounded (issue 14, item 2): a cap on concurrent streams
// (total and per identity), an idle deadline, an Open deadline, a silent
// stream whose session expired is ended, and the server's threads do not grow
// with idle streams (gRPC callback API). Every wait polls with a deadline.
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "loopback.h"
#include "raw_client.h"
#include "raw_messages.h"
#include "tandem/wire/tandem.grpc.pb.h"
#include "wire_convert.h"

namespace tandem::e2e {
namespace {

wire::ClientMessage Open(const std::string& session_id) {
  wire::ClientMessage m = ShippedFp32Open(session_id);
  wire::Open* open = m.mutable_open();
  open->set_capacity(64);
  return m;
}

// Polls `done` until it holds or `timeout` passes.
template <typename F>
bool PollUntil(F done, absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return done();
}

int ThreadsOfThisProcess() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "Threads:")) {
      int n = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(8)), &n)) return n;
    }
  }
  return -1;
}

// The client leaves at once (the server sees the call cancelled).
void Leave(RawClient& client) {
  client.Cancel();
  (void)client.Finish();
}

// A stream that only opens: the client sends nothing (or an Open) and waits.
std::vector<std::unique_ptr<RawClient>> OpenIdle(const cloud::CloudServer& server, int n,
                                                 const std::string& key = "") {
  std::vector<std::unique_ptr<RawClient>> out;
  for (int i = 0; i < n; ++i) out.push_back(std::make_unique<RawClient>(server.address(), key));
  return out;
}

TEST(StreamLimits, StreamOverTheTotalCapIsRefusedAndCounted) {
  cloud::ServerOptions options;
  options.max_streams = 6;
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  auto idle = OpenIdle(*server, 6);
  ASSERT_TRUE(PollUntil([&] { return server->stats().streams_active == 6; }))
      << server->stats().streams_active;

  RawClient extra(server->address());
  const grpc::Status refused = extra.Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(refused.error_message(), "max_streams"))
      << refused.error_message();
  EXPECT_EQ(server->stats().streams_refused, 1);
  EXPECT_TRUE(absl::StrContains(server->MetricsText(), "tandem_streams_refused_total 1"));
  EXPECT_TRUE(absl::StrContains(server->MetricsText(), "reason=\"resource_exhausted\""));

  // A slot freed is a slot granted.
  Leave(*idle[0]);
  ASSERT_TRUE(PollUntil([&] { return server->stats().streams_active == 5; }));
  RawClient again(server->address());
  ASSERT_TRUE(again.Send(Open("cap-session-0123456789")));
  wire::ServerMessage reply;
  ASSERT_TRUE(again.Read(&reply));
  EXPECT_TRUE(reply.has_ack()) << reply.DebugString();
}

TEST(StreamLimits, PerIdentityCapLeavesOtherIdentitiesServed) {
  cloud::ServerOptions options;
  options.api_keys = {{"alice-key-0123456789", "alice"}, {"bob-key-0123456789ab", "bob"}};
  options.max_streams_per_identity = 3;
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  auto alice = OpenIdle(*server, 3, "alice-key-0123456789");
  ASSERT_TRUE(PollUntil([&] { return server->stats().streams_active == 3; }));

  RawClient fourth(server->address(), "alice-key-0123456789");
  const grpc::Status refused = fourth.Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(refused.error_message(), "alice")) << refused.error_message();

  RawClient bob(server->address(), "bob-key-0123456789ab");
  ASSERT_TRUE(bob.Send(Open("bob-session-0123456789")));
  wire::ServerMessage reply;
  ASSERT_TRUE(bob.Read(&reply));
  EXPECT_TRUE(reply.has_ack()) << reply.DebugString();
  EXPECT_EQ(server->stats().streams_refused, 1);
}

TEST(StreamLimits, SilentStreamIsEndedAfterTheIdleTimeoutAndItsEmptySessionDropped) {
  cloud::ServerOptions options;
  options.stream_idle_timeout = absl::Milliseconds(400);
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  RawClient client(server->address());
  const absl::Time start = absl::Now();
  ASSERT_TRUE(client.Send(Open("idle-session-0123456789")));
  wire::ServerMessage reply;
  ASSERT_TRUE(client.Read(&reply));
  ASSERT_TRUE(reply.has_ack());
  EXPECT_EQ(server->stats().context.sessions, 1);

  // Read blocks until the server ends the stream: a fatal Error, then the status.
  ASSERT_TRUE(client.Read(&reply));
  ASSERT_TRUE(reply.has_error()) << reply.DebugString();
  EXPECT_TRUE(reply.error().fatal());
  EXPECT_TRUE(absl::StrContains(reply.error().message(), "idle")) << reply.error().message();
  const grpc::Status status = client.Finish();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(400));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_EQ(server->stats().streams_idle_ended, 1);
  // It held no position: nothing to resume, so its KV cache is not kept to the TTL.
  EXPECT_TRUE(PollUntil([&] { return server->stats().context.sessions == 0; }));
}

TEST(StreamLimits, StreamThatNeverOpensIsEndedAfterTheOpenTimeout) {
  cloud::ServerOptions options;
  options.stream_idle_timeout = absl::ZeroDuration();
  options.stream_open_timeout = absl::Milliseconds(300);
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  RawClient client(server->address());
  wire::Error error;
  const absl::Time start = absl::Now();
  wire::ServerMessage reply;
  while (client.Read(&reply)) {
    if (reply.has_error()) error = reply.error();
  }
  const grpc::Status status = client.Finish();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_TRUE(absl::StrContains(error.message(), "no Open")) << error.message();
}

TEST(StreamLimits, SilentStreamWhoseSessionExpiredIsEnded) {
  cloud::ServerOptions options;
  options.stream_idle_timeout = absl::ZeroDuration();  // only the session's TTL applies
  options.limits.idle_ttl = absl::Milliseconds(200);
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  RawClient client(server->address());
  ASSERT_TRUE(client.Send(Open("expiring-session-012345")));
  wire::ServerMessage reply;
  ASSERT_TRUE(client.Read(&reply));
  ASSERT_TRUE(reply.has_ack());
  // The TTL is enforced by the scheduler's periodic sweep; sweep too while polling.
  ASSERT_TRUE(PollUntil([&] {
    server->contexts().ExpireIdle();
    return server->stats().context.sessions == 0;
  }));
  ASSERT_TRUE(client.Read(&reply));
  ASSERT_TRUE(reply.has_error()) << reply.DebugString();
  EXPECT_TRUE(absl::StrContains(reply.error().message(), "no longer held"));
  EXPECT_EQ(client.Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(StreamLimits, AnActiveStreamIsNotEndedByTheIdleTimeout) {
  cloud::ServerOptions options;
  options.stream_idle_timeout = absl::Milliseconds(300);
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  // A collaborative generation far longer than the idle timeout.
  edge::EdgeOptions edge_options = CollaborativeOptions(server->address(), "fp32", true);
  auto session = edge::EdgeSession::Create(edge_options);
  ASSERT_TRUE(session.ok()) << session.status();
  const auto prompt = Prompts(1, 16)[0];
  const absl::Time start = absl::Now();
  auto summary = (*session)->GenerateIds(prompt, Greedy(24));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->ids, FullGreedy(prompt, 24));
  if (absl::Now() - start < absl::Milliseconds(600)) {
    GTEST_SKIP() << "the generation was too fast to outlast the idle timeout";
  }
  EXPECT_EQ(summary->counts.cloud, 24);
  EXPECT_EQ(server->stats().streams_idle_ended, 0);
}

TEST(StreamLimits, ThreadsDoNotGrowWithIdleStreamsAndReturnAfterThem) {
  cloud::ServerOptions options;
  options.max_streams = 1000;
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  {  // warm up gRPC's client and server threads with a few streams
    auto warm = OpenIdle(*server, 4);
    ASSERT_TRUE(PollUntil([&] { return server->stats().streams_active == 4; }));
    for (auto& c : warm) Leave(*c);
    ASSERT_TRUE(PollUntil([&] { return server->stats().streams_active == 0; }));
  }
  const int baseline = ThreadsOfThisProcess();
  ASSERT_GT(baseline, 0);
  constexpr int kStreams = 300;
  auto idle = OpenIdle(*server, kStreams);
  for (int i = 0; i < kStreams; i += 3) {  // a third also opens a session
    ASSERT_TRUE(idle[i]->Send(Open("thread-session-" + std::to_string(100000 + i))));
  }
  ASSERT_TRUE(PollUntil([&] { return server->stats().streams_active == kStreams; }));
  const int with_streams = ThreadsOfThisProcess();
  // The synchronous server held two threads per stream (handler + writer):
  // 600 more here. Client and server together may add a few pollers.
  EXPECT_LT(with_streams - baseline, 16) << baseline << " -> " << with_streams;

  for (auto& c : idle) Leave(*c);
  ASSERT_TRUE(PollUntil([&] { return server->stats().streams_active == 0; }));
  idle.clear();
  EXPECT_TRUE(PollUntil([&] { return ThreadsOfThisProcess() <= baseline + 4; }))
      << baseline << " -> " << ThreadsOfThisProcess();
  // Open-only sessions of abandoned streams were dropped with them.
  EXPECT_TRUE(PollUntil([&] { return server->stats().context.sessions == 0; }));
}

}  // namespace
}  // namespace tandem::e2e
