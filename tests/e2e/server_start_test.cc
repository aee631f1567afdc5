// CloudServer::Start on addresses it cannot own: a clear Unavailable error and
// a clean teardown — the failed-start path used to crash (issue 14, item 9).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "loopback.h"
#include "tandem/cloud/server.h"

namespace tandem::e2e {
namespace {

using ::testing::HasSubstr;

TEST(ServerStart, AddressNotOfThisMachineIsUnavailableNotACrash) {
  for (const char* address : {"192.0.2.1:0", "::1:50051"}) {
    SCOPED_TRACE(address);
    cloud::ServerOptions options;
    options.listen_address = address;
    auto server = cloud::CloudServer::Start(options, ShippedCloudModel());
    ASSERT_FALSE(server.ok());
    EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(server.status().message()), HasSubstr("cannot listen on"));
  }
}

TEST(ServerStart, PortInUseIsRefusedNotShared) {
  std::unique_ptr<cloud::CloudServer> first = StartServer();
  ASSERT_NE(first, nullptr);
  cloud::ServerOptions options;
  options.listen_address = "127.0.0.1:" + std::to_string(first->port());
  auto second = cloud::CloudServer::Start(options, ShippedCloudModel());
  ASSERT_FALSE(second.ok()) << "a second server bound the same port";
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST(ServerStart, MaxMessageBytesMustFitGrpcsInt) {
  cloud::ServerOptions options;
  options.max_message_bytes = int64_t{1} << 32;
  auto server = cloud::CloudServer::Start(options, ShippedCloudModel());
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ServerStart, ListenAddressBracketsBareIpv6) {
  EXPECT_EQ(*cloud::ListenAddress("::1", 50051), "[::1]:50051");
  EXPECT_EQ(*cloud::ListenAddress("[::1]", 7), "[::1]:7");
  EXPECT_EQ(*cloud::ListenAddress("127.0.0.1", 0), "127.0.0.1:0");
  EXPECT_FALSE(cloud::ListenAddress("", 1).ok());
  EXPECT_FALSE(cloud::ListenAddress("[::1", 1).ok());
  EXPECT_FALSE(cloud::ListenAddress("a b", 1).ok());
  EXPECT_FALSE(cloud::ListenAddress("127.0.0.1", 65536).ok());
}

}  // namespace
}  // namespace tandem::e2e
