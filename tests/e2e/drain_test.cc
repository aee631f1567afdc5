// Issue 14, item 4: a drain (CloudServer::Shutdown(grace), SIGTERM) answers
// the Continues it accepted, tells every connected edge GoingAway, and is
// clean (drained:true in the log) when the edges leave by themselves.
#include <sstream>
#include <string>
#include <thread>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "loopback.h"
#include "raw_client.h"
#include "raw_messages.h"
#include "tandem/wire/tandem.grpc.pb.h"
#include "wire_convert.h"

namespace tandem::e2e {
namespace {

using edge::EdgeSession;
using edge::TokenInfo;
using edge::TokenSource;

// A thread joined however the test ends.
class Joined {
 public:
  template <typename F>
  explicit Joined(F f) : thread_(std::move(f)) {}
  ~Joined() { Join(); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::thread thread_;
};

// The server's log, which the test reads after Shutdown.
struct LoggedServer {
  std::ostringstream log;
  std::unique_ptr<cloud::CloudServer> server;
  LoggedServer() {
    cloud::ServerOptions options;
    options.log = &log;
    server = StartServer(options);
  }
  std::string StoppedLine() const {
    const std::string text = log.str();
    const size_t at = text.find("\"server_stopped\"");
    if (at == std::string::npos) return "";
    const size_t begin = text.rfind('\n', at);
    const size_t end = text.find('\n', at);
    return text.substr(begin == std::string::npos ? 0 : begin + 1,
                       end == std::string::npos ? std::string::npos : end - begin - 1);
  }
};

TEST(Drain, EdgesToldGoingAwayLeaveAndTheDrainIsClean) {
  LoggedServer logged;
  ASSERT_NE(logged.server, nullptr);
  auto session = EdgeSession::Create(
      CollaborativeOptions(logged.server->address(), "fp32", /*never_exit=*/true));
  ASSERT_TRUE(session.ok()) << session.status();
  int n = 0, cloud_before = 0;
  auto summary = (*session)->GenerateIds(Prompts(1, 16)[0], Greedy(16), [&](const TokenInfo& t) {
    if (t.id < 0) return true;
    ++n;
    if (t.source == TokenSource::kCloud) ++cloud_before;
    // A long grace: the drain is clean only if the edge leaves by itself.
    if (n == 4) logged.server->Shutdown(absl::Seconds(60));
    return true;
  });
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->generated_tokens, 16);  // the rest decided at the edge
  EXPECT_GE(cloud_before, 4);
  const std::string stopped = logged.StoppedLine();
  EXPECT_NE(stopped.find("\"drained\":true"), std::string::npos) << stopped;
  EXPECT_NE(stopped.find("\"streams_told\":1"), std::string::npos) << stopped;
  EXPECT_NE(stopped.find("\"streams_cut\":0"), std::string::npos) << stopped;
  EXPECT_EQ(logged.server->stats().going_away_sent, 1);
}

TEST(Drain, AcceptedContinueIsAnsweredBeforeGoingAway) {
  LoggedServer logged;
  ASSERT_NE(logged.server, nullptr);
  RawClient client(logged.server->address());
  ASSERT_TRUE(client.Send(ShippedFp32Open("drain-session-000001")));
  wire::ServerMessage m;
  ASSERT_TRUE(client.Read(&m));
  ASSERT_TRUE(m.has_ack());
  // A backlog, so the Continue is likely still queued when the drain begins.
  wire::ClientMessage context;
  context.mutable_context()->set_first_position(0);
  EncodeFp32(at::randn({500, 256}), context.mutable_context()->mutable_hidden());
  ASSERT_TRUE(client.Send(context));
  wire::ClientMessage request;
  request.mutable_continue_()->set_position(500);
  request.mutable_continue_()->set_request_id(3);
  EncodeFp32(at::randn({1, 256}), request.mutable_continue_()->mutable_hidden());
  ASSERT_TRUE(client.Send(request));
  // Accepted: its row is queued or has run (received is not enough).
  auto accepted = [&] {
    const cloud::ContextStats s = logged.server->stats().context;
    return s.queued_rows + s.rows_run >= 501;
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (!accepted() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_TRUE(accepted());
  Joined drain([&] { logged.server->Shutdown(absl::Seconds(60)); });
  // The token, then GoingAway; then this client leaves.
  bool token = false, going_away = false;
  while (client.Read(&m)) {
    if (m.has_token()) {
      EXPECT_FALSE(going_away) << "GoingAway came before the answer";
      EXPECT_EQ(m.token().request_id(), 3u);
      token = true;
    }
    if (m.has_going_away()) {
      going_away = true;
      EXPECT_GT(m.going_away().grace_ms(), 0u);
      break;
    }
  }
  EXPECT_TRUE(token);
  EXPECT_TRUE(going_away);
  // A Continue sent now is refused (non-fatal) rather than left unanswered.
  request.mutable_continue_()->set_position(501);
  request.mutable_continue_()->set_request_id(4);
  ASSERT_TRUE(client.Send(request));
  ASSERT_TRUE(client.Read(&m));
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), static_cast<int32_t>(absl::StatusCode::kUnavailable));
  EXPECT_EQ(m.error().request_id(), 4u);
  EXPECT_FALSE(m.error().fatal());
  client.Finish();
  drain.Join();
  const std::string stopped = logged.StoppedLine();
  EXPECT_NE(stopped.find("\"drained\":true"), std::string::npos) << stopped;
  EXPECT_EQ(logged.server->stats().drain_refusals, 1);
}

TEST(Drain, AClientThatIgnoresGoingAwayIsCutAtTheDeadline) {
  LoggedServer logged;
  ASSERT_NE(logged.server, nullptr);
  RawClient client(logged.server->address());
  ASSERT_TRUE(client.Send(ShippedFp32Open("drain-session-000002")));
  wire::ServerMessage m;
  ASSERT_TRUE(client.Read(&m));
  ASSERT_TRUE(m.has_ack());
  Joined drain([&] { logged.server->Shutdown(absl::Milliseconds(300)); });
  ASSERT_TRUE(client.Read(&m));
  EXPECT_TRUE(m.has_going_away()) << m.DebugString();
  // Ignoring it: the server ends the stream when the grace period is over.
  while (client.Read(&m)) {
  }
  drain.Join();
  const std::string stopped = logged.StoppedLine();
  EXPECT_NE(stopped.find("\"drained\":false"), std::string::npos) << stopped;
  EXPECT_NE(stopped.find("\"streams_cut\":1"), std::string::npos) << stopped;
}

}  // namespace
}  // namespace tandem::e2e
