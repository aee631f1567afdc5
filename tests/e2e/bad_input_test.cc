// Hostile and broken clients: each gets an error, and a well-behaved session
// served alongside is unaffected.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <random>
#include <thread>

#include <ATen/ATen.h>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "loopback.h"
#include "raw_client.h"
#include "raw_messages.h"
#include "tandem/wire/tandem.grpc.pb.h"
#include "wire_convert.h"

namespace tandem::e2e {
namespace {

wire::ClientMessage ContextRows(uint32_t first, int rows, uint32_t epoch = 0) {
  wire::ClientMessage m;
  wire::Context* c = m.mutable_context();
  c->set_epoch(epoch);
  c->set_first_position(first);
  at::Tensor x = at::randn({rows, 256});
  CodecSpec spec;
  spec.format = HiddenFormat::kFp32;
  EXPECT_TRUE(wire::EncodeRows(x, spec, c->mutable_hidden()).ok());
  return m;
}

// Runs a normal collaborative generation and checks it against the reference.
void ExpectHealthySession(const std::string& address, const std::string& api_key) {
  edge::EdgeOptions options = CollaborativeOptions(address, "fp32", true);
  options.cloud.api_key = api_key;
  auto session = edge::EdgeSession::Create(options);
  ASSERT_TRUE(session.ok()) << session.status();
  const auto prompt = Prompts(1, 16)[0];
  auto summary = (*session)->GenerateIds(prompt, Greedy(12));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->counts.cloud, 12);
  EXPECT_EQ(summary->ids, FullGreedy(prompt, 12));
}

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    cloud::ServerOptions options;
    options.max_message_bytes = 64 * 1024;
    options.api_keys = {{"alice-key-0123456789", "alice"}, {"bob-key-0123456789ab", "bob"}};
    server_ = StartServer(options);
    ASSERT_NE(server_, nullptr);
  }
  std::unique_ptr<cloud::CloudServer> server_;
  const std::string alice_ = "alice-key-0123456789";
  const std::string bob_ = "bob-key-0123456789ab";
};

