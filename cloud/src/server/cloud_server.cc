#include "tandem/cloud/server.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>
#include <unordered_map>

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "core/memory_release.h"
#include "server/cloud_only.h"
#include "server/service_context.h"
#include "server/session_reactor.h"
#include "server/stream_registry.h"
#include "status_convert.h"
#include "tandem/fingerprint.h"
#include "tandem/wire/tandem.grpc.pb.h"

namespace tandem::cloud {
namespace {

int Millis(absl::Duration d) {
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The gRPC service: authenticates each call. Session streams run on gRPC's
// callback API (SessionReactor: no thread per stream); Stats and Generate (a
// cloud-only generation computes on its handler thread) stay synchronous.
class ContinuationService final
    : public wire::Continuation::WithCallbackMethod_Session<wire::Continuation::Service> {
 public:
  explicit ContinuationService(ServiceContext* service) : service_(service), streams_(service) {}

  SessionReactorBase* Session(grpc::CallbackServerContext* context) override {
    std::string key;
    absl::StatusOr<std::string> identity = Authenticate(*context, &key);
    if (!identity.ok()) {
      ++service_->counters.auth_failures;
      service_->CountRefusal(identity.status().code());
      service_->log.Warn("auth_failure", {{"peer", context->peer()}});
      return SessionReactor::Refuse(wire::ToGrpcStatus(identity.status()));
    }
    if (service_->draining.load()) {
      service_->CountRefusal(absl::StatusCode::kUnavailable);
      return SessionReactor::Refuse(
          wire::ToGrpcStatus(absl::UnavailableError("the server is shutting down")));
    }
    absl::Status admitted = streams_.Reserve(*identity);
    if (!admitted.ok()) {
      ++service_->counters.streams_refused;
      service_->CountRefusal(admitted.code());
      service_->log.Warn("stream_refused", {{"peer", context->peer()},
                                            {"identity", *identity},
                                            {"message", admitted.message()}});
      return SessionReactor::Refuse(wire::ToGrpcStatus(admitted));
    }
    return SessionReactor::Start(service_, &streams_, context, *std::move(identity),
                                 std::move(key));
  }

  grpc::Status Stats(grpc::ServerContext* context, const wire::StatsRequest*,
                     wire::StatsReply* reply) override {
    std::string key;
    absl::StatusOr<std::string> identity = Authenticate(*context, &key);
    if (!identity.ok()) {
      ++service_->counters.auth_failures;
      service_->CountRefusal(identity.status().code());
      return wire::ToGrpcStatus(identity.status());
    }
    reply->set_text(metrics_text_ ? metrics_text_() : "");
    return grpc::Status::OK;
  }

  grpc::Status Generate(grpc::ServerContext* context, const wire::GenerateRequest* request,
                        grpc::ServerWriter<wire::GenerateReply>* writer) override {
    std::string key;
    absl::StatusOr<std::string> identity = Authenticate(*context, &key);
    if (!identity.ok()) {
      ++service_->counters.auth_failures;
      service_->CountRefusal(identity.status().code());
      service_->log.Warn("auth_failure", {{"peer", context->peer()}});
      return wire::ToGrpcStatus(identity.status());
    }
    Register(context, key);
    grpc::Status status = ServeCloudOnly(service_, context, *identity, *request, writer);
    Unregister(context);
    return status;
  }

  void set_metrics_text(std::function<std::string()> f) { metrics_text_ = std::move(f); }

  // Queues `message` on every session stream, after its queued replies;
  // returns how many took it.
  int64_t TellAll(const wire::ServerMessage& message) {
    int64_t told = 0;
    streams_.ForEach([&](SessionReactor& stream) { told += stream.Notify(message) ? 1 : 0; });
    return told;
  }
  // Waits until every session stream has ended, or `deadline`.
  bool WaitStreamsEnded(absl::Time deadline) { return streams_.WaitEmpty(deadline); }
  int64_t live_streams() const { return streams_.size(); }

  // Cancels every active call (end of a graceful shutdown).
  void CancelAll() {
    streams_.ForEach([](SessionReactor& stream) { stream.Cancel(); });
    absl::MutexLock lock(&mu_);
    for (const auto& [context, key] : active_) context->TryCancel();
  }

  // Ends the calls opened with a key the store no longer holds.
  void CancelRevoked() {
    streams_.ForEach([this](SessionReactor& stream) {
      if (!stream.key().empty() && !service_->keys->Valid(stream.key())) {
        service_->log.Warn("stream_revoked", {{"identity", stream.identity()}});
        stream.Cancel();
      }
    });
    absl::MutexLock lock(&mu_);
    for (const auto& [context, key] : active_) {
      if (!key.empty() && !service_->keys->Valid(key)) {
        service_->log.Warn("stream_revoked", {{"peer", context->peer()}});
        context->TryCancel();
      }
    }
  }

  // After the key set may have changed: log, and end revoked keys' streams.
  void AfterReload(const absl::Status& status, const char* trigger) {
    if (!status.ok()) {
      service_->log.Warn("api_keys_reload_failed",
                         {{"trigger", trigger}, {"message", status.message()}});
      return;
    }
    service_->log.Info("api_keys_reloaded",
                       {{"trigger", trigger}, {"generation", service_->keys->generation()}});
    CancelRevoked();
  }

 private:
  // The caller's identity: its API key's when keys are configured (`*key`
  // receives the key), else its client certificate's common name under mutual
  // TLS, else "anonymous".
  absl::StatusOr<std::string> Authenticate(const grpc::ServerContextBase& context,
                                           std::string* key) {
    ApiKeyStore& keys = *service_->keys;
    if (!keys.enabled()) return PeerIdentity(context);
    auto range = context.client_metadata().equal_range("authorization");
    for (auto it = range.first; it != range.second; ++it) {
      std::string value(it->second.data(), it->second.size());
      if (!absl::StartsWith(value, "Bearer ")) continue;
      ApiKeyStore::ReloadResult reload;
      absl::StatusOr<std::string> identity = keys.Identify(value.substr(7), &reload);
      if (reload.attempted) AfterReload(reload.status, "file_changed");
      if (identity.ok()) {
        *key = value.substr(7);
        return identity;
      }
    }
    return absl::UnauthenticatedError("a valid API key is required (authorization: Bearer <key>)");
  }
  std::string PeerIdentity(const grpc::ServerContextBase& context) const {
    if (!service_->options.tls_client_ca_file.empty()) {
      std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
      if (auth != nullptr) {
        for (const grpc::string_ref& cn : auth->FindPropertyValues("x509_common_name")) {
          return absl::StrCat("x509:", std::string(cn.data(), cn.size()));
        }
      }
    }
    return "anonymous";
  }
  void Register(grpc::ServerContext* context, const std::string& key) {
    absl::MutexLock lock(&mu_);
    active_[context] = key;
  }
  void Unregister(grpc::ServerContext* context) {
    absl::MutexLock lock(&mu_);
    active_.erase(context);
  }

  ServiceContext* service_;
  StreamRegistry streams_;
  std::function<std::string()> metrics_text_;
  absl::Mutex mu_;
  // Active Generate calls and the API key each was opened with ("" = none).
  std::unordered_map<grpc::ServerContext*, std::string> active_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

struct CloudServer::Impl {
  std::unique_ptr<ServiceContext> service;
  std::unique_ptr<ContinuationService> grpc_service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::string host;
  absl::Mutex mu;
  bool shut_down ABSL_GUARDED_BY(mu) = false;
  absl::Notification stopped;
  // Periodic stats log.
  absl::Notification stop_stats;
  std::thread stats_thread;
};

absl::StatusOr<std::string> ListenAddress(const std::string& host, int port) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port ", port, " is not in [0, 65535]"));
  }
  if (host.empty()) return absl::InvalidArgumentError("the listen host is empty");
  for (char c : host) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) || c == '/') {
      return absl::InvalidArgumentError(absl::StrCat("listen host '", host, "' is not a host"));
    }
  }
  const bool bracketed = host.front() == '[';
  if (bracketed != (host.back() == ']') || (bracketed && host.size() < 3)) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen host '", host, "' has unbalanced brackets (use [::1] or ::1)"));
  }
  if (!bracketed && host.find(':') != std::string::npos) {
    return absl::StrCat("[", host, "]:", port);  // a bare IPv6 literal
  }
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<std::map<std::string, std::string>> ReadApiKeyFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  std::map<std::string, std::string> keys;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (parts.size() != 2 || parts[1].size() < 16) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", line_number, ": expected `identity key` with a key of 16+ characters"));
    }
    if (!keys.emplace(parts[1], parts[0]).second) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_number, ": duplicate key"));
    }
  }
  if (keys.empty()) return absl::InvalidArgumentError(absl::StrCat(path, " holds no keys"));
  return keys;
}

