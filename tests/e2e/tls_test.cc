// TLS on the wire: a server with a certificate, an edge that trusts it; mutual
// TLS (the server requires client certificates from its CA). The certificates
// are made at test time (tls_material.h).
#include <gtest/gtest.h>

#include "loopback.h"
#include "tls_material.h"

namespace tandem::e2e {
namespace {

const TlsMaterial& Tls() {
  const TlsMaterial& m = TestTlsMaterial();
  EXPECT_TRUE(m.error.empty()) << m.error;
  return m;
}

cloud::ServerOptions TlsServer(bool mutual) {
  cloud::ServerOptions options;
  options.tls_cert_file = Tls().server_cert;
  options.tls_key_file = Tls().server_key;
  if (mutual) options.tls_client_ca_file = Tls().ca_cert;
  return options;
}

edge::EdgeOptions TlsEdge(const cloud::CloudServer& server) {
  edge::EdgeOptions options =
      CollaborativeOptions("localhost:" + std::to_string(server.port()), "int8", true);
  options.cloud.tls_root_certs_file = Tls().ca_cert;
  options.cloud.connect_timeout = absl::Seconds(5);
  return options;
}

// Tokens the cloud decided in a short greedy generation.
int64_t CloudTokens(const edge::EdgeOptions& options, std::string* last_error = nullptr) {
  auto session = edge::EdgeSession::Create(options);
  EXPECT_TRUE(session.ok()) << session.status();
  if (!session.ok()) return -1;
  auto summary = (*session)->GenerateIds(Prompts(1, 16)[0], Greedy(6));
  EXPECT_TRUE(summary.ok()) << summary.status();  // standalone fallback, never an error
  if (!summary.ok()) return -1;
  if (last_error != nullptr) *last_error = summary->cloud.last_error;
  return summary->counts.cloud;
}

TEST(Tls, CollaborationOverTls) {
  auto server = StartServer(TlsServer(false));
  ASSERT_NE(server, nullptr);
  std::string error;
  EXPECT_EQ(CloudTokens(TlsEdge(*server), &error), 6) << error;
}

TEST(Tls, PlaintextClientCannotTalkToATlsServer) {
  auto server = StartServer(TlsServer(false));
  ASSERT_NE(server, nullptr);
  edge::EdgeOptions edge_options = CollaborativeOptions(server->address(), "int8", true);
  edge_options.cloud.connect_timeout = absl::Milliseconds(300);
  EXPECT_EQ(CloudTokens(edge_options), 0);
  EXPECT_EQ(server->stats().context.tokens_served, 0);
}

TEST(Tls, MissingCertificateIsAClearError) {
  cloud::ServerOptions options = TlsServer(false);
  options.tls_cert_file = Tls().server_cert + ".missing";
  auto server = cloud::CloudServer::Start(options, ShippedCloudModel());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kNotFound);
}

TEST(MutualTls, ClientWithACertificateFromTheCaIsServed) {
  auto server = StartServer(TlsServer(true));
  ASSERT_NE(server, nullptr);
  edge::EdgeOptions options = TlsEdge(*server);
  options.cloud.tls_client_cert_file = Tls().client_cert;
  options.cloud.tls_client_key_file = Tls().client_key;
  std::string error;
  EXPECT_EQ(CloudTokens(options, &error), 6) << error;
}

TEST(MutualTls, ClientWithoutACertificateOrWithAnotherCasIsRefused) {
  auto server = StartServer(TlsServer(true));
  ASSERT_NE(server, nullptr);
  edge::EdgeOptions none = TlsEdge(*server);
  none.cloud.connect_timeout = absl::Milliseconds(500);
  EXPECT_EQ(CloudTokens(none), 0);
  edge::EdgeOptions rogue = none;
  rogue.cloud.tls_client_cert_file = Tls().rogue_client_cert;
  rogue.cloud.tls_client_key_file = Tls().rogue_client_key;
  EXPECT_EQ(CloudTokens(rogue), 0);
  EXPECT_EQ(server->stats().context.tokens_served, 0);
  EXPECT_EQ(server->stats().streams_opened, 0);
}

TEST(MutualTls, NeedsTheServersOwnCertificate) {
  cloud::ServerOptions options;
  options.tls_client_ca_file = Tls().ca_cert;
  auto server = cloud::CloudServer::Start(options, ShippedCloudModel());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tandem::e2e
