// Cloud-only mode over real gRPC on loopback: the cloud runs the whole model
// (Continuation.Generate) and CloudOnlySession streams the tokens. Greedy
// output must equal the full model's, directly and through the link emulator;
// the server's limits and checks apply as for Session streams.
#include <atomic>
#include <cmath>
#include <thread>

#include "gtest/gtest.h"
#include "loopback.h"
#include "tandem/bench/link_emulator.h"
#include "tandem/cloud/cloud_model.h"
#include "tandem/edge/cloud_only_session.h"
#include "tandem/generate.h"
#include "tandem/tokenizer.h"

namespace tandem::e2e {
namespace {

edge::CloudOnlyOptions CloudOnly(const std::string& address) {
  edge::CloudOnlyOptions options;
  options.model_dir = ShippedModelDir();
  options.cloud.address = address;
  options.generation_timeout = absl::Seconds(120);  // generous: CI machines are shared
  return options;
}

std::unique_ptr<edge::CloudOnlySession> NewSession(const edge::CloudOnlyOptions& options) {
  auto session = edge::CloudOnlySession::Create(options);
  EXPECT_TRUE(session.ok()) << session.status();
  return session.ok() ? std::move(*session) : nullptr;
}

TEST(CloudOnly, GreedyOutputEqualsTheFullModel) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto session = NewSession(CloudOnly(server->address()));
  ASSERT_NE(session, nullptr);
  for (const auto& prompt : Prompts(3, 24)) {
    int64_t streamed = 0;
    auto summary = session->GenerateIds(prompt, Greedy(32), [&](const edge::TokenInfo& t) {
      EXPECT_EQ(t.source, edge::TokenSource::kCloud);
      EXPECT_EQ(t.position, static_cast<int64_t>(prompt.size()) + streamed);
      ++streamed;
      return true;
    });
    ASSERT_TRUE(summary.ok()) << summary.status();
    EXPECT_EQ(summary->ids, FullGreedy(prompt, 32));
    EXPECT_EQ(streamed, 32);
    EXPECT_EQ(summary->counts.cloud, 32);
    EXPECT_GT(summary->cloud.bytes_up, static_cast<int64_t>(prompt.size()));
    EXPECT_GT(summary->cloud.bytes_down, 32);
    EXPECT_GT(summary->cloud.cloud_compute_seconds, 0);
    EXPECT_GT(summary->prefill_seconds, 0);
  }
  EXPECT_EQ(server->stats().cloud_only_requests, 3);
  EXPECT_EQ(server->stats().cloud_only_tokens, 96);
  EXPECT_EQ(server->stats().cloud_only_active, 0);
}

TEST(CloudOnly, TextMatchesGenerateFullThroughAnEmulatedLink) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  bench::LinkEmulatorOptions link_options;
  link_options.target_port = server->port();
  link_options.profile = bench::LinkProfile::Symmetric(absl::Milliseconds(20), 50e6);
  auto link = bench::LinkEmulator::Start(link_options);
  ASSERT_TRUE(link.ok()) << link.status();
  auto session = NewSession(CloudOnly((*link)->address()));
  ASSERT_NE(session, nullptr);
  edge::GenerateOptions options = Greedy(24);
  options.add_special_tokens = true;
  auto summary = session->Generate("And God said", options);
  ASSERT_TRUE(summary.ok()) << summary.status();

  auto tokenizer = Tokenizer::Load(ShippedModelDir());
  ASSERT_TRUE(tokenizer.ok());
  GenerateParams params;
  params.max_new_tokens = 24;
  params.stop_at_eos = false;
  auto reference = GenerateFull(ShippedFullModel(), **tokenizer, "And God said", params);
  ASSERT_TRUE(reference.ok()) << reference.status();
  EXPECT_EQ(summary->ids, reference->ids);
  EXPECT_EQ(summary->text, reference->text);
  // The prompt goes up and the first token comes back: at least one round trip.
  EXPECT_GE(summary->prefill_seconds, 0.020);
  EXPECT_GT((*link)->stats().bytes_up, 0);
}

TEST(CloudOnly, CallbackAndCancelStopTheStream) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto session = NewSession(CloudOnly(server->address()));
  ASSERT_NE(session, nullptr);
  const auto prompt = Prompts(1, 16)[0];
  int seen = 0;
  auto stopped = session->GenerateIds(prompt, Greedy(64), [&](const edge::TokenInfo&) {
    return ++seen < 5;
  });
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(stopped->stop_reason, edge::StopReason::kCallback);
  EXPECT_EQ(stopped->generated_tokens, 5);

  auto cancelled = session->GenerateIds(prompt, Greedy(400), [&](const edge::TokenInfo& t) {
    if (t.position == static_cast<int64_t>(prompt.size()) + 2) session->Cancel();
    return true;
  });
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->stop_reason, edge::StopReason::kCancelled);
  EXPECT_LT(cancelled->generated_tokens, 400);
  // The session is usable again.
  auto again = session->GenerateIds(prompt, Greedy(4));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->generated_tokens, 4);
}