absl::StatusOr<std::unique_ptr<CloudServer>> CloudServer::Start(const ServerOptions& options) {
  absl::StatusOr<std::unique_ptr<CloudModel>> model = CloudModel::Create(options.model);
  if (!model.ok()) return model.status();
  return Start(options, std::shared_ptr<const CloudModel>(std::move(*model)));
}

absl::StatusOr<std::unique_ptr<CloudServer>> CloudServer::Start(
    const ServerOptions& options, std::shared_ptr<const CloudModel> model) {
  if (model == nullptr) return absl::InvalidArgumentError("CloudServer needs a model");
  if (options.max_message_bytes < 1024 ||
      options.max_message_bytes > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("max_message_bytes ", options.max_message_bytes,
                                                   " must be in [1024, 2147483647]"));
  }
  if (options.max_streams < 1 || options.max_streams_per_identity < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_streams (", options.max_streams, ") must be >= 1 and max_streams_per_identity (",
        options.max_streams_per_identity, ") >= 0"));
  }
  if (options.stream_idle_timeout < absl::ZeroDuration() ||
      options.stream_open_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("stream timeouts must be >= 0 (0 = none)");
  }
  if (options.keepalive_time < absl::Seconds(1) || options.keepalive_timeout < absl::Seconds(1)) {
    return absl::InvalidArgumentError("keepalive_time and keepalive_timeout must be >= 1 s");
  }
  if (options.max_rows_per_message < 1) {
    return absl::InvalidArgumentError("max_rows_per_message must be >= 1");
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate and a key file");
  }
  if (!options.tls_client_ca_file.empty() && options.tls_cert_file.empty()) {
    return absl::InvalidArgumentError(
        "mutual TLS (a client CA file) needs the server's own certificate and key");
  }
  absl::StatusOr<std::unique_ptr<ApiKeyStore>> keys =
      ApiKeyStore::Create(options.api_keys, options.api_keys_file);
  if (!keys.ok()) return keys.status();
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!options.tls_cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadFile(options.tls_cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadFile(options.tls_key_file);
    if (!key.ok()) return key.status();
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    if (!options.tls_client_ca_file.empty()) {
      absl::StatusOr<std::string> client_ca = ReadFile(options.tls_client_ca_file);
      if (!client_ca.ok()) return client_ca.status();
      ssl.pem_root_certs = *client_ca;
      ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    credentials = grpc::SslServerCredentials(ssl);
  }

  auto server = std::unique_ptr<CloudServer>(new CloudServer());
  server->impl_ = std::make_unique<Impl>();
  Impl& impl = *server->impl_;
  impl.service = std::make_unique<ServiceContext>(options.log);
  impl.service->model = model;
  impl.service->options = options;
  impl.service->keys = std::move(*keys);
  impl.service->contexts = std::make_unique<ContextManager>(model, options.limits);
  impl.grpc_service = std::make_unique<ContinuationService>(impl.service.get());
  CloudServer* self = server.get();
  impl.service->metrics = std::make_unique<ServerMetrics>([self] { return self->stats(); });
  impl.grpc_service->set_metrics_text([self] { return self->MetricsText(); });
  if (!options.metrics_address.empty()) {
    absl::Status serving = impl.service->metrics->Serve(options.metrics_address);
    if (!serving.ok()) {
      server->impl_.reset();
      return serving;
    }
  }

  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, credentials, &impl.port);
  builder.RegisterService(impl.grpc_service.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  // Keep idle connections honest: ping after keepalive_time without activity,
  // drop a peer that does not answer within keepalive_timeout (a vanished
  // client's streams then end and free their slots).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, Millis(options.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Millis(options.keepalive_timeout));
  // Accept clients' keepalive pings (every 10 s at most, with or without calls)
  // instead of answering them with GOAWAY "too_many_pings".
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  // Own the port: without this, gRPC sets SO_REUSEPORT and a second server on
  // a port already in use starts "successfully" and shares its connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  impl.server = builder.BuildAndStart();
  if (impl.server == nullptr || impl.port == 0) {
    // Nothing was served: tear down what was built here, so the destructor
    // has nothing to shut down (it used to call Shutdown on a null server).
    if (impl.server != nullptr) {
      impl.server->Shutdown(std::chrono::system_clock::now());
      impl.server->Wait();
    }
    server->impl_.reset();
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", options.listen_address,
        ": the address could not be bound (not an address of this machine, a host that does "
        "not resolve, or a port already in use)"));
  }
  const size_t colon = options.listen_address.rfind(':');
  impl.host = options.listen_address.substr(0, colon);
  if (impl.host.empty() || impl.host == "0.0.0.0" || impl.host == "[::]") impl.host = "127.0.0.1";
  impl.service->log.Info("server_start",
                         {{"address", server->address()},
                          {"split", model->split()},
                          {"layers", model->num_layers()},
                          {"fingerprint", FingerprintHex(model->fingerprint())},
                          {"token_resync", model->can_embed()},
                          {"tls", !options.tls_cert_file.empty()},
                          {"auth", impl.service->keys->enabled()},
                          {"mutual_tls", !options.tls_client_ca_file.empty()},
                          {"metrics_port", impl.service->metrics->port()},
                          {"memory_budget_bytes", options.limits.memory_budget_bytes}});
  if (options.stats_interval > absl::ZeroDuration()) {
    impl.stats_thread = std::thread([self, &impl, interval = options.stats_interval] {
      while (!impl.stop_stats.WaitForNotificationWithTimeout(interval)) {
        const ServerStats s = self->stats();
        impl.service->log.Info("stats", {{"sessions", s.context.sessions},
                                         {"streams_active", s.streams_active},
                                         {"tokens_served", s.context.tokens_served},
                                         {"bytes_in", s.bytes_in},
                                         {"bytes_out", s.bytes_out},
                                         {"queued_rows", s.context.queued_rows},
                                         {"memory_bytes", s.context.memory_bytes},
                                         {"resident_bytes", s.resident_bytes},
                                         {"evicted", s.context.evicted},
                                         {"expired", s.context.expired}});
      }
    });
  }
  return server;
}

