// Issue 14, item 3 over real gRPC: 30 clients that each queue 511 rows and a
// Continue and then disconnect must not delay a healthy session, and their
// queued compute must not run after they are gone. Asserts on the server's
// work counters and on ordering (how many rows ran while the healthy request
// waited), never on wall-clock time; bench/cloud_fairness_bench.cc measures
// the latencies.
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "loopback.h"
#include "raw_client.h"
#include "raw_messages.h"
#include "tandem/wire/tandem.grpc.pb.h"
#include "wire_convert.h"

namespace tandem::e2e {
namespace {

constexpr int kFlooders = 30;
constexpr int kFloodRows = 511;

wire::ClientMessage Context(uint32_t first, const at::Tensor& rows) {
  wire::ClientMessage m;
  m.mutable_context()->set_first_position(first);
  EncodeFp32(rows, m.mutable_context()->mutable_hidden());
  return m;
}

wire::ClientMessage Continue(uint32_t position, const at::Tensor& row, uint64_t request_id) {
  wire::ClientMessage m;
  wire::Continue* c = m.mutable_continue_();
  c->set_position(position);
  c->set_request_id(request_id);
  EncodeFp32(row.view({1, -1}), c->mutable_hidden());
  return m;
}

// Reads until a message of the wanted kind (skipping the others); false when
// the stream ends first.
bool ReadUntil(RawClient& client, wire::ServerMessage::KindCase kind, wire::ServerMessage* out) {
  while (client.Read(out)) {
    if (out->kind_case() == kind) return true;
  }
  return false;
}

// The shipped model's rows at S for a real prompt, so the healthy session's
// token can be checked against the full model.
at::Tensor PromptRows(const std::vector<int32_t>& ids) {
  at::InferenceMode guard;
  const Model& m = ShippedFullModel();
  std::vector<int64_t> v(ids.begin(), ids.end());
  auto h = m.Embed(at::tensor(v, at::kLong));
  EXPECT_TRUE(h.ok());
  auto out = m.ForwardLayers(0, 4, *h, at::arange(static_cast<int64_t>(ids.size()), at::kLong),
                             nullptr);
  EXPECT_TRUE(out.ok());
  return out->clone();
}

TEST(FairService, FloodingClientsThatDisconnectDoNotDelayAHealthySession) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const int64_t batch_rows = cloud::ContextLimits{}.max_batch_rows;

  // The flood: each client queues 511 rows and asks for the token after them.
  std::vector<std::unique_ptr<RawClient>> flood;
  const at::Tensor flood_rows = at::randn({kFloodRows + 1, 256});
  for (int i = 0; i < kFlooders; ++i) {
    flood.push_back(std::make_unique<RawClient>(server->address()));
    RawClient& c = *flood.back();
    ASSERT_TRUE(c.Send(ShippedFp32Open("flooding-client-" + std::to_string(100 + i))));
    wire::ServerMessage m;
    ASSERT_TRUE(ReadUntil(c, wire::ServerMessage::kAck, &m));
    ASSERT_TRUE(c.Send(Context(0, flood_rows.narrow(0, 0, kFloodRows))));
    ASSERT_TRUE(ReadUntil(c, wire::ServerMessage::kAck, &m));  // queued
    ASSERT_TRUE(c.Send(Continue(kFloodRows, flood_rows[kFloodRows], 1)));
  }

