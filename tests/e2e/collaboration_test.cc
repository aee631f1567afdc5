// Edge and cloud collaborating on the shipped model over loopback gRPC: the
// split is exact with the fp32 codec, quantized codecs keep agreement, and
// early exit + cloud meets the calibration's promise.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "loopback.h"

namespace tandem::e2e {
namespace {

using edge::EdgeSession;
using edge::TokenInfo;
using edge::TokenSource;

struct Generation {
  std::vector<int32_t> ids;
  std::vector<TokenSource> sources;
  edge::GenerationSummary summary;
};

Generation Generate(EdgeSession& session, const std::vector<int32_t>& prompt, int new_tokens) {
  Generation run;
  auto summary = session.GenerateIds(prompt, Greedy(new_tokens), [&](const TokenInfo& t) {
    if (t.id >= 0) run.sources.push_back(t.source);
    return true;
  });
  EXPECT_TRUE(summary.ok()) << summary.status();
  if (summary.ok()) {
    run.summary = *summary;
    run.ids = summary->ids;
  }
  return run;
}

TEST(Collaboration, Fp32SplitIsTokenIdenticalToTheFullModel) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto session = EdgeSession::Create(CollaborativeOptions(server->address(), "fp32", true));
  ASSERT_TRUE(session.ok()) << session.status();
  for (const auto& prompt : Prompts(4, 24)) {
    const Generation run = Generate(**session, prompt, 32);
    ASSERT_EQ(run.ids.size(), 32u);
    for (TokenSource s : run.sources) EXPECT_EQ(s, TokenSource::kCloud);
    EXPECT_EQ(run.ids, FullGreedy(prompt, 32));
    EXPECT_EQ(run.summary.cloud.cloud_tokens, 32);
    EXPECT_EQ(run.summary.cloud.failed_requests, 0);
  }
  EXPECT_EQ(server->stats().context.tokens_served, 4 * 32);
}

// Agreement of quantized codecs, teacher-forced along the produced sequence.
// Also prints the bytes each codec puts on the wire.
class CodecAgreement : public ::testing::TestWithParam<std::pair<const char*, double>> {};

TEST_P(CodecAgreement, MeetsItsBound) {
  const auto [codec, min_agreement] = GetParam();
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto session = EdgeSession::Create(CollaborativeOptions(server->address(), codec, true));
  ASSERT_TRUE(session.ok()) << session.status();
  // 2,048 generated tokens: 32 prompts x 64.
  int64_t tokens = 0, agreed = 0, context_rows = 0, context_bytes = 0, continue_bytes = 0;
  for (const auto& prompt : Prompts(32, 24)) {
    const Generation run = Generate(**session, prompt, 64);
    ASSERT_EQ(run.ids.size(), 64u);
    for (TokenSource s : run.sources) ASSERT_EQ(s, TokenSource::kCloud);
    for (bool a : AgreesWithFull(prompt, run.ids)) agreed += a;
    tokens += static_cast<int64_t>(run.ids.size());
    context_rows += run.summary.cloud.context_rows;
    context_bytes += run.summary.cloud.context_bytes;
    continue_bytes += run.summary.cloud.continue_bytes;
  }
  const double agreement = static_cast<double>(agreed) / tokens;
  std::printf("[codec %s] agreement %.4f over %lld tokens; %.1f bytes per uploaded row "
              "(context messages), %.1f bytes per cloud-decided token (Continue messages)\n",
              codec, agreement, static_cast<long long>(tokens),
              static_cast<double>(context_bytes) / std::max<int64_t>(1, context_rows),
              static_cast<double>(continue_bytes) / tokens);
  EXPECT_GE(tokens, 2000);
  EXPECT_GE(agreement, min_agreement);
}

INSTANTIATE_TEST_SUITE_P(Codecs, CodecAgreement,
                         ::testing::Values(std::make_pair("int8", 0.99),
                                           std::make_pair("int8+zstd", 0.99),
                                           std::make_pair("fp16", 0.99),
                                           std::make_pair("int4", 0.90)),
                         [](const auto& info) {
                           std::string name = info.param.first;
                           for (char& c : name) if (c == '+') c = '_';
                           return name;
                         });

double CalibratedAgreement() {
  std::ifstream in(ShippedModelDir() + "/exits.json");
  std::stringstream text;
  text << in.rdbuf();
  auto j = nlohmann::json::parse(text.str());
  return j["thresholds"]["expected_agreement"].get<double>();
}

TEST(Collaboration, EarlyExitPlusCloudKeepsTheCalibratedAgreement) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto session = EdgeSession::Create(CollaborativeOptions(server->address(), "int8", false));
  ASSERT_TRUE(session.ok()) << session.status();
  int64_t tokens = 0, agreed = 0, at_edge = 0, cloud = 0;
  for (const auto& prompt : Prompts(24, 24)) {
    const Generation run = Generate(**session, prompt, 64);
    for (bool a : AgreesWithFull(prompt, run.ids)) agreed += a;
    tokens += static_cast<int64_t>(run.ids.size());
    for (TokenSource s : run.sources) {
      at_edge += s == TokenSource::kExit;
      cloud += s == TokenSource::kCloud;
      EXPECT_NE(s, TokenSource::kFallback) << "the cloud was up: nothing should fall back";
    }
  }
  const double agreement = static_cast<double>(agreed) / tokens;
  const double promised = CalibratedAgreement();
  std::printf("[early exit + cloud] agreement %.4f (calibration promised %.4f), %.1f%% of %lld "
              "tokens decided at the edge, %lld by the cloud\n",
              agreement, promised, 100.0 * at_edge / tokens, static_cast<long long>(tokens),
              static_cast<long long>(cloud));
  EXPECT_GT(at_edge, 0);
  EXPECT_GT(cloud, 0);
  EXPECT_GE(agreement, promised);
}

TEST(Collaboration, StatsRpcAndMetricsReportTraffic) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto session = EdgeSession::Create(CollaborativeOptions(server->address(), "int8+zstd", true));
  ASSERT_TRUE(session.ok()) << session.status();
  const Generation run = Generate(**session, Prompts(1, 16)[0], 8);
  EXPECT_EQ(run.summary.cloud.cloud_tokens, 8);
  const cloud::ServerStats stats = server->stats();
  EXPECT_EQ(stats.context.tokens_served, 8);
  EXPECT_GT(stats.bytes_in, 0);
  EXPECT_GT(stats.bytes_out, 0);
  const std::string text = server->MetricsText();
  EXPECT_NE(text.find("tandem_tokens_served_total 8"), std::string::npos) << text;
}

}  // namespace
}  // namespace tandem::e2e
