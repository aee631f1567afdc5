#include "status_convert.h"

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "wire_convert.h"

namespace tandem::wire {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(
      static_cast<grpc::StatusCode>(StatusCodeFromWire(static_cast<int64_t>(status.code()))),
      std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(StatusCodeFromWire(static_cast<int64_t>(status.error_code())),
                      absl::StrCat(context, status.error_message()));
}

}  // namespace tandem::wire