CloudServer::~CloudServer() {
  if (impl_ != nullptr) Shutdown(absl::ZeroDuration());
}

int CloudServer::port() const { return impl_->port; }

std::string CloudServer::address() const { return absl::StrCat(impl_->host, ":", impl_->port); }

void CloudServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->shut_down) return;
    impl_->shut_down = true;
  }
  Impl& impl = *impl_;
  const absl::Time deadline = absl::Now() + grace;
  impl.service->draining.store(true);
  impl.service->log.Info("server_draining", {{"grace_seconds", absl::ToDoubleSeconds(grace)}});
  // Answer what was accepted (new Continues are refused while draining), tell
  // every edge to go elsewhere, give the streams the rest of the grace period
  // to end by themselves, then end the rest and stop.
  const bool answered = impl.service->contexts->Drain(deadline);
  wire::ServerMessage going_away;
  going_away.mutable_going_away()->set_reason("the server is shutting down");
  going_away.mutable_going_away()->set_grace_ms(static_cast<uint32_t>(
      std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()))));
  const int64_t told = impl.grpc_service->TellAll(going_away);
  impl.service->counters.going_away_sent += told;
  const bool streams_ended = impl.grpc_service->WaitStreamsEnded(deadline);
  // Cloud-only generations are not told (they end by themselves); a drain
  // that must cut one is not clean either.
  const bool drained =
      answered && streams_ended && impl.service->counters.cloud_only_active.load() == 0;
  const int64_t cut = impl.grpc_service->live_streams();
  impl.grpc_service->CancelAll();
  if (impl.server != nullptr) {
    impl.server->Shutdown(std::chrono::system_clock::now());
    impl.server->Wait();
  }
  impl.stop_stats.Notify();
  if (impl.stats_thread.joinable()) impl.stats_thread.join();
  impl.service->log.Info("server_stopped", {{"drained", drained},
                                            {"continues_answered", answered},
                                            {"streams_told", told},
                                            {"streams_cut", cut}});
  impl.stopped.Notify();
}

