// Pipelined speculative verification end to end (issue 9): the edge decodes on
// top of its drafts while the cloud verifies them, over real gRPC through the
// link emulator. Under greedy decoding the confirmed stream must be
// token-identical to the blocking policy at every round-trip time, through a
// drop-and-recover, and when the cloud rejects drafts on purpose.
#include <map>
#include <memory>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "link/faulty_transport.h"
#include "link/grpc_transport.h"
#include "loopback.h"
#include "tandem/bench/link_emulator.h"
#include "tandem/edge/cloud_link.h"
#include "tandem/fingerprint.h"
#include "tandem/wire/tandem.pb.h"

namespace tandem::e2e {
namespace {

using edge::EdgeSession;
using edge::GenerateOptions;
using edge::TokenInfo;

constexpr int kPrompts = 16;
constexpr int kPromptTokens = 16;
constexpr int kNewTokens = 64;

std::vector<std::vector<int32_t>> RunAll(EdgeSession& session, const GenerateOptions& options,
                                      std::vector<edge::GenerationSummary>* summaries = nullptr) {
  std::vector<std::vector<int32_t>> out;
  for (const auto& prompt : Prompts(kPrompts, kPromptTokens)) {
    auto summary = session.GenerateIds(prompt, options);
    EXPECT_TRUE(summary.ok()) << summary.status();
    if (!summary.ok()) return out;
    out.push_back(summary->ids);
    if (summaries != nullptr) summaries->push_back(*summary);
  }
  return out;
}

// The reference: the blocking policy (wait for every verdict), no emulator.
const std::vector<std::vector<int32_t>>& BlockingReference(const std::string& address) {
  static auto* reference = new std::map<std::string, std::vector<std::vector<int32_t>>>();
  auto it = reference->find(address);
  if (it != reference->end()) return it->second;
  edge::EdgeOptions options = CollaborativeOptions(address, "fp32", false);
  options.cloud.max_in_flight = 0;
  auto session = EdgeSession::Create(options);
  EXPECT_TRUE(session.ok()) << session.status();
  std::vector<edge::GenerationSummary> summaries;
  auto ids = RunAll(**session, Greedy(kNewTokens), &summaries);
  for (const auto& s : summaries) {
    EXPECT_EQ(s.cloud.failed_requests, 0) << s.cloud.last_error;
    EXPECT_EQ(s.speculation.wasted_steps, 0);  // blocking never decodes on a draft
    EXPECT_EQ(s.speculation.rolled_back, s.speculation.rejected);
  }
  return reference->emplace(address, std::move(ids)).first->second;
}

std::unique_ptr<bench::LinkEmulator> Emulate(const cloud::CloudServer& server,
                                             absl::Duration rtt) {
  bench::LinkEmulatorOptions options;
  options.target_port = server.port();
  options.profile = bench::LinkProfile::Symmetric(rtt, 0);
  auto emulator = bench::LinkEmulator::Start(options);
  EXPECT_TRUE(emulator.ok()) << emulator.status();
  return emulator.ok() ? *std::move(emulator) : nullptr;
}

class PipelinedAtRtt : public ::testing::TestWithParam<int> {};

TEST_P(PipelinedAtRtt, ConfirmedDeliveryIsTokenIdenticalToBlocking) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const auto& reference = BlockingReference(server->address());
  auto link = Emulate(*server, absl::Milliseconds(GetParam()));
  ASSERT_NE(link, nullptr);
  auto session = EdgeSession::Create(CollaborativeOptions(link->address(), "fp32", false));
  ASSERT_TRUE(session.ok()) << session.status();
  std::vector<edge::GenerationSummary> summaries;
  const auto ids = RunAll(**session, Greedy(kNewTokens), &summaries);
  ASSERT_EQ(ids.size(), reference.size());
  int64_t drafts = 0, rejected = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(ids[i], reference[i]) << "prompt " << i;
    EXPECT_EQ(summaries[i].speculation.unverified, 0) << summaries[i].cloud.last_error;
    drafts += summaries[i].speculation.drafts;
    rejected += summaries[i].speculation.rejected;
  }
  EXPECT_GT(drafts, 0);
  std::printf("[link: %s]\n", (*session)->cloud_link()->stats().last_error.c_str());
  std::printf("[rtt %d ms: %lld drafts, %lld rejected]\n", GetParam(),
              static_cast<long long>(drafts), static_cast<long long>(rejected));
}

