// /metrics over HTTP (prometheus-cpp): off by default; when on, a scrape shows
// counters, gauges, latency histograms and refusals by reason.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "loopback.h"

namespace tandem::e2e {
namespace {

using ::testing::HasSubstr;

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// GET http://127.0.0.1:port/<path> with a plain socket: the whole response.
std::string Scrape(int port, const std::string& path = "/metrics") {
  const int fd = Connect(port);
  if (fd < 0) return "";
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return "";
  }
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof buffer)) > 0) response.append(buffer, n);
  close(fd);
  return response;
}

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

TEST(Metrics, OffByDefault) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->metrics_port(), 0);
  EXPECT_THAT(server->MetricsText(), HasSubstr("tandem_tokens_served_total 0"));
}

TEST(Metrics, ScrapeShowsCountersHistogramsAndRefusals) {
  cloud::ServerOptions options;
  options.metrics_address = "127.0.0.1:0";
  options.api_keys = {{"alice-key-0123456789abcdef", "alice"}};
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->metrics_port(), 0);
  EXPECT_EQ(CloudTokens(*server, "alice-key-0123456789abcdef"), 4);
  EXPECT_EQ(CloudTokens(*server, "wrong-key-0123456789abcdef"), 0);

  const std::string response = Scrape(server->metrics_port());
  EXPECT_THAT(response, HasSubstr("200 OK"));
  EXPECT_THAT(response, HasSubstr("text/plain"));
  EXPECT_THAT(response, HasSubstr("# TYPE tandem_tokens_served_total counter"));
  EXPECT_THAT(response, HasSubstr("tandem_tokens_served_total 4"));
  EXPECT_THAT(response, HasSubstr("# TYPE tandem_sessions gauge"));
  EXPECT_THAT(response, HasSubstr("# TYPE tandem_token_compute_seconds histogram"));
  EXPECT_THAT(response, HasSubstr("tandem_token_compute_seconds_count 4"));
  EXPECT_THAT(response, HasSubstr("tandem_queue_wait_seconds_count 4"));
  EXPECT_THAT(response, HasSubstr("tandem_continue_latency_seconds_bucket{le=\"+Inf\"} 4"));
  EXPECT_THAT(response, HasSubstr("tandem_refusals_total{reason=\"unauthenticated\"}"));
  EXPECT_THAT(response, HasSubstr("tandem_sessions_evicted_total 0"));
  // The Stats RPC serves the same families.
  EXPECT_THAT(server->MetricsText(), HasSubstr("tandem_token_compute_seconds_count 4"));
}

// A client that connects and says nothing is dropped after its 2 s, so the
// endpoint keeps answering; anything but GET /metrics gets a 404.
TEST(Metrics, SilentClientDoesNotHoldTheEndpoint) {
  cloud::ServerOptions options;
  options.metrics_address = "127.0.0.1:0";
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  const int silent = Connect(server->metrics_port());
  ASSERT_GE(silent, 0);
  EXPECT_THAT(Scrape(server->metrics_port()), HasSubstr("tandem_sessions 0"));
  EXPECT_THAT(Scrape(server->metrics_port(), "/"), HasSubstr("404"));
  close(silent);
}

TEST(Metrics, AddressInUseIsAnError) {
  cloud::ServerOptions options;
  options.metrics_address = "127.0.0.1:0";
  auto first = StartServer(options);
  ASSERT_NE(first, nullptr);
  options.metrics_address = "127.0.0.1:" + std::to_string(first->metrics_port());
  options.listen_address = "127.0.0.1:0";
  auto second = cloud::CloudServer::Start(options, ShippedCloudModel());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace tandem::e2e