TEST_F(BadInput, MissingOrWrongApiKeyIsUnauthenticated) {
  RawClient none(server_->address());
  none.Send(ShippedFp32Open("session-aaaaaaaaaaaaaaaa"));
  EXPECT_EQ(none.Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  RawClient wrong(server_->address(), "not-a-key-0000000000");
  wrong.Send(ShippedFp32Open("session-aaaaaaaaaaaaaaaa"));
  EXPECT_EQ(wrong.Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_GE(server_->stats().auth_failures, 2);
}

TEST_F(BadInput, FirstMessageMustBeOpen) {
  RawClient c(server_->address(), alice_);
  c.Send(ContextRows(0, 2));
  wire::Error error;
  EXPECT_EQ(c.Finish(&error).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(error.fatal());
}

TEST_F(BadInput, WrongFingerprintOrVersionIsRefused) {
  RawClient c(server_->address(), alice_);
  wire::ClientMessage open = ShippedFp32Open("session-bbbbbbbbbbbbbbbb");
  open.mutable_open()->set_model_fingerprint(12345);
  c.Send(open);
  wire::Error error;
  EXPECT_EQ(c.Finish(&error).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(error.message().find("fingerprint"), std::string::npos) << error.message();

  RawClient v(server_->address(), alice_);
  open = ShippedFp32Open("session-bbbbbbbbbbbbbbbb");
  open.mutable_open()->set_protocol_version(static_cast<wire::ProtocolVersion>(99));
  v.Send(open);
  EXPECT_EQ(v.Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(BadInput, OutOfOrderAndDuplicatePositionsAreRefused) {
  {
    RawClient c(server_->address(), alice_);
    c.Send(ShippedFp32Open("session-cccccccccccccccc"));
    c.Send(ContextRows(5, 2));  // expected position 0
    EXPECT_EQ(c.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    RawClient c(server_->address(), alice_);
    c.Send(ShippedFp32Open("session-dddddddddddddddd"));
    c.Send(ContextRows(0, 3));
    c.Send(ContextRows(1, 2));  // positions 1, 2 again
    EXPECT_EQ(c.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
}

TEST_F(BadInput, MalformedHiddenStatesAreRefused) {
  const std::vector<std::function<void(wire::EncodedHidden*)>> corruptions = {
      [](wire::EncodedHidden* h) { h->set_data("garbage bytes that are no codec buffer"); },
      [](wire::EncodedHidden* h) { h->set_data(h->data().substr(0, h->data().size() / 2)); },
      [](wire::EncodedHidden* h) { h->set_rows(h->rows() + 1); },
      [](wire::EncodedHidden* h) { h->set_dim(128); },
      [](wire::EncodedHidden* h) { h->mutable_codec()->set_format(static_cast<wire::HiddenFormat>(42)); },
  };
  for (size_t i = 0; i < corruptions.size(); ++i) {
    RawClient c(server_->address(), alice_);
    c.Send(ShippedFp32Open("session-eeeeeeeeeeeeeee" + std::to_string(i)));
    wire::ClientMessage m = ContextRows(0, 2);
    corruptions[i](m.mutable_context()->mutable_hidden());
    c.Send(m);
    EXPECT_EQ(c.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "corruption " << i;
  }
  // NaN hidden states.
  RawClient c(server_->address(), alice_);
  c.Send(ShippedFp32Open("session-ffffffffffffffff"));
  wire::ClientMessage m;
  m.mutable_context()->set_first_position(0);
  at::Tensor x = at::full({1, 256}, std::numeric_limits<float>::quiet_NaN());
  CodecSpec spec;
  spec.format = HiddenFormat::kFp32;
  ASSERT_TRUE(wire::EncodeRows(x, spec, m.mutable_context()->mutable_hidden()).ok());
  c.Send(m);
  EXPECT_EQ(c.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(BadInput, OversizedMessagesAreRefused) {
  RawClient c(server_->address(), alice_);
  c.Send(ShippedFp32Open("session-gggggggggggggggg"));
  c.Send(ContextRows(0, 128));  // 128 KB of fp32 rows > the 64 KB limit
  EXPECT_EQ(c.Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(BadInput, AnotherIdentitysSessionIsOffLimits) {
  RawClient owner(server_->address(), alice_);
  owner.Send(ShippedFp32Open("session-hhhhhhhhhhhhhhhh"));
  wire::ServerMessage reply;
  ASSERT_TRUE(owner.Read(&reply));
  ASSERT_TRUE(reply.has_ack());
  RawClient thief(server_->address(), bob_);
  thief.Send(ShippedFp32Open("session-hhhhhhhhhhhhhhhh"));
  EXPECT_EQ(thief.Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // The owner's session still works.
  owner.Send(ContextRows(0, 2));
  ASSERT_TRUE(owner.Read(&reply));
  EXPECT_TRUE(reply.has_ack());
  EXPECT_EQ(reply.ack().next_position(), 2u);
}

TEST_F(BadInput, BadSessionIdIsRefused) {
  RawClient c(server_->address(), alice_);
  c.Send(ShippedFp32Open("short"));
  EXPECT_EQ(c.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(BadInput, GarbageBytesOnTheSocketDoNotDisturbOthers) {
  std::mt19937 rng(7);
  for (int attempt = 0; attempt < 4; ++attempt) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server_->port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    std::string garbage(4096, '\0');
    for (char& ch : garbage) ch = static_cast<char>(rng());
    if (attempt == 0) garbage.replace(0, 24, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");  // valid preface, junk after
    EXPECT_GT(write(fd, garbage.data(), garbage.size()), 0);
    close(fd);
  }
  ExpectHealthySession(server_->address(), alice_);
}

TEST_F(BadInput, HealthySessionIsUnaffectedByHostileClientsAtTheSameTime) {
  std::thread healthy([&] { ExpectHealthySession(server_->address(), alice_); });
  for (int i = 0; i < 6; ++i) {
    RawClient c(server_->address(), bob_);
    c.Send(ShippedFp32Open("session-iiiiiiiiiiiiiii" + std::to_string(i)));
    c.Send(ContextRows(7, 1));  // out of order
    EXPECT_EQ(c.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    RawClient g(server_->address(), bob_);
    g.Send(ContextRows(0, 1));  // no Open
    EXPECT_EQ(g.Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }
  healthy.join();
  // And once more after all of it.
  ExpectHealthySession(server_->address(), alice_);
}

}  // namespace
}  // namespace tandem::e2e
