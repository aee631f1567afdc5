#include "wire_convert.h"

#include <algorithm>
#include <cmath>
#include <string>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"

namespace tandem::wire {

absl::StatusCode StatusCodeFromWire(int64_t code) {
  constexpr int64_t kLastCode = static_cast<int64_t>(absl::StatusCode::kUnauthenticated);  // 16
  if (code < 0 || code > kLastCode) return absl::StatusCode::kUnknown;
  return static_cast<absl::StatusCode>(code);
}

void ToProto(const absl::Status& status, uint64_t request_id, bool fatal, Error* out) {
  out->set_code(static_cast<int32_t>(StatusCodeFromWire(static_cast<int64_t>(status.code()))));
  out->set_message(std::string(status.message()));
  out->set_request_id(request_id);
  out->set_fatal(fatal);
}

absl::Status FromProto(const Error& error, absl::string_view context) {
  absl::StatusCode code = StatusCodeFromWire(error.code());
  // An Error always means failure, even if a peer sent code 0.
  if (code == absl::StatusCode::kOk) code = absl::StatusCode::kUnknown;
  return absl::Status(code, absl::StrCat(context, error.message()));
}

void ToProto(const CodecSpec& spec, Codec* out) {
  out->set_format(static_cast<HiddenFormat>(static_cast<int>(spec.format)));
  out->set_group_size(spec.format == tandem::HiddenFormat::kInt4 ? spec.group_size : 0);
  out->set_zstd_level(spec.zstd_level);
}

absl::StatusOr<CodecSpec> FromProto(const Codec& codec) {
  CodecSpec spec;
  switch (codec.format()) {
    case HIDDEN_FORMAT_FP32: spec.format = tandem::HiddenFormat::kFp32; break;
    case HIDDEN_FORMAT_FP16: spec.format = tandem::HiddenFormat::kFp16; break;
    case HIDDEN_FORMAT_BF16: spec.format = tandem::HiddenFormat::kBf16; break;
    case HIDDEN_FORMAT_INT8: spec.format = tandem::HiddenFormat::kInt8; break;
    case HIDDEN_FORMAT_INT4: spec.format = tandem::HiddenFormat::kInt4; break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown hidden-state format ", static_cast<int>(codec.format())));
  }
  if (spec.format == tandem::HiddenFormat::kInt4) {
    spec.group_size = static_cast<int32_t>(std::min<uint32_t>(codec.group_size(), 1u << 20));
  }
  spec.zstd_level = static_cast<int32_t>(std::min<uint32_t>(codec.zstd_level(), 1000));
  absl::Status valid = spec.Validate();
  if (!valid.ok()) return valid;
  return spec;
}

void ToProto(const SamplingParams& params, Sampling* out) {
  out->set_temperature(params.temperature);
  out->set_top_k(params.top_k);
  out->set_top_p(params.top_p);
  out->set_seed(params.seed);
  out->set_vocab_limit(params.vocab_limit);
}

absl::StatusOr<SamplingParams> FromProto(const Sampling& sampling) {
  SamplingParams params;
  params.temperature = sampling.temperature();
  params.top_k = sampling.top_k();
  params.top_p = sampling.top_p() == 0.0f ? 1.0f : sampling.top_p();
  params.seed = sampling.seed();
  params.vocab_limit = sampling.vocab_limit();
  if (!std::isfinite(params.temperature) || !std::isfinite(params.top_p)) {
    return absl::InvalidArgumentError("sampling parameters must be finite");
  }
  absl::Status valid = params.Validate();
  if (!valid.ok()) return valid;
  return params;
}

void ToProto(const DraftToken& draft, Draft* out) {
  out->set_token_id(draft.token);
  out->mutable_ids()->Assign(draft.distribution.ids.begin(), draft.distribution.ids.end());
  out->mutable_probs()->Assign(draft.distribution.probs.begin(), draft.distribution.probs.end());
}

absl::StatusOr<DraftToken> FromProto(const Draft& draft, int64_t vocab_size) {
  if (draft.ids_size() > kMaxDraftEntries || draft.probs_size() > kMaxDraftEntries) {
    return absl::InvalidArgumentError(absl::StrCat(
        "draft distribution has ", std::max(draft.ids_size(), draft.probs_size()),
        " entries, at most ", kMaxDraftEntries, " are allowed"));
  }
  DraftToken out;
  out.token = draft.token_id();
  out.distribution.ids.assign(draft.ids().begin(), draft.ids().end());
  out.distribution.probs.assign(draft.probs().begin(), draft.probs().end());
  absl::Status valid = ValidateDraft(out.distribution, out.token, vocab_size);
  if (!valid.ok()) return valid;
  return out;
}

absl::Status EncodeRows(const at::Tensor& rows, const CodecSpec& spec, EncodedHidden* out) {
  try {
    if (!rows.defined() || rows.dim() != 2) {
      return absl::InvalidArgumentError("EncodeRows: rows must be [N, D]");
    }
    at::Tensor f = rows.detach().to(at::kFloat).contiguous();
    absl::StatusOr<std::string> data =
        EncodeHidden(f.data_ptr<float>(), f.size(0), f.size(1), spec);
    if (!data.ok()) return data.status();
    ToProto(spec, out->mutable_codec());
    out->set_rows(static_cast<uint32_t>(f.size(0)));
    out->set_dim(static_cast<uint32_t>(f.size(1)));
    out->set_data(std::move(*data));
    return absl::OkStatus();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("EncodeRows: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<at::Tensor> DecodeRows(const EncodedHidden& hidden, int64_t expected_dim,
                                      int64_t max_rows) {
  absl::StatusOr<CodecSpec> spec = FromProto(hidden.codec());
  if (!spec.ok()) return spec.status();
  if (hidden.rows() == 0) return absl::InvalidArgumentError("hidden states with no rows");
  if (hidden.rows() > static_cast<uint64_t>(max_rows)) {
    return absl::InvalidArgumentError(
        absl::StrCat(hidden.rows(), " rows in one message; at most ", max_rows, " accepted"));
  }
  if (static_cast<int64_t>(hidden.dim()) != expected_dim) {
    return absl::InvalidArgumentError(absl::StrCat("hidden states of dimension ", hidden.dim(),
                                                   "; the model's is ", expected_dim));
  }
  absl::StatusOr<DecodedHidden> decoded = DecodeHidden(hidden.data(), expected_dim, max_rows);
  if (!decoded.ok()) return decoded.status();
  if (decoded->rows != static_cast<int64_t>(hidden.rows()) ||
      decoded->spec.format != spec->format) {
    return absl::InvalidArgumentError(
        "the hidden-state buffer disagrees with its message (rows or format)");
  }
  for (float v : decoded->values) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError("a hidden state is not finite");
  }
  try {
    at::Tensor out = at::empty({decoded->rows, decoded->dim}, at::kFloat);
    std::copy(decoded->values.begin(), decoded->values.end(), out.data_ptr<float>());
    return out;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("DecodeRows: ", e.what_without_backtrace()));
  }
}

}  // namespace tandem::wire
