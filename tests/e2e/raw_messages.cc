#include "raw_messages.h"

#include <gtest/gtest.h>

#include "loopback.h"
#include "wire_convert.h"

namespace tandem::e2e {

wire::ClientMessage ShippedFp32Open(const std::string& session_id, int64_t split) {
  wire::ClientMessage m;
  wire::Open* open = m.mutable_open();
  open->set_protocol_version(wire::kProtocolVersion);
  open->set_model_fingerprint(ShippedCloudModel()->fingerprint());
  open->set_split(static_cast<uint32_t>(split));
  open->mutable_codec()->set_format(wire::HIDDEN_FORMAT_FP32);
  open->set_session_id(session_id);
  return m;
}

void EncodeFp32(const at::Tensor& rows, wire::EncodedHidden* out) {
  CodecSpec spec;
  spec.format = HiddenFormat::kFp32;
  ASSERT_TRUE(wire::EncodeRows(rows, spec, out).ok());
}

}  // namespace tandem::e2e