TEST(CloudOnly, RefusesBadRequests) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  edge::CloudOnlyOptions options = CloudOnly(server->address());
  auto session = NewSession(options);
  ASSERT_NE(session, nullptr);
  const auto prompt = Prompts(1, 8)[0];

  EXPECT_EQ(session->GenerateIds({}, Greedy(4)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(session->GenerateIds({1, 99999}, Greedy(4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(session->GenerateIds(prompt, Greedy(100000)).status().code(),
            absl::StatusCode::kOutOfRange);
  edge::GenerateOptions with_stop = Greedy(4);
  with_stop.stop_strings = {"\n"};
  EXPECT_EQ(session->GenerateIds(prompt, with_stop).status().code(),
            absl::StatusCode::kInvalidArgument);

  options.expected_fingerprint = 0x1234;
  auto wrong_model = NewSession(options);
  ASSERT_NE(wrong_model, nullptr);
  auto refused = wrong_model->GenerateIds(prompt, Greedy(4));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();

  options.expected_fingerprint = ShippedCloudModel()->fingerprint();
  auto right_model = NewSession(options);
  ASSERT_NE(right_model, nullptr);
  EXPECT_TRUE(right_model->GenerateIds(prompt, Greedy(2)).ok());
  EXPECT_EQ(server->stats().cloud_only_active, 0);
}

TEST(CloudOnly, NeedsAnApiKeyWhenTheServerDoes) {
  cloud::ServerOptions server_options;
  server_options.api_keys = {{"0123456789abcdef-key", "alice"}};
  auto server = StartServer(server_options);
  ASSERT_NE(server, nullptr);
  edge::CloudOnlyOptions options = CloudOnly(server->address());
  const auto prompt = Prompts(1, 8)[0];
  auto anonymous = NewSession(options);
  ASSERT_NE(anonymous, nullptr);
  EXPECT_EQ(anonymous->GenerateIds(prompt, Greedy(2)).status().code(),
            absl::StatusCode::kUnauthenticated);
  options.cloud.api_key = "0123456789abcdef-key";
  auto alice = NewSession(options);
  ASSERT_NE(alice, nullptr);
  EXPECT_TRUE(alice->GenerateIds(prompt, Greedy(2)).ok());
}

TEST(CloudOnly, MemoryBudgetAndSessionCapApply) {
  cloud::ServerOptions server_options;
  server_options.limits.memory_budget_bytes = 128 << 10;  // 16 positions of full KV
  auto server = StartServer(server_options);
  ASSERT_NE(server, nullptr);
  auto session = NewSession(CloudOnly(server->address()));
  ASSERT_NE(session, nullptr);
  const auto prompt = Prompts(1, 8)[0];
  // 8 layers x 4 KV heads x 32 dims x (K, V) x 4 bytes = 8 KiB a position:
  // 8 + 2 positions fit, 8 + 64 do not.
  EXPECT_TRUE(session->GenerateIds(prompt, Greedy(2)).ok());
  EXPECT_EQ(session->GenerateIds(prompt, Greedy(64)).status().code(),
            absl::StatusCode::kResourceExhausted);

  cloud::ServerOptions one;
  one.limits.max_sessions = 1;
  auto small = StartServer(one);
  ASSERT_NE(small, nullptr);
  auto first = NewSession(CloudOnly(small->address()));
  auto second = NewSession(CloudOnly(small->address()));
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  // Hold the only slot open until the second request has been refused.
  std::atomic<bool> refused{false};
  absl::StatusCode second_code = absl::StatusCode::kOk;
  auto held = first->GenerateIds(prompt, Greedy(200), [&](const edge::TokenInfo& t) {
    if (t.position == static_cast<int64_t>(prompt.size())) {
      second_code = second->GenerateIds(prompt, Greedy(2)).status().code();
      refused = true;
    }
    return !refused.load();
  });
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(second_code, absl::StatusCode::kResourceExhausted);
}

TEST(CloudOnly, ServerWithoutTheEdgeLayersRefuses) {
  cloud::CloudModelOptions model_options;
  model_options.model_dir = ShippedModelDir();
  model_options.token_resync = false;
  auto model = cloud::CloudModel::Create(model_options);
  ASSERT_TRUE(model.ok()) << model.status();
  cloud::ServerOptions server_options;
  server_options.listen_address = "127.0.0.1:0";
  auto server = cloud::CloudServer::Start(server_options,
                                          std::shared_ptr<const cloud::CloudModel>(std::move(*model)));
  ASSERT_TRUE(server.ok()) << server.status();
  auto session = NewSession(CloudOnly((*server)->address()));
  ASSERT_NE(session, nullptr);
  EXPECT_EQ(session->GenerateIds(Prompts(1, 8)[0], Greedy(2)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(CloudOnly, UnreachableCloudIsAnError) {
  edge::CloudOnlyOptions options = CloudOnly("127.0.0.1:1");
  options.generation_timeout = absl::Seconds(5);
  auto session = NewSession(options);
  ASSERT_NE(session, nullptr);
  auto result = session->GenerateIds(Prompts(1, 8)[0], Greedy(2));
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable) << result.status();
}

}  // namespace
}  // namespace tandem::e2e
