#include "link/grpc_transport.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "link/transport_registry.h"
#include "tandem/edge/grpc_transport.h"
#include "tandem/wire/tandem.grpc.pb.h"

namespace tandem::edge::link {
namespace {

using ClientStream = grpc::ClientReaderWriter<wire::ClientMessage, wire::ServerMessage>;

class GrpcStream : public TransportStream {
 public:
  GrpcStream() = default;
  ~GrpcStream() override {
    context_.TryCancel();
    if (stream_ != nullptr) stream_->Finish();
  }
  bool Write(const wire::ClientMessage& message) override { return stream_->Write(message); }
  bool Read(wire::ServerMessage* message) override { return stream_->Read(message); }
  void WritesDone() override { stream_->WritesDone(); }
  void Cancel() override { context_.TryCancel(); }

  grpc::ClientContext context_;
  std::unique_ptr<ClientStream> stream_;
};

class GrpcTransport : public Transport {
 public:
  GrpcTransport(const CloudOptions& options, std::shared_ptr<grpc::Channel> channel)
      : options_(options), channel_(std::move(channel)), stub_(wire::Continuation::NewStub(channel_)) {}

  absl::StatusOr<std::unique_ptr<TransportStream>> Open(const std::string& session_id,
                                                        absl::Time deadline) override {
    if (!channel_->WaitForConnected(absl::ToChronoTime(deadline))) {
      return absl::UnavailableError(absl::StrCat("cannot connect to ", options_.address));
    }
    auto stream = std::make_unique<GrpcStream>();
    if (!options_.api_key.empty()) {
      stream->context_.AddMetadata("authorization", absl::StrCat("Bearer ", options_.api_key));
    }
    stream->context_.AddMetadata("tandem-session", session_id);
    stream->stream_ = stub_->Session(&stream->context_);
    if (stream->stream_ == nullptr) return absl::UnavailableError("cannot start a session stream");
    return std::unique_ptr<TransportStream>(std::move(stream));
  }

 private:
  const CloudOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<wire::Continuation::Stub> stub_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Transport>> MakeGrpcTransport(const CloudOptions& options) {
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (!options.tls_root_certs_file.empty()) {
    std::ifstream in(options.tls_root_certs_file);
    if (!in) {
      return absl::NotFoundError(absl::StrCat("cannot read ", options.tls_root_certs_file));
    }
    std::stringstream pem;
    pem << in.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    for (auto [path, out] : {std::pair{&options.tls_client_cert_file, &ssl.pem_cert_chain},
                             std::pair{&options.tls_client_key_file, &ssl.pem_private_key}}) {
      if (path->empty()) continue;
      std::ifstream file(*path);
      if (!file) return absl::NotFoundError(absl::StrCat("cannot read ", *path));
      std::stringstream text;
      text << file.rdbuf();
      *out = text.str();
    }
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
  }
  const int max_bytes = static_cast<int>(std::min<int64_t>(options.max_message_bytes, INT32_MAX));
  args.SetMaxReceiveMessageSize(max_bytes);
  args.SetMaxSendMessageSize(max_bytes);
  // Our own backoff decides when to retry; keep gRPC's from adding seconds.
  const int max_backoff_ms = static_cast<int>(
      std::min<int64_t>(absl::ToInt64Milliseconds(options.reconnect_max_backoff), INT32_MAX));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, std::max(50, max_backoff_ms));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  return std::unique_ptr<Transport>(std::make_unique<GrpcTransport>(
      options, grpc::CreateCustomChannel(options.address, credentials, args)));
}

}  // namespace tandem::edge::link

namespace tandem::edge {

void RegisterGrpcTransport() { link::SetDefaultTransportFactory(&link::MakeGrpcTransport); }

namespace {
// Registers at load time. This object is in the binary whenever the app links
// Tandem::edge_grpc through CMake (its usage requirements keep
// tandem_edge_grpc_register, defined here, from being dropped).
[[maybe_unused]] const bool kRegistered = (RegisterGrpcTransport(), true);
}  // namespace

}  // namespace tandem::edge

extern "C" void tandem_edge_grpc_register() { tandem::edge::RegisterGrpcTransport(); }
