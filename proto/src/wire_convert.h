// Conversions between the wire messages (tandem.proto) and Tandem's own types,
// shared by the edge's CloudLink and the cloud server so both sides read and
// write hidden states the same way.
#ifndef TANDEM_PROTO_WIRE_CONVERT_H_
#define TANDEM_PROTO_WIRE_CONVERT_H_

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tandem/codec.h"
#include "tandem/sampling.h"
#include "tandem/speculative.h"
#include "tandem/wire/tandem.pb.h"

namespace tandem::wire {

// The protocol version this build speaks.
inline constexpr ProtocolVersion kProtocolVersion = PROTOCOL_VERSION_1;

// Status code from an integer on the wire: absl::StatusCode follows
// google.rpc.Code (0..16); a code outside it, possible only from a buggy or
// hostile peer, becomes kUnknown rather than an out-of-range enum value.
absl::StatusCode StatusCodeFromWire(int64_t code);

// Fills an Error message. `request_id` 0 = not about one request.
void ToProto(const absl::Status& status, uint64_t request_id, bool fatal, Error* out);
// The Error message as a status (never OK: an Error with code 0 is kUnknown);
// `context` prefixes the message when not empty.
absl::Status FromProto(const Error& error, absl::string_view context = "");

void ToProto(const CodecSpec& spec, Codec* out);
// InvalidArgument for an unknown format or invalid options.
absl::StatusOr<CodecSpec> FromProto(const Codec& codec);

void ToProto(const SamplingParams& params, Sampling* out);
// InvalidArgument when the params do not validate.
absl::StatusOr<SamplingParams> FromProto(const Sampling& sampling);

// A Continue's draft (speculative verification).
void ToProto(const DraftToken& draft, Draft* out);
// InvalidArgument unless the draft passes ValidateDraft against `vocab_size`
// (tandem/speculative.h); a draft with more than kMaxDraftEntries entries is
// refused before anything is copied.
absl::StatusOr<DraftToken> FromProto(const Draft& draft, int64_t vocab_size);

// Encodes rows ([N, D] float tensor, any float dtype) into `out`.
absl::Status EncodeRows(const at::Tensor& rows, const CodecSpec& spec, EncodedHidden* out);

// Decodes to a [rows, dim] fp32 tensor. The message's codec, rows and dim must
// agree with the buffer's own header; dim must be `expected_dim`; rows at most
// `max_rows`; every value finite. InvalidArgument otherwise.
absl::StatusOr<at::Tensor> DecodeRows(const EncodedHidden& hidden, int64_t expected_dim,
                                      int64_t max_rows);

}  // namespace tandem::wire

#endif  // TANDEM_PROTO_WIRE_CONVERT_H_