absl::Status CloudServer::ReloadApiKeys() {
  absl::Status status = impl_->service->keys->Reload();
  impl_->grpc_service->AfterReload(status, "reload");
  return status;
}

void CloudServer::Wait() { impl_->stopped.WaitForNotification(); }

ServerStats CloudServer::stats() const {
  const ServerCounters& c = impl_->service->counters;
  ServerStats s;
  s.streams_opened = c.streams_opened.load();
  s.streams_active = c.streams_active.load();
  s.messages_in = c.messages_in.load();
  s.bytes_in = c.bytes_in.load();
  s.bytes_out = c.bytes_out.load();
  s.context_messages = c.context_messages.load();
  s.continue_requests = c.continue_requests.load();
  s.tokens_sent = c.tokens_sent.load();
  s.resyncs_sent = c.resyncs_sent.load();
  s.errors_sent = c.errors_sent.load();
  s.auth_failures = c.auth_failures.load();
  s.streams_refused = c.streams_refused.load();
  s.streams_idle_ended = c.streams_idle_ended.load();
  s.cloud_only_requests = c.cloud_only_requests.load();
  s.cloud_only_tokens = c.cloud_only_tokens.load();
  s.cloud_only_active = c.cloud_only_active.load();
  s.going_away_sent = c.going_away_sent.load();
  s.drain_refusals = c.drain_refusals.load();
  s.resident_bytes = ResidentBytes();
  s.context = impl_->service->contexts->stats();
  return s;
}

std::string CloudServer::MetricsText() const { return impl_->service->metrics->Text(); }

int CloudServer::metrics_port() const { return impl_->service->metrics->port(); }

ContextManager& CloudServer::contexts() { return *impl_->service->contexts; }

}  // namespace tandem::cloud
