// The protocol's Error message <-> absl::Status (proto/src/wire_convert.h),
// shared by the edge's LinkCore and the cloud server. Here because tandem_proto
// has no test binary of its own and the edge tests link it without gRPC.
#include <cstdint>
#include <limits>

#include <gtest/gtest.h>

#include "tandem/wire/tandem.pb.h"
#include "wire_convert.h"

namespace tandem::wire {
namespace {

TEST(WireStatus, CodesInsideGoogleRpcKeepTheirValueOthersAreUnknown) {
  for (int64_t code = 0; code <= 16; ++code) {
    EXPECT_EQ(static_cast<int64_t>(StatusCodeFromWire(code)), code);
  }
  for (int64_t code : {int64_t{-1}, int64_t{17}, int64_t{std::numeric_limits<int32_t>::max()},
                       std::numeric_limits<int64_t>::min()}) {
    EXPECT_EQ(StatusCodeFromWire(code), absl::StatusCode::kUnknown) << code;
  }
}

TEST(WireStatus, ErrorRoundTripsCodeAndMessageWithTheContextInFront) {
  Error error;
  ToProto(absl::ResourceExhaustedError("too many streams"), /*request_id=*/7, /*fatal=*/true,
          &error);
  EXPECT_EQ(error.code(), static_cast<int32_t>(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(error.message(), "too many streams");
  EXPECT_EQ(error.request_id(), 7u);
  EXPECT_TRUE(error.fatal());
  EXPECT_EQ(FromProto(error), absl::ResourceExhaustedError("too many streams"));
  EXPECT_EQ(FromProto(error, "cloud: "), absl::ResourceExhaustedError("cloud: too many streams"));
}

TEST(WireStatus, AnErrorIsNeverOkAndAnOutOfRangeCodeIsUnknown) {
  Error error;
  error.set_message("said nothing useful");
  error.set_code(0);
  EXPECT_EQ(FromProto(error), absl::UnknownError("said nothing useful"));
  error.set_code(99);
  EXPECT_EQ(FromProto(error), absl::UnknownError("said nothing useful"));
  error.set_code(-4);
  EXPECT_EQ(FromProto(error).code(), absl::StatusCode::kUnknown);
}

}  // namespace
}  // namespace tandem::wire
