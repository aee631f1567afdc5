// Built twice (tests/packaging/CMakeLists.txt): linked with tandem_edge alone
// (TANDEM_EXPECT_GRPC_TRANSPORT 0) and with tandem_edge_grpc (1). Neither
// build calls anything of tandem_edge_grpc: the second shows that linking it
// is enough to make gRPC the default transport, the first that an app without
// it gets a clear error for a cloud address, and a working standalone session.
#include <filesystem>
#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tandem/edge/cloud_link.h"
#include "tandem/edge/edge_session.h"
#include "tandem/exit_heads.h"
#include "tandem/tokenizer.h"
#include "testing/tiny_model.h"

#ifndef TANDEM_EXPECT_GRPC_TRANSPORT
#error "define TANDEM_EXPECT_GRPC_TRANSPORT to 0 or 1"
#endif

namespace tandem::edge {
namespace {

using ::testing::HasSubstr;
constexpr bool kGrpcLinked = TANDEM_EXPECT_GRPC_TRANSPORT != 0;
constexpr char kTokenizer[] = TANDEM_TEST_DATA_DIR "/tokenizer/tiny_bytelevel/tokenizer.json";
// Nothing listens there; neither Create connects.
constexpr char kAddress[] = "127.0.0.1:1";

// A 4-layer random checkpoint with exit heads at 1 and 2 and a tokenizer.
void WriteCheckpoint(const std::filesystem::path& dir) {
  auto tokenizer = Tokenizer::Load(kTokenizer);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  ModelConfig config = testing::TinyGqaConfig();
  config.vocab_size = (*tokenizer)->vocab_size();
  config.eos_token_ids = {};
  std::unique_ptr<Model> model = testing::WriteRandomModel(config, dir, 3);
  std::filesystem::copy_file(kTokenizer, dir / "tokenizer.json");
  auto heads = ExitHeads::Create(*model, {1, 2}, 0, 1);
  ASSERT_TRUE(heads.ok()) << heads.status();
  ASSERT_TRUE((*heads)->Save(dir.string()).ok());
}

EdgeOptions Options(const testing::TempDir& dir) {
  EdgeOptions o;
  o.model_dir = dir.path().string();
  o.split = 2;
  o.thresholds = {{1, 0.5}, {2, 0.5}};
  return o;
}

TEST(TransportChoice, CloudLinkWithAnAddressAndNoTransportOption) {
  CloudOptions options;
  options.address = kAddress;
  auto link = CloudLink::Create(options, 42, 2, {1, 2}, 8);
  if (kGrpcLinked) {
    EXPECT_TRUE(link.ok()) << link.status();
  } else {
    ASSERT_FALSE(link.ok());
    EXPECT_EQ(link.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(link.status().message(), HasSubstr("Tandem::edge_grpc"));
    EXPECT_THAT(link.status().message(), HasSubstr(kAddress));
  }
}

TEST(TransportChoice, CollaborativeEdgeSession) {
  testing::TempDir dir;
  ASSERT_NO_FATAL_FAILURE(WriteCheckpoint(dir.path()));
  EdgeOptions options = Options(dir);
  options.cloud.address = kAddress;
  auto session = EdgeSession::Create(options);
  if (kGrpcLinked) {
    ASSERT_TRUE(session.ok()) << session.status();
    EXPECT_NE((*session)->cloud_link(), nullptr);
  } else {
    ASSERT_FALSE(session.ok());
    EXPECT_EQ(session.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(session.status().message(), HasSubstr("Tandem::edge_grpc"));
  }
}

TEST(TransportChoice, StandaloneSessionGeneratesEitherWay) {
  testing::TempDir dir;
  ASSERT_NO_FATAL_FAILURE(WriteCheckpoint(dir.path()));
  auto session = EdgeSession::Create(Options(dir));
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ((*session)->cloud_link(), nullptr);
  GenerateOptions request;
  request.max_new_tokens = 5;
  request.stop_at_eos = false;
  auto summary = (*session)->Generate("hello", request);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->generated_tokens, 5);
  EXPECT_EQ(summary->counts.cloud, 0);
}

}  // namespace
}  // namespace tandem::edge