INSTANTIATE_TEST_SUITE_P(Rtt, PipelinedAtRtt, ::testing::Values(0, 20, 60));

// A link that goes silent for a while and comes back: drafts wait (their
// deadline is longer than the cut), nothing falls back, the text is identical.
TEST(Pipelined, ConfirmedDeliverySurvivesADropAndRecover) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const auto& reference = BlockingReference(server->address());
  auto link = Emulate(*server, absl::Milliseconds(20));
  ASSERT_NE(link, nullptr);
  auto session = EdgeSession::Create(CollaborativeOptions(link->address(), "fp32", false));
  ASSERT_TRUE(session.ok()) << session.status();
  const auto prompts = Prompts(kPrompts, kPromptTokens);
  int64_t tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto summary = (*session)->GenerateIds(prompts[i], Greedy(kNewTokens), [&](const TokenInfo&) {
      // A cut in the middle of the 3rd and the 10th generation.
      if ((i == 2 || i == 9) && ++tokens % kNewTokens == kNewTokens / 2) {
        link->ScheduleCut(absl::ZeroDuration(), absl::Milliseconds(300),
                          bench::CutMode::kBlackHole);
      }
      return true;
    });
    ASSERT_TRUE(summary.ok()) << summary.status();
    EXPECT_EQ(summary->ids, reference[i]) << "prompt " << i;
  }
  EXPECT_GE(link->stats().cuts, 2);
}

// The cloud rejects drafts on purpose: a transport that corrupts the draft of
// every third Continue on the way up. The server's rejection is real (it
// truncates and moves to a new branch) and the edge rolls back; the output
// must still equal blocking mode's, and each corrupted draft is a rejection.
TEST(Pipelined, ForcedRejectionsRollBackToTheBlockingText) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const auto& reference = BlockingReference(server->address());
  for (const bool eager : {false, true}) {
    auto faults = std::make_shared<edge::link::Faults>();
    auto corrupted = std::make_shared<int64_t>(0);
    faults->rewrite_up = [corrupted](wire::ClientMessage* m) {
      if (!m->has_continue_() || m->continue_().position() % 3 != 0) return;
      wire::Draft* d = m->mutable_continue_()->mutable_draft();
      d->set_token_id((d->token_id() + 1) % 256);
      ++*corrupted;
    };
    edge::EdgeOptions options = CollaborativeOptions(server->address(), "fp32", false);
    options.cloud.transport = [options, faults]() -> std::unique_ptr<edge::link::Transport> {
      auto grpc = edge::link::MakeGrpcTransport(options.cloud);
      if (!grpc.ok()) return nullptr;
      return edge::link::MakeFaultyTransport(*std::move(grpc), faults);
    };
    auto session = EdgeSession::Create(options);
    ASSERT_TRUE(session.ok()) << session.status();
    GenerateOptions request = Greedy(kNewTokens);
    if (eager) request.delivery = GenerateOptions::Delivery::kEager;
    const auto prompts = Prompts(kPrompts, kPromptTokens);
    int64_t rejected = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
      std::string streamed;  // eager: the text as a UI would show it
      std::vector<int32_t> shown;
      auto summary = (*session)->GenerateIds(
          prompts[i], request,
          [&](const TokenInfo& t) {
            if (t.id >= 0) shown.push_back(t.id);
            return true;
          },
          [&](const edge::Rollback& r) { shown.resize(shown.size() - r.tokens); });
      ASSERT_TRUE(summary.ok()) << summary.status();
      EXPECT_EQ(summary->ids, reference[i]) << "prompt " << i << (eager ? " eager" : "");
      EXPECT_EQ(shown, reference[i]) << "what the app was left with";
      rejected += summary->speculation.rejected;
    }
    EXPECT_GT(*corrupted, 0);
    EXPECT_GE(rejected, *corrupted / 2) << "corrupted drafts must come back rejected";
  }
}

