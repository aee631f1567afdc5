#include "server/cloud_only.h"

#include <exception>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tandem/fingerprint.h"
#include "tandem/flops.h"
#include "tandem/generate.h"
#include "wire_convert.h"

namespace tandem::cloud {
namespace {

grpc::Status ToGrpc(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// KV bytes of a full-model cache for `positions` (fp32 keys and values).
int64_t FullCacheBytes(const ModelConfig& c, int64_t positions) {
  const int64_t head_dim =
      c.head_dim > 0 ? c.head_dim : c.hidden_size / std::max<int64_t>(1, c.num_attention_heads);
  return 2 * c.num_hidden_layers * c.num_key_value_heads * head_dim * positions *
         static_cast<int64_t>(sizeof(float));
}

// Holds a generation's slot and KV reservation; releases both when it ends.
class Reservation {
 public:
  Reservation(ServerCounters* counters, int64_t bytes) : counters_(counters), bytes_(bytes) {}
  ~Reservation() {
    counters_->cloud_only_active.fetch_sub(1);
    counters_->cloud_only_reserved_bytes.fetch_sub(bytes_);
  }

 private:
  ServerCounters* counters_;
  int64_t bytes_;
};

grpc::Status Serve(ServiceContext* service, grpc::ServerContext* context,
                   const std::string& identity, const wire::GenerateRequest& request,
                   grpc::ServerWriter<wire::GenerateReply>* writer) {
  ++service->counters.messages_in;
  service->counters.bytes_in.fetch_add(static_cast<int64_t>(request.ByteSizeLong()));
  if (service->draining.load()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
  }
  const CloudModel& cloud_model = *service->model;
  if (!cloud_model.can_embed()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("cloud-only generation needs the whole model; this server "
                                     "holds only layers [",
                                     cloud_model.split(), ", ", cloud_model.num_layers(),
                                     ") (started without token resync)"));
  }
  if (request.protocol_version() != wire::kProtocolVersion) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("protocol version ", request.protocol_version(),
                                     " is not spoken here (this server speaks ",
                                     static_cast<int>(wire::kProtocolVersion), ")"));
  }
  if (request.model_fingerprint() != 0 && request.model_fingerprint() != cloud_model.fingerprint()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("model fingerprint mismatch: the client expects ",
                                     FingerprintHex(request.model_fingerprint()), ", this server runs ",
                                     FingerprintHex(cloud_model.fingerprint())));
  }
  const ModelConfig& config = cloud_model.config();
  const int64_t prompt_tokens = request.prompt_ids_size();
  if (prompt_tokens == 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the prompt has no tokens");
  }
  for (int32_t id : request.prompt_ids()) {
    if (id < 0 || id >= config.vocab_size) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("prompt token id ", id, " is outside [0, ",
                                       config.vocab_size, ")"));
    }
  }
  if (request.max_new_tokens() == 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "max_new_tokens must be >= 1");
  }
  const ContextLimits& limits = service->contexts->limits();
  const int64_t max_positions =
      limits.max_positions > 0 ? std::min(limits.max_positions, config.max_position_embeddings)
                               : config.max_position_embeddings;
  const int64_t positions = prompt_tokens + static_cast<int64_t>(request.max_new_tokens());
  if (positions > max_positions) {
    return grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                        absl::StrCat("prompt (", prompt_tokens, " tokens) + max_new_tokens (",
                                     request.max_new_tokens(), ") exceeds this server's limit of ",
                                     max_positions, " positions"));
  }
  if (request.stop_at_eos() && (request.eos_id() < 0 || request.eos_id() >= config.vocab_size)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "eos_id is outside the vocabulary");
  }
  absl::StatusOr<SamplingParams> sampling = wire::FromProto(request.sampling());
  if (!sampling.ok()) return ToGrpc(sampling.status());

  // Admission: a slot and the KV bytes, both released by `reservation`.
  ServerCounters& counters = service->counters;
  const int64_t bytes = FullCacheBytes(config, positions);
  if (counters.cloud_only_active.fetch_add(1) + 1 > limits.max_sessions) {
    counters.cloud_only_active.fetch_sub(1);
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("too many cloud-only generations (limit ", limits.max_sessions,
                                     ")"));
  }
  const int64_t reserved = counters.cloud_only_reserved_bytes.fetch_add(bytes) + bytes;
  Reservation reservation(&counters, bytes);
  const int64_t used = service->contexts->stats().memory_bytes + reserved;
  if (used > limits.memory_budget_bytes) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("not enough memory for a ", positions,
                                     "-position generation (", bytes, " bytes of KV cache)"));
  }
  ++counters.cloud_only_requests;
  service->log.Info("cloud_only_start", {{"identity", identity},
                                         {"prompt_tokens", prompt_tokens},
                                         {"max_new_tokens",
                                          static_cast<int64_t>(request.max_new_tokens())}});

  GenerateParams params;
  params.max_new_tokens = static_cast<int32_t>(request.max_new_tokens());
  params.sampling = *sampling;
  params.stop_at_eos = request.stop_at_eos();
  const int32_t eos_id = request.stop_at_eos() ? request.eos_id() : -1;
  const std::vector<int32_t> prompt(request.prompt_ids().begin(), request.prompt_ids().end());
  uint32_t index = 0;
  bool client_gone = false;
  absl::StatusOr<GenerateStats> stats = GenerateFullIds(
      cloud_model.model(), prompt, params, eos_id, [&](const GeneratedToken& token) {
        if (context->IsCancelled()) {
          client_gone = true;
          return false;
        }
        wire::GenerateReply reply;
        wire::StreamedToken* out = reply.mutable_token();
        out->set_index(index++);
        out->set_token_id(token.id);
        out->set_probability(token.probability);
        counters.bytes_out.fetch_add(static_cast<int64_t>(reply.ByteSizeLong()));
        if (!writer->Write(reply)) {
          client_gone = true;
          return false;
        }
        ++counters.cloud_only_tokens;
        return true;
      });
  if (!stats.ok()) {
    service->log.Warn("cloud_only_error", {{"identity", identity},
                                           {"message", stats.status().message()}});
    return ToGrpc(stats.status());
  }
  if (client_gone) return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");

  wire::GenerateReply reply;
  wire::GenerateDone* done = reply.mutable_done();
  done->set_prompt_tokens(static_cast<uint32_t>(stats->prompt_tokens));
  done->set_generated_tokens(static_cast<uint32_t>(stats->generated_tokens));
  done->set_prefill_ms(static_cast<float>(stats->prefill_seconds * 1e3));
  done->set_decode_ms(static_cast<float>(stats->decode_seconds * 1e3));
  done->set_model_fingerprint(cloud_model.fingerprint());
  // The EOS token itself was sampled (and run) too when generation stopped there.
  const bool at_eos = request.stop_at_eos() && stats->generated_tokens < params.max_new_tokens;
  done->set_stopped_at_eos(at_eos);
  done->set_flops(GenerationFlops(config, prompt_tokens, stats->generated_tokens + (at_eos ? 1 : 0)));
  counters.bytes_out.fetch_add(static_cast<int64_t>(reply.ByteSizeLong()));
  writer->Write(reply);
  return grpc::Status::OK;
}

}  // namespace

grpc::Status ServeCloudOnly(ServiceContext* service, grpc::ServerContext* context,
                            const std::string& identity, const wire::GenerateRequest& request,
                            grpc::ServerWriter<wire::GenerateReply>* writer) {
  try {
    return Serve(service, context, identity, request, writer);
  } catch (const std::exception& e) {
    return grpc::Status(grpc::StatusCode::INTERNAL, absl::StrCat("cloud-only generation: ", e.what()));
  }
}

}  // namespace tandem::cloud