  // The healthy session asks for one token while the flood's rows are queued.
  const std::vector<int32_t> prompt = Prompts(1, 16)[0];
  const at::Tensor rows = PromptRows(prompt);
  RawClient healthy(server->address());
  ASSERT_TRUE(healthy.Send(ShippedFp32Open("healthy-session-0001")));
  wire::ServerMessage m;
  ASSERT_TRUE(ReadUntil(healthy, wire::ServerMessage::kAck, &m));
  ASSERT_TRUE(healthy.Send(Context(0, rows.narrow(0, 0, 15))));
  ASSERT_TRUE(ReadUntil(healthy, wire::ServerMessage::kAck, &m));
  const cloud::ServerStats before = server->stats();
  ASSERT_GE(before.context.queued_rows, 8 * batch_rows)
      << "the flood already ran: this machine is too fast for the scenario";
  ASSERT_TRUE(healthy.Send(Continue(15, rows[15], 7)));
  ASSERT_TRUE(ReadUntil(healthy, wire::ServerMessage::kToken, &m));
  const cloud::ServerStats answered = server->stats();
  EXPECT_EQ(m.token().request_id(), 7u);
  EXPECT_EQ(m.token().token_id(), FullGreedy(prompt, 1)[0]);
  // Ordering: the iteration running when it arrived, its own, and perhaps
  // one more before the stats were read ran in between — not the thousands
  // of flood rows queued ahead of it.
  EXPECT_LE(answered.context.rows_run - before.context.rows_run, 3 * batch_rows)
      << "queued before: " << before.context.queued_rows;
  EXPECT_GT(answered.context.queued_rows, 0) << "the flood finished first";

  // The flooders disconnect: what they queued must not run.
  for (auto& c : flood) c->Cancel();
  flood.clear();
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    const cloud::ServerStats s = server->stats();
    if (s.streams_active == 1 && s.context.queued_rows == 0) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  const cloud::ServerStats after = server->stats();
  ASSERT_EQ(after.streams_active, 1);
  ASSERT_EQ(after.context.queued_rows, 0);
  EXPECT_GT(after.context.abandoned_rows, 0);
  // Conservation: every row received either ran or was abandoned, and every
  // Continue received was answered or abandoned.
  EXPECT_EQ(after.context.rows_run + after.context.abandoned_rows,
            after.context.rows_received + after.continue_requests);
  EXPECT_EQ(after.context.tokens_served + after.context.abandoned_continues,
            after.continue_requests);
  // Sessions that hold run positions stay for a resume until the TTL (those
  // left with none are dropped with their stream); their compute does not.
  EXPECT_LE(after.context.sessions, kFlooders + 1);
  EXPECT_GE(after.context.sessions, 1);
  std::printf("[fair] healthy token after %lld rows ran (%lld queued ahead); flood: %lld rows "
              "abandoned, %lld Continues abandoned\n",
              static_cast<long long>(answered.context.rows_run - before.context.rows_run),
              static_cast<long long>(before.context.queued_rows),
              static_cast<long long>(after.context.abandoned_rows),
              static_cast<long long>(after.context.abandoned_continues));

  // The healthy session goes on undisturbed.
  std::vector<int32_t> ids = prompt;
  ids.push_back(m.token().token_id());
  const at::Tensor next = PromptRows(ids);
  ASSERT_TRUE(healthy.Send(Continue(16, next[16], 8)));
  ASSERT_TRUE(ReadUntil(healthy, wire::ServerMessage::kToken, &m));
  EXPECT_EQ(m.token().token_id(), FullGreedy(prompt, 2)[1]);
  EXPECT_TRUE(healthy.Finish().ok());
}

TEST(FairService, QuotaRefusalsAreResourceExhaustedAndCounted) {
  cloud::ServerOptions options;
  options.limits.max_queued_rows_per_identity = 100;
  options.limits.max_queued_rows = 1000;  // nothing runs by itself
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  RawClient client(server->address());
  ASSERT_TRUE(client.Send(ShippedFp32Open("quota-session-00001")));
  wire::ServerMessage m;
  ASSERT_TRUE(ReadUntil(client, wire::ServerMessage::kAck, &m));
  ASSERT_TRUE(client.Send(Context(0, at::randn({101, 256}))));
  wire::Error error;
  const grpc::Status status = client.Finish(&error);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(error.code(), static_cast<int32_t>(absl::StatusCode::kResourceExhausted));
  EXPECT_NE(error.message().find("quota"), std::string::npos) << error.message();
  EXPECT_EQ(server->stats().context.quota_refusals, 1);
  EXPECT_NE(server->MetricsText().find("tandem_refusals_total{reason=\"resource_exhausted\"} 1"),
            std::string::npos);
  EXPECT_NE(server->MetricsText().find("tandem_quota_refusals_total 1"), std::string::npos);
}

}  // namespace
}  // namespace tandem::e2e
