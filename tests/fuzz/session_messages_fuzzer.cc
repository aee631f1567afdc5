// The server's message handling: a sequence of ClientMessages (built from the
// input, mostly well-formed so that the fuzzer gets past Open) played through
// SessionStream::Handle against a ContextManager of a small random model, exactly as
// the gRPC reactor does. Every sequence must end with a status — no crash, no
// hang, no exception — and the stream's replies must all be well-formed.
#include <deque>
#include <memory>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "fuzz_target.h"
#include "server/service_context.h"
#include "server/session_stream.h"
#include "tandem/cloud/cloud_model.h"
#include "tandem/cloud/context_manager.h"
#include "tandem/codec.h"
#include "tandem/model.h"
#include "tandem/wire/tandem.grpc.pb.h"
#include "wire_convert.h"

namespace {

using tandem::fuzz::ByteReader;
namespace wire = tandem::wire;

constexpr int64_t kDim = 32;

// Collects the replies (from the handler and the scheduler) and checks each.
class CheckingSink final : public tandem::cloud::ReplySink {
 public:
  bool Send(wire::ServerMessage message) override {
    if (message.kind_case() == wire::ServerMessage::KIND_NOT_SET) __builtin_trap();
    return true;
  }
};

std::shared_ptr<const tandem::cloud::CloudModel> FuzzModel() {
  static const std::shared_ptr<const tandem::cloud::CloudModel> model = [] {
    tandem::ModelConfig c;
    c.vocab_size = 64;
    c.hidden_size = kDim;
    c.intermediate_size = 48;
    c.num_hidden_layers = 3;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 8;
    c.max_position_embeddings = 64;
    auto full = tandem::Model::CreateRandom(c, {}, 1);
    if (!full.ok()) __builtin_trap();
    auto cloud = tandem::cloud::CloudModel::FromModel(
        std::shared_ptr<const tandem::Model>(std::move(*full)), 1);
    if (!cloud.ok()) __builtin_trap();
    return std::shared_ptr<const tandem::cloud::CloudModel>(std::move(*cloud));
  }();
  return model;
}

tandem::CodecSpec SpecFrom(uint8_t b) {
  tandem::CodecSpec spec;
  spec.format = static_cast<tandem::HiddenFormat>(b % 5 + 1);
  spec.group_size = (b & 0x20) ? 64 : 32;
  spec.zstd_level = (b & 0x40) ? 1 : 0;
  return spec;
}

// Hidden rows: a valid encoding of values from the input, or raw bytes.
void FillHidden(ByteReader& in, wire::EncodedHidden* out) {
  const uint8_t how = in.U8();
  const int64_t rows = 1 + in.U8() % 4;
  const int64_t dim = (how & 0x80) ? 1 + in.U8() % 64 : kDim;
  if (how & 0x10) {  // raw, possibly lying, fields
    tandem::CodecSpec spec = SpecFrom(in.U8());
    wire::ToProto(spec, out->mutable_codec());
    out->set_rows(in.U8());
    out->set_dim(in.U8());
    out->set_data(in.Bytes(in.U8()));
    return;
  }
  std::vector<float> values(rows * dim);
  for (float& v : values) v = (how & 0x08) ? in.F32() : static_cast<float>(in.U8()) / 16.0f - 8;
  const tandem::CodecSpec spec = SpecFrom(how);
  absl::StatusOr<std::string> bytes = tandem::EncodeHidden(values.data(), rows, dim, spec);
  wire::ToProto(spec, out->mutable_codec());
  out->set_rows(static_cast<uint32_t>(rows));
  out->set_dim(static_cast<uint32_t>(dim));
  if (bytes.ok()) out->set_data(*bytes);
}

std::deque<wire::ClientMessage> Messages(ByteReader& in, uint64_t fingerprint) {
  std::deque<wire::ClientMessage> out;
  while (!in.empty() && out.size() < 64) {
    const uint8_t op = in.U8();
    wire::ClientMessage m;
    switch (op % 6) {
      case 0: {
        wire::Open* open = m.mutable_open();
        const uint8_t bad = in.U8();
        open->set_protocol_version((bad & 1) ? static_cast<wire::ProtocolVersion>(in.U8())
                                             : wire::kProtocolVersion);
        open->set_model_fingerprint((bad & 2) ? fingerprint ^ 1 : fingerprint);
        open->set_split(1);
        wire::ToProto(SpecFrom(in.U8()), open->mutable_codec());
        open->set_session_id((bad & 4) ? in.Bytes(in.U8() % 80) : "fuzz-session-0123456789");
        if (bad & 8) {
          open->mutable_sampling()->set_temperature(in.F32());
          open->mutable_sampling()->set_top_k(static_cast<int32_t>(in.U32()));
          open->mutable_sampling()->set_top_p(in.F32());
          open->mutable_sampling()->set_vocab_limit(static_cast<int32_t>(in.U32()));
        }
        open->set_capacity((bad & 16) ? in.U32() : in.U8() % 80);
        open->set_resume_next_position((bad & 32) ? in.U8() : 0);
        break;
      }
      case 1: {
        wire::Context* c = m.mutable_context();
        c->set_epoch(in.U8() % 3);
        c->set_first_position(in.U8() % 80);
        FillHidden(in, c->mutable_hidden());
        break;
      }
      case 2: {
        wire::Context* c = m.mutable_context();
        c->set_epoch(in.U8() % 3);
        c->set_first_position(in.U8() % 80);
        const int n = in.U8() % 8;
        for (int i = 0; i < n; ++i) c->mutable_tokens()->add_ids(static_cast<int8_t>(in.U8()));
        break;
      }
      case 3: {
        wire::Continue* c = m.mutable_continue_();
        c->set_epoch(in.U8() % 3);
        c->set_request_id(in.U8());
        c->set_position(in.U8() % 80);
        FillHidden(in, c->mutable_hidden());
        break;
      }
      case 4:
        m.mutable_close();
        break;
      default:
        if (!m.ParseFromString(in.Bytes(in.U8()))) continue;
    }
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace

TANDEM_FUZZ_TARGET(session_messages) {
  std::shared_ptr<const tandem::cloud::CloudModel> model = FuzzModel();
  ByteReader in(data, size);
  tandem::cloud::ServiceContext service(nullptr);
  service.model = model;
  service.options.max_rows_per_message = 8;
  tandem::cloud::ContextLimits limits;
  limits.max_sessions = 4;
  limits.memory_budget_bytes = 1 << 20;
  limits.max_queued_rows = 16;
  service.contexts = std::make_unique<tandem::cloud::ContextManager>(model, limits);
  auto keys = tandem::cloud::ApiKeyStore::Create({}, "");
  if (!keys.ok()) __builtin_trap();
  service.keys = std::move(*keys);
  {
    // As the gRPC reactor does: one message at a time until a failure or Close.
    tandem::cloud::SessionStream session(&service, std::make_shared<CheckingSink>(), "fuzz");
    for (const wire::ClientMessage& message : Messages(in, model->fingerprint())) {
      const absl::Status status = session.Handle(message);
      if (!status.ok()) {
        (void)session.End(status);
        break;
      }
      if (session.closed()) break;
    }
    session.CloseIfEmpty();
  }
  service.contexts.reset();  // waits for the scheduler
  return 0;
}
