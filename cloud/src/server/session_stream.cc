#include "server/session_stream.h"

#include <utility>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tandem/fingerprint.h"
#include "status_convert.h"
#include "wire_convert.h"

namespace tandem::cloud {
namespace {

// Session ids: 16..64 characters of [A-Za-z0-9_-] (proto/tandem.proto, Open).
bool ValidSessionId(const std::string& id) {
  if (id.size() < 16 || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

absl::Status Refuse(absl::StatusCode code, absl::string_view message) {
  return absl::Status(code, message);
}

wire::Verdict ToWire(Verdict verdict) {
  switch (verdict) {
    case Verdict::kAccepted: return wire::VERDICT_ACCEPTED;
    case Verdict::kRejected: return wire::VERDICT_REJECTED;
    case Verdict::kNone: break;
  }
  return wire::VERDICT_NONE;
}

}  // namespace

SessionStream::SessionStream(ServiceContext* service, std::shared_ptr<ReplySink> sink,
                             std::string identity)
    : service_(service), sink_(std::move(sink)), identity_(std::move(identity)) {}

absl::Status SessionStream::Attach() {
  absl::StatusOr<uint64_t> attachment = service_->contexts->Attach(session_id_, identity_);
  if (!attachment.ok()) return attachment.status();
  attachment_ = *attachment;
  return absl::OkStatus();
}

void SessionStream::Detach() {
  if (attachment_ == 0) return;
  absl::StatusOr<int64_t> dropped =
      service_->contexts->Detach(session_id_, identity_, attachment_);
  attachment_ = 0;
  if (dropped.ok() && *dropped > 0) {
    service_->log.Info("stream_work_dropped", {{"session", session_id_}, {"rows", *dropped}});
  }
}

void SessionStream::SendError(const absl::Status& status, uint64_t request_id, bool fatal) {
  wire::ServerMessage message;
  wire::ToProto(status, request_id, fatal, message.mutable_error());
  ++service_->counters.errors_sent;
  service_->CountRefusal(status.code());
  service_->log.Warn("stream_error", {{"session", session_id_},
                                      {"identity", identity_},
                                      {"code", absl::StatusCodeToString(status.code())},
                                      {"message", status.message()},
                                      {"fatal", fatal}});
  sink_->Send(std::move(message));
}

absl::StatusOr<SessionPosition> SessionStream::Position() const {
  return service_->contexts->Position(session_id_, identity_);
}

void SessionStream::SendAck(const SessionPosition& at) {
  wire::ServerMessage message;
  wire::Ack* ack = message.mutable_ack();
  ack->set_next_position(static_cast<uint32_t>(at.held));
  ack->set_branch(at.branch);
  ack->set_epoch(epoch_);
  ack->set_token_resync(service_->model->can_embed());
  ack->set_model_fingerprint(service_->model->fingerprint());
  sink_->Send(std::move(message));
}

void SessionStream::SendResync(const SessionPosition& at, uint64_t request_id,
                               const std::string& reason) {
  wire::ServerMessage message;
  wire::ResyncRequired* resync = message.mutable_resync();
  resync->set_epoch(epoch_);
  resync->set_next_position(static_cast<uint32_t>(at.held));
  resync->set_branch(at.branch);
  resync->set_request_id(request_id);
  resync->set_token_resync(service_->model->can_embed());
  resync->set_reason(reason);
  ++service_->counters.resyncs_sent;
  sink_->Send(std::move(message));
}

absl::Status SessionStream::Resync(uint64_t request_id, const std::string& reason) {
  absl::StatusOr<int64_t> held =
      service_->contexts->Open(session_id_, identity_, session_options_);
  if (!held.ok()) return held.status();
  if (absl::Status attached = Attach(); !attached.ok()) return attached;
  absl::StatusOr<SessionPosition> at = Position();
  if (!at.ok()) return at.status();
  ++epoch_;
  service_->log.Info("resync", {{"session", session_id_},
                                {"epoch", static_cast<int64_t>(epoch_)},
                                {"next_position", *held},
                                {"reason", reason}});
  SendResync(*at, request_id, reason);
  return absl::OkStatus();
}

absl::Status SessionStream::HandleOpen(const wire::Open& open) {
  if (opened_) return Refuse(absl::StatusCode::kFailedPrecondition, "a second Open on one stream");
  if (service_->draining.load()) {
    return Refuse(absl::StatusCode::kUnavailable, "the server is shutting down");
  }
  if (open.protocol_version() != wire::kProtocolVersion) {
    return Refuse(absl::StatusCode::kFailedPrecondition,
                  absl::StrCat("protocol version ", open.protocol_version(),
                               " is not spoken here (this server speaks ",
                               static_cast<int>(wire::kProtocolVersion), ")"));
  }
  const CloudModel& model = *service_->model;
  if (open.model_fingerprint() != model.fingerprint()) {
    return Refuse(absl::StatusCode::kFailedPrecondition,
                  absl::StrCat("model fingerprint mismatch: the edge runs ",
                               FingerprintHex(open.model_fingerprint()), " split at layer ",
                               open.split(), ", this server ", FingerprintHex(model.fingerprint()),
                               " split at layer ", model.split(),
                               " (same checkpoint and split needed on both sides)"));
  }
  if (!ValidSessionId(open.session_id())) {
    return Refuse(absl::StatusCode::kInvalidArgument,
                  "session_id must be 16..64 characters of [A-Za-z0-9_-]");
  }
  absl::StatusOr<CodecSpec> codec = wire::FromProto(open.codec());
  if (!codec.ok()) return codec.status();
  absl::StatusOr<SamplingParams> sampling = wire::FromProto(open.sampling());
  if (!sampling.ok()) return sampling.status();

  session_id_ = open.session_id();
  codec_ = *codec;
  session_options_.sampling = *sampling;
  session_options_.capacity = open.capacity();
  absl::StatusOr<int64_t> held = service_->contexts->Open(session_id_, identity_, session_options_);
  if (!held.ok()) return held.status();
  opened_ = true;
  if (absl::Status attached = Attach(); !attached.ok()) return attached;
  const int64_t resume = open.resume_next_position();
  service_->log.Info("session_open", {{"session", session_id_},
                                      {"identity", identity_},
                                      {"codec", CodecSpecName(codec_)},
                                      {"resume", resume},
                                      {"held", *held}});
  if (resume == 0 || *held >= resume) {
    absl::StatusOr<int64_t> now = service_->contexts->Truncate(session_id_, identity_, resume);
    if (!now.ok()) return now.status();
    absl::StatusOr<SessionPosition> at = Position();
    if (!at.ok()) return at.status();
    SendAck(*at);
    return absl::OkStatus();
  }
  return Resync(0, absl::StrCat("the server holds ", *held, " of ", resume, " positions"));
}

absl::Status SessionStream::HandleContext(const wire::Context& context) {
  ++service_->counters.context_messages;
  if (context.epoch() < epoch_) return absl::OkStatus();  // sent before a resync: obsolete
  if (context.epoch() > epoch_) {
    return Refuse(absl::StatusCode::kInvalidArgument,
                  absl::StrCat("Context of epoch ", context.epoch(), ", this stream is at ",
                               epoch_));
  }
  const int64_t first = context.first_position();
  absl::StatusOr<ContextReceipt> receipt = absl::InternalError("no payload");
  switch (context.payload_case()) {
    case wire::Context::kHidden: {
      absl::StatusOr<at::Tensor> decoded =
          wire::DecodeRows(context.hidden(), service_->model->hidden_size(),
                           service_->options.max_rows_per_message);
      if (!decoded.ok()) return decoded.status();
      // DecodeRows validated the message's codec, so FromProto succeeds here.
      if (*wire::FromProto(context.hidden().codec()) != codec_) {
        return Refuse(absl::StatusCode::kInvalidArgument,
                      "hidden states in a codec other than the one the session opened with");
      }
      receipt = service_->contexts->AddContext(session_id_, identity_, first, *decoded,
                                               context.branch());
      break;
    }
    case wire::Context::kTokens: {
      const auto& ids = context.tokens().ids();
      if (ids.empty()) return Refuse(absl::StatusCode::kInvalidArgument, "no token ids");
      if (ids.size() > service_->options.max_rows_per_message) {
        return Refuse(absl::StatusCode::kInvalidArgument, "too many token ids in one message");
      }
      receipt = service_->contexts->AddTokens(session_id_, identity_, first,
                                              std::vector<int32_t>(ids.begin(), ids.end()),
                                              context.branch());
      break;
    }
    default:
      return Refuse(absl::StatusCode::kInvalidArgument, "Context without a payload");
  }
  if (absl::IsNotFound(receipt.status())) {
    return Resync(0, "the session is no longer held (evicted or expired)");
  }
  if (!receipt.ok()) return receipt.status();
  if (receipt->stale) return absl::OkStatus();  // built on a rejected draft: no reply
  SendAck(receipt->session);
  return absl::OkStatus();
}

absl::Status SessionStream::HandleContinue(const wire::Continue& request) {
  ++service_->counters.continue_requests;
  if (request.request_id() == 0) {
    return Refuse(absl::StatusCode::kInvalidArgument, "Continue needs a request_id > 0");
  }
  if (request.epoch() > epoch_) {
    return Refuse(absl::StatusCode::kInvalidArgument,
                  absl::StrCat("Continue of epoch ", request.epoch(), ", this stream is at ",
                               epoch_));
  }
  if (request.epoch() < epoch_) {
    // Sent before the edge saw the resync: tell it again so it does not wait.
    absl::StatusOr<SessionPosition> at = Position();
    if (!at.ok()) return Resync(request.request_id(), "the session is no longer held");
    SendResync(*at, request.request_id(), "request from an earlier epoch");
    return absl::OkStatus();
  }
  if (service_->draining.load()) {
    // The drain answers what was accepted before it began, then says GoingAway.
    ++service_->counters.drain_refusals;
    SendError(absl::UnavailableError("the server is draining: ask another replica"),
              request.request_id(), /*fatal=*/false);
    return absl::OkStatus();
  }
  absl::StatusOr<at::Tensor> row =
      wire::DecodeRows(request.hidden(), service_->model->hidden_size(), /*max_rows=*/1);
  if (!row.ok()) return row.status();
  ContinueRequest continue_request;
  continue_request.position = request.position();
  continue_request.row = *std::move(row);
  continue_request.branch = request.branch();
  if (request.has_draft()) {
    absl::StatusOr<DraftToken> draft =
        wire::FromProto(request.draft(), service_->model->config().vocab_size);
    if (!draft.ok()) return draft.status();
    continue_request.draft = *std::move(draft);
  }
  if (request.has_sampling()) {
    absl::StatusOr<SamplingParams> sampling = wire::FromProto(request.sampling());
    if (!sampling.ok()) return sampling.status();
    continue_request.sampling = *sampling;
  }
  const uint64_t request_id = request.request_id();
  std::shared_ptr<ReplySink> sink = sink_;
  ServiceContext* service = service_;
  const absl::Time received = absl::Now();
  absl::Status status = service_->contexts->Continue(
      session_id_, identity_, std::move(continue_request),
      [sink, service, request_id, received](absl::StatusOr<ContinueResult> result) {
        // Cancelled: superseded by a rejected draft, of an abandoned branch, or
        // the session closed / the server stopping — nobody waits for it.
        if (absl::IsCancelled(result.status())) return;
        wire::ServerMessage message;
        if (result.ok()) {
          wire::Token* token = message.mutable_token();
          token->set_request_id(request_id);
          token->set_position(static_cast<uint32_t>(result->position));
          token->set_token_id(result->token);
          token->set_probability(result->probability);
          token->set_compute_ms(static_cast<float>(result->compute_seconds * 1e3));
          token->set_verdict(ToWire(result->verdict));
          token->set_branch(result->branch);
          ++service->counters.tokens_sent;
          if (service->metrics != nullptr) {
            service->metrics->ObserveToken(result->compute_seconds,
                                           absl::ToDoubleSeconds(absl::Now() - received));
          }
        } else {
          wire::ToProto(result.status(), request_id, /*fatal=*/false, message.mutable_error());
          ++service->counters.errors_sent;
          service->CountRefusal(result.status().code());
        }
        sink->Send(std::move(message));
      });
  if (absl::IsNotFound(status)) {
    return Resync(request_id, "the session is no longer held (evicted or expired)");
  }
  return status;
}

absl::Status SessionStream::Handle(const wire::ClientMessage& message) {
  ++service_->counters.messages_in;
  service_->counters.bytes_in += static_cast<int64_t>(message.ByteSizeLong());
  if (closed_) return Refuse(absl::StatusCode::kFailedPrecondition, "a message after Close");
  if (!opened_ && message.kind_case() != wire::ClientMessage::kOpen) {
    return Refuse(absl::StatusCode::kFailedPrecondition, "the first message must be Open");
  }
  try {
    switch (message.kind_case()) {
      case wire::ClientMessage::kOpen: return HandleOpen(message.open());
      case wire::ClientMessage::kContext: return HandleContext(message.context());
      case wire::ClientMessage::kContinue: return HandleContinue(message.continue_());
      case wire::ClientMessage::kClose: {
        absl::Status closed = service_->contexts->Close(session_id_, identity_);
        closed_ = true;
        service_->log.Info("session_close", {{"session", session_id_}});
        return absl::IsNotFound(closed) ? absl::OkStatus() : closed;  // NotFound: already gone
      }
      default:
        return Refuse(absl::StatusCode::kInvalidArgument, "an empty or unknown message");
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("stream handler: ", e.what()));
  }
}

grpc::Status SessionStream::End(const absl::Status& failure) {
  if (!failure.ok()) SendError(failure, 0, /*fatal=*/true);
  return wire::ToGrpcStatus(failure);
}

void SessionStream::CloseIfEmpty() {
  if (!opened_ || closed_) return;
  Detach();  // nobody will read answers to what this stream queued
  absl::StatusOr<SessionPosition> at = Position();
  if (at.ok() && at->held == 0 && service_->contexts->Close(session_id_, identity_).ok()) {
    service_->log.Info("session_close", {{"session", session_id_}, {"reason", "empty, stream ended"}});
  }
}

}  // namespace tandem::cloud