// The edge's KV cache after rollbacks equals that of a sequence that took the
// cloud's tokens in the first place (the cloud's side is tested in
// tests/cloud against its own cache).
TEST(Pipelined, EdgeCacheAfterRollbacksEqualsADirectRun) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  edge::EdgeOptions options = CollaborativeOptions(server->address(), "fp32", true);
  auto faults = std::make_shared<edge::link::Faults>();
  faults->rewrite_up = [](wire::ClientMessage* m) {
    if (!m->has_continue_() || m->continue_().position() % 4 != 1) return;
    wire::Draft* d = m->mutable_continue_()->mutable_draft();
    d->set_token_id((d->token_id() + 7) % 256);
  };
  options.cloud.transport = [options, faults]() -> std::unique_ptr<edge::link::Transport> {
    auto grpc = edge::link::MakeGrpcTransport(options.cloud);
    if (!grpc.ok()) return nullptr;
    return edge::link::MakeFaultyTransport(*std::move(grpc), faults);
  };
  auto engine = edge::EdgeEngine::Create(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto fingerprint = SplitFingerprint((*engine)->model(), (*engine)->split());
  auto link = edge::CloudLink::Create(options.cloud, *fingerprint, (*engine)->split(),
                                      (*engine)->exit_layers(),
                                      (*engine)->model().config().hidden_size);
  ASSERT_TRUE(link.ok()) << link.status();
  auto seq = (*engine)->NewSequence(128, link->get()).value();
  seq->set_cloud(link->get(), absl::Seconds(20));
  const std::vector<int32_t> prompt = Prompts(1, 12)[0];
  // Decode 4 tokens ahead on drafts, then apply verdicts: a hand-driven window.
  auto step = seq->Start(prompt);
  ASSERT_TRUE(step.ok()) << step.status();
  std::vector<edge::StepResult> ahead = {*step};
  std::vector<int32_t> final_ids;
  int64_t rollbacks = 0;
  while (final_ids.size() < 24) {
    while (ahead.size() < 4) {
      step = seq->Step(ahead.back().token);
      ASSERT_TRUE(step.ok()) << step.status();
      ahead.push_back(*step);
    }
    auto verdicts = (*link)->TakeVerdicts(absl::Now() + absl::Seconds(20));
    for (const auto& v : verdicts) {
      auto it = std::find_if(ahead.begin(), ahead.end(),
                             [&](const edge::StepResult& r) { return r.position == v.position + 1; });
      if (it == ahead.end()) continue;
      ASSERT_TRUE(v.status.ok()) << v.status;
      it->provisional = false;
      if (!v.accepted) {
        ++rollbacks;
        it->token = v.token;
        ahead.erase(it + 1, ahead.end());
        ASSERT_TRUE(seq->Truncate(it->position).ok());
      }
    }
    while (!ahead.empty() && !ahead.front().provisional) {
      final_ids.push_back(ahead.front().token);
      ahead.erase(ahead.begin());
    }
    if (ahead.empty()) {  // keep the newest decided token to feed next
      step = seq->Step(final_ids.back());
      ASSERT_TRUE(step.ok());
      ahead.push_back(*step);
    }
  }
  EXPECT_GT(rollbacks, 0);
  // Reference: a fresh sequence fed the prompt and the final tokens directly.
  auto ref = (*engine)->NewSequence(128).value();
  ASSERT_TRUE(ref->Start(prompt).ok());
  // The rolled-back sequence has fed the final tokens and every draft still
  // ahead but the newest.
  std::vector<int32_t> fed = final_ids;
  for (size_t i = 0; i + 1 < ahead.size(); ++i) fed.push_back(ahead[i].token);
  ASSERT_EQ(static_cast<int64_t>(prompt.size() + fed.size()), seq->position());
  for (int32_t t : fed) ASSERT_TRUE(ref->Step(t).ok());
  ASSERT_TRUE(seq->Flush().ok());
  ASSERT_TRUE(ref->Flush().ok());
  const int64_t n = ref->position();
  for (int64_t l = 0; l < (*engine)->split(); ++l) {
    ASSERT_EQ(seq->cache().length(l), n);
    EXPECT_TRUE(at::allclose(seq->cache().keys(l), ref->cache().keys(l), 1e-5, 1e-6)) << l;
    EXPECT_TRUE(at::allclose(seq->cache().values(l), ref->cache().values(l), 1e-5, 1e-6)) << l;
  }
  seq->Finish();
}

}  // namespace
}  // namespace tandem::e2e
