#include "tandem/edge/cloud_only_session.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "encode_prompt.h"
#include "tandem/edge/edge_engine.h"
#include "tandem/status_macros.h"
#include "tandem/wire/tandem.grpc.pb.h"
#include "wire_convert.h"

namespace tandem::edge {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("cloud-only generation: ", status.error_message()));
}

}  // namespace

struct CloudOnlySession::Impl {
  CloudOnlyOptions options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<wire::Continuation::Stub> stub;
  absl::Mutex mu;
  grpc::ClientContext* running ABSL_GUARDED_BY(mu) = nullptr;
  bool cancelled ABSL_GUARDED_BY(mu) = false;
};

absl::StatusOr<std::unique_ptr<CloudOnlySession>> CloudOnlySession::Create(
    const CloudOnlyOptions& options) {
  const CloudOptions& cloud = options.cloud;
  if (cloud.address.empty()) {
    return absl::InvalidArgumentError("CloudOnlyOptions::cloud.address is required");
  }
  if (cloud.max_message_bytes < 1024) {
    return absl::InvalidArgumentError("max_message_bytes must be >= 1024");
  }
  if (options.generation_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("generation_timeout must be positive");
  }
  auto session = std::unique_ptr<CloudOnlySession>(new CloudOnlySession());
  TANDEM_ASSIGN_OR_RETURN(session->tokenizer_, Tokenizer::Load(options.model_dir));

  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (!cloud.tls_root_certs_file.empty()) {
    std::ifstream in(cloud.tls_root_certs_file);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", cloud.tls_root_certs_file));
    std::stringstream pem;
    pem << in.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    credentials = grpc::SslCredentials(ssl);
    if (!cloud.tls_server_name.empty()) args.SetSslTargetNameOverride(cloud.tls_server_name);
  }
  args.SetMaxReceiveMessageSize(static_cast<int>(cloud.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(cloud.max_message_bytes));
  session->impl_ = std::make_unique<Impl>();
  session->impl_->options = options;
  session->impl_->channel = grpc::CreateCustomChannel(cloud.address, credentials, args);
  session->impl_->stub = wire::Continuation::NewStub(session->impl_->channel);
  return session;
}

CloudOnlySession::~CloudOnlySession() = default;

void CloudOnlySession::Cancel() {
  absl::MutexLock lock(&impl_->mu);
  if (impl_->running != nullptr) {
    impl_->cancelled = true;
    impl_->running->TryCancel();
  }
}

absl::StatusOr<GenerationSummary> CloudOnlySession::Generate(
    const std::string& prompt, const GenerateOptions& options,
    const std::function<bool(const TokenInfo&)>& on_token) {
  TANDEM_ASSIGN_OR_RETURN(const std::vector<int32_t> ids,
                          EncodePrompt(*tokenizer_, prompt, options));
  return Run(ids, options, /*with_text=*/true, on_token);
}

absl::StatusOr<GenerationSummary> CloudOnlySession::GenerateIds(
    const std::vector<int32_t>& prompt_ids, const GenerateOptions& options,
    const std::function<bool(const TokenInfo&)>& on_token) {
  return Run(prompt_ids, options, /*with_text=*/false, on_token);
}

absl::StatusOr<GenerationSummary> CloudOnlySession::Run(
    const std::vector<int32_t>& prompt_ids, const GenerateOptions& options, bool with_text,
    const std::function<bool(const TokenInfo&)>& on_token) {
  if (running_.exchange(true)) {
    return absl::FailedPreconditionError("another Generate is running on this session");
  }
  struct Running {
    std::atomic<bool>* flag;
    ~Running() { flag->store(false); }
  } running{&running_};
  if (prompt_ids.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  if (options.max_new_tokens < 0) return absl::InvalidArgumentError("max_new_tokens must be >= 0");
  if (!options.stop_strings.empty()) {
    return absl::InvalidArgumentError("stop strings are not supported in cloud-only mode yet");
  }
  TANDEM_RETURN_IF_ERROR(options.sampling.Validate());

  GenerationSummary summary;
  summary.prompt_tokens = static_cast<int64_t>(prompt_ids.size());
  const Clock::time_point start = Clock::now();
  if (options.max_new_tokens == 0) return summary;

  wire::GenerateRequest request;
  request.set_protocol_version(wire::kProtocolVersion);
  request.set_model_fingerprint(impl_->options.expected_fingerprint);
  for (int32_t id : prompt_ids) request.add_prompt_ids(id);
  request.set_max_new_tokens(static_cast<uint32_t>(options.max_new_tokens));
  wire::ToProto(options.sampling, request.mutable_sampling());
  const int32_t eos = tokenizer_->eos_id();
  request.set_stop_at_eos(options.stop_at_eos && eos >= 0);
  request.set_eos_id(std::max(eos, 0));

  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + impl_->options.generation_timeout));
  context.set_wait_for_ready(false);
  if (!impl_->options.cloud.api_key.empty()) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", impl_->options.cloud.api_key));
  }
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->running = &context;
    impl_->cancelled = false;
  }
  struct Unregister {
    Impl* impl;
    ~Unregister() {
      absl::MutexLock lock(&impl->mu);
      impl->running = nullptr;
    }
  } unregister{impl_.get()};

  summary.cloud.requests = 1;
  summary.cloud.bytes_up = static_cast<int64_t>(request.ByteSizeLong());
  std::unique_ptr<grpc::ClientReader<wire::GenerateReply>> reader =
      impl_->stub->Generate(&context, request);
  std::optional<StreamDecoder> decoder;
  if (with_text) decoder.emplace(*tokenizer_);
  wire::GenerateReply reply;
  Clock::time_point last = start;
  bool stopped_by_callback = false;
  bool done = false;
  while (reader->Read(&reply)) {
    summary.cloud.bytes_down += static_cast<int64_t>(reply.ByteSizeLong());
    if (reply.has_done()) {
      const wire::GenerateDone& d = reply.done();
      summary.cloud.cloud_compute_seconds = (d.prefill_ms() + d.decode_ms()) / 1e3;
      if (d.stopped_at_eos()) summary.stop_reason = StopReason::kEos;
      done = true;
      continue;
    }
    if (!reply.has_token() || stopped_by_callback) continue;
    const Clock::time_point now = Clock::now();
    TokenInfo info;
    info.id = reply.token().token_id();
    if (info.id < 0 || info.id >= tokenizer_->vocab_size()) {
      context.TryCancel();
      return absl::DataLossError(absl::StrCat("the cloud sent token id ", info.id,
                                              " outside the vocabulary"));
    }
    info.position = summary.prompt_tokens + summary.generated_tokens;
    info.source = TokenSource::kCloud;
    info.exit_layer = kCloudLayer;
    info.confidence = std::numeric_limits<float>::quiet_NaN();
    info.probability = reply.token().probability();
    info.seconds = SecondsBetween(last, now);
    if (summary.generated_tokens == 0) {
      summary.prefill_seconds = SecondsBetween(start, now);
    }
    last = now;
    if (decoder) {
      absl::StatusOr<std::string> text = decoder->Push(info.id);
      if (!text.ok()) return text.status();
      info.text = *text;
      summary.text += info.text;
    }
    summary.ids.push_back(info.id);
    ++summary.generated_tokens;
    ++summary.counts.cloud;
    ++summary.cloud.cloud_tokens;
    if (on_token && !on_token(info)) {
      stopped_by_callback = true;
      summary.stop_reason = StopReason::kCallback;
      context.TryCancel();
    }
  }
  const grpc::Status status = reader->Finish();
  bool cancelled;
  {
    absl::MutexLock lock(&impl_->mu);
    cancelled = impl_->cancelled;
  }
  if (cancelled) {
    summary.stop_reason = StopReason::kCancelled;
  } else if (!stopped_by_callback && (!status.ok() || !done)) {
    summary.cloud.failed_requests = 1;
    if (status.ok()) return absl::DataLossError("cloud-only generation: the stream ended early");
    return FromGrpc(status);
  }
  if (decoder) {
    std::string rest = decoder->Flush();
    if (!rest.empty()) {
      summary.text += rest;
      if (on_token) {
        TokenInfo tail;
        tail.id = -1;
        tail.text = rest;
        on_token(tail);
      }
    }
  }
  summary.total_seconds = SecondsBetween(start, Clock::now());
  summary.decode_seconds = summary.total_seconds - summary.prefill_seconds;
  return summary;
}

}  // namespace tandem::edge
