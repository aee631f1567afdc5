// API keys re-read without a restart (issue 14, "Keys"): a key removed from
// the file is refused on its next call, a stream already open under it is
// ended, and a broken file on reload keeps the keys in force.
#include <filesystem>
#include <fstream>
#include <string>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "loopback.h"
#include "tandem/wire/tandem.grpc.pb.h"
#include "testing/tiny_model.h"
#include "wire_convert.h"

namespace tandem::e2e {
namespace {

namespace fs = std::filesystem;

constexpr char kAliceKey[] = "alice-key-0123456789abcdef";
constexpr char kBobKey[] = "bob-key-0123456789abcdefgh";

void WriteKeys(const fs::path& path, const std::string& lines) {
  const fs::path tmp = path.string() + ".tmp";
  std::ofstream(tmp) << lines;
  fs::rename(tmp, path);  // atomic replace, as an operator's tooling would do
}

// Cloud tokens in a short greedy generation with `key` (0 = refused: the edge
// falls back to standalone).
int64_t CloudTokens(const cloud::CloudServer& server, const std::string& key) {
  edge::EdgeOptions options = CollaborativeOptions(server.address(), "int8", true);
  options.cloud.api_key = key;
  auto session = edge::EdgeSession::Create(options);
  EXPECT_TRUE(session.ok()) << session.status();
  if (!session.ok()) return -1;
  auto summary = (*session)->GenerateIds(Prompts(1, 12)[0], Greedy(4));
  EXPECT_TRUE(summary.ok()) << summary.status();
  return summary.ok() ? summary->counts.cloud : -1;
}

class ApiKeyFile : public ::testing::Test {
 protected:
  void SetUp() override {
    keys_ = dir_.path() / "keys.txt";
    WriteKeys(keys_, std::string("alice ") + kAliceKey + "\nbob " + kBobKey + "\n");
    cloud::ServerOptions options;
    options.api_keys_file = keys_.string();
    server_ = StartServer(options);
    ASSERT_NE(server_, nullptr);
  }
  tandem::testing::TempDir dir_;
  fs::path keys_;
  std::unique_ptr<cloud::CloudServer> server_;
};

TEST_F(ApiKeyFile, RevokedKeyIsRefusedOnItsNextCallWithoutARestart) {
  EXPECT_EQ(CloudTokens(*server_, kBobKey), 4);
  WriteKeys(keys_, std::string("alice ") + kAliceKey + "\n");  // bob revoked
  const int64_t failures = server_->stats().auth_failures;
  EXPECT_EQ(CloudTokens(*server_, kBobKey), 0);
  EXPECT_GT(server_->stats().auth_failures, failures);
  EXPECT_EQ(CloudTokens(*server_, kAliceKey), 4);
  // A key added to the file works at once too.
  WriteKeys(keys_, std::string("carol carol-key-0123456789abcd\n"));
  EXPECT_EQ(CloudTokens(*server_, "carol-key-0123456789abcd"), 4);
  EXPECT_EQ(CloudTokens(*server_, kAliceKey), 0);
}

TEST_F(ApiKeyFile, StreamOpenUnderARevokedKeyIsEnded) {
  auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
  auto stub = wire::Continuation::NewStub(channel);
  grpc::ClientContext context;
  context.AddMetadata("authorization", std::string("Bearer ") + kBobKey);
  auto stream = stub->Session(&context);
  wire::ClientMessage open;
  open.mutable_open()->set_protocol_version(wire::kProtocolVersion);
  open.mutable_open()->set_model_fingerprint(ShippedCloudModel()->fingerprint());
  open.mutable_open()->set_split(4);
  open.mutable_open()->mutable_codec()->set_format(wire::HIDDEN_FORMAT_FP32);
  open.mutable_open()->set_session_id("bob-session-0123456789");
  ASSERT_TRUE(stream->Write(open));
  wire::ServerMessage reply;
  ASSERT_TRUE(stream->Read(&reply));
  ASSERT_TRUE(reply.has_ack()) << reply.DebugString();

  WriteKeys(keys_, std::string("alice ") + kAliceKey + "\n");
  ASSERT_TRUE(server_->ReloadApiKeys().ok());
  while (stream->Read(&reply)) {
  }
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
}

TEST_F(ApiKeyFile, BrokenFileOnReloadKeepsTheKeysInForce) {
  WriteKeys(keys_, "this line is not `identity key`\n");
  EXPECT_FALSE(server_->ReloadApiKeys().ok());
  EXPECT_EQ(CloudTokens(*server_, kBobKey), 4) << "a typo locked every client out";
}

TEST(ApiKeys, MissingKeyFileIsAnErrorAtStart) {
  cloud::ServerOptions options;
  options.api_keys_file = "/nonexistent/keys.txt";
  auto server = cloud::CloudServer::Start(options, ShippedCloudModel());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tandem::e2e
