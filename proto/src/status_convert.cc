#include "status_convert.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace tandem::wire {
namespace {

constexpr int64_t kLastCode = static_cast<int64_t>(absl::StatusCode::kUnauthenticated);  // 16

std::string WithContext(absl::string_view context, absl::string_view message) {
  return context.empty() ? std::string(message) : absl::StrCat(context, message);
}

}  // namespace

absl::StatusCode StatusCodeFromWire(int64_t code) {
  if (code < 0 || code > kLastCode) return absl::StatusCode::kUnknown;
  return static_cast<absl::StatusCode>(code);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(
      static_cast<grpc::StatusCode>(StatusCodeFromWire(static_cast<int64_t>(status.code()))),
      std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(StatusCodeFromWire(static_cast<int64_t>(status.error_code())),
                      WithContext(context, status.error_message()));
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
  return absl::Status(code, WithContext(context, error.message()));
}

}  // namespace tandem::wire
