// TLS on the wire: a server with a certificate, an edge that trusts it.
#include <gtest/gtest.h>

#include "loopback.h"

namespace tandem::e2e {
namespace {

std::string TlsFile(const std::string& name) {
  return std::string(TANDEM_SOURCE_DIR) + "/tests/data/tls/" + name;
}

TEST(Tls, CollaborationOverTls) {
  cloud::ServerOptions options;
  options.tls_cert_file = TlsFile("server.crt");
  options.tls_key_file = TlsFile("server.key");
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  edge::EdgeOptions edge_options =
      CollaborativeOptions("localhost:" + std::to_string(server->port()), "int8", true);
  edge_options.cloud.tls_root_certs_file = TlsFile("server.crt");
  auto session = edge::EdgeSession::Create(edge_options);
  ASSERT_TRUE(session.ok()) << session.status();
  const auto prompt = Prompts(1, 16)[0];
  auto summary = (*session)->GenerateIds(prompt, Greedy(8));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->counts.cloud, 8) << summary->cloud.last_error;
}

TEST(Tls, PlaintextClientCannotTalkToATlsServer) {
  cloud::ServerOptions options;
  options.tls_cert_file = TlsFile("server.crt");
  options.tls_key_file = TlsFile("server.key");
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  edge::EdgeOptions edge_options = CollaborativeOptions(server->address(), "int8", true);
  edge_options.cloud.connect_timeout = absl::Milliseconds(300);
  auto session = edge::EdgeSession::Create(edge_options);
  ASSERT_TRUE(session.ok());
  auto summary = (*session)->GenerateIds(Prompts(1, 16)[0], Greedy(4));
  ASSERT_TRUE(summary.ok()) << summary.status();  // standalone, never an error
  EXPECT_EQ(summary->counts.cloud, 0);
  EXPECT_EQ(server->stats().context.tokens_served, 0);
}

TEST(Tls, MissingCertificateIsAClearError) {
  cloud::ServerOptions options;
  options.tls_cert_file = TlsFile("no-such.crt");
  options.tls_key_file = TlsFile("server.key");
  auto server = cloud::CloudServer::Start(options, ShippedCloudModel());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tandem::e2e
