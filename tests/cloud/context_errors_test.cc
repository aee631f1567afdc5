// ContextManager refuses bad input up front, and one session's errors never
// touch another's results.
#include <limits>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "cloud_fixture.h"
#include "tandem/cloud/context_manager.h"

namespace tandem::cloud {
namespace {

using testing::ContinueSync;
using testing::EdgeRows;
using testing::FullGreedy;
using testing::MakeSplitModel;
using testing::Prompt;
using testing::ServeGreedy;

class ContextErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cm_.Open("a", "alice", {}).ok());
    rows_ = EdgeRows(*sm_.full, sm_.split, Prompt(1, 8));
  }
  // The other session, served start to finish while `a` misbehaves, must equal
  // the full model.
  void ExpectOtherSessionUnaffected() {
    ASSERT_TRUE(cm_.Open("b", "bob", {}).ok());
    EXPECT_EQ(ServeGreedy(cm_, sm_, "b", "bob", Prompt(2, 7), 4),
              FullGreedy(*sm_.full, Prompt(2, 7), 4));
  }
  ContinueCallback Unexpected() {
    return [](absl::StatusOr<ContinueResult>) { ADD_FAILURE() << "callback of a refused Continue"; };
  }

  testing::SplitModel sm_ = MakeSplitModel();
  ContextManager cm_{sm_.cloud, {}};
  at::Tensor rows_;
};

TEST_F(ContextErrors, OutOfOrderAndDuplicatePositions) {
  auto out_of_order = cm_.AddContext("a", "alice", 1, rows_.narrow(0, 0, 2));
  EXPECT_EQ(out_of_order.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out_of_order.message().find("out of order"), std::string::npos) << out_of_order;
  ASSERT_TRUE(cm_.AddContext("a", "alice", 0, rows_.narrow(0, 0, 3)).ok());
  auto duplicate = cm_.AddContext("a", "alice", 2, rows_.narrow(0, 2, 2));
  EXPECT_EQ(duplicate.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(duplicate.message().find("duplicate"), std::string::npos) << duplicate;
  EXPECT_EQ(cm_.Continue("a", "alice", 2, rows_[2], Unexpected()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cm_.Continue("a", "alice", 5, rows_[5], Unexpected()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cm_.AddTokens("a", "alice", 7, {1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*cm_.Held("a", "alice"), 3);
  // The session carries on from where it was.
  ASSERT_TRUE(cm_.AddContext("a", "alice", 3, rows_.narrow(0, 3, 4)).ok());
  auto r = ContinueSync(cm_, "a", "alice", 7, rows_[7]);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token, FullGreedy(*sm_.full, Prompt(1, 8), 1)[0]);
  ExpectOtherSessionUnaffected();
}

TEST_F(ContextErrors, MalformedRows) {
  const int64_t d = sm_.cloud->hidden_size();
  EXPECT_EQ(cm_.AddContext("a", "alice", 0, at::randn({2, d + 1})).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cm_.AddContext("a", "alice", 0, at::randn({d})).code(),
            absl::StatusCode::kInvalidArgument);  // context rows must be [N, D]
  EXPECT_EQ(cm_.AddContext("a", "alice", 0, at::randn({1, 2, d})).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cm_.AddContext("a", "alice", 0, at::zeros({0, d})).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cm_.AddContext("a", "alice", 0, at::ones({2, d}, at::kLong)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cm_.AddContext("a", "alice", 0, at::Tensor()).code(),
            absl::StatusCode::kInvalidArgument);
  at::Tensor nan = rows_.narrow(0, 0, 3).clone();
  nan[1][4] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(cm_.AddContext("a", "alice", 0, nan).code(), absl::StatusCode::kInvalidArgument);
  at::Tensor inf = rows_.narrow(0, 0, 3).clone();
  inf[2][0] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(cm_.AddContext("a", "alice", 0, inf).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cm_.Continue("a", "alice", 0, nan[1], Unexpected()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cm_.Continue("a", "alice", 0, rows_.narrow(0, 0, 2), Unexpected()).code(),
            absl::StatusCode::kInvalidArgument);  // one row only
  EXPECT_EQ(cm_.Continue("a", "alice", 0, rows_[0], nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cm_.AddTokens("a", "alice", 0, {1, 97}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cm_.AddTokens("a", "alice", 0, {-1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cm_.AddTokens("a", "alice", 0, {}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*cm_.Held("a", "alice"), 0);
  EXPECT_EQ(cm_.stats().rows_received, 0);
  // Other float dtypes are converted.
  ASSERT_TRUE(cm_.AddContext("a", "alice", 0, rows_.narrow(0, 0, 7).to(at::kDouble)).ok());
  auto r = ContinueSync(cm_, "a", "alice", 7, rows_[7].to(at::kHalf).to(at::kFloat));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectOtherSessionUnaffected();
}

TEST_F(ContextErrors, CapacityOverflow) {
  SessionOptions small;
  small.capacity = 4;
  ASSERT_TRUE(cm_.Open("small", "alice", small).ok());
  EXPECT_EQ(cm_.AddContext("small", "alice", 0, rows_.narrow(0, 0, 5)).code(),
            absl::StatusCode::kOutOfRange);
  ASSERT_TRUE(cm_.AddContext("small", "alice", 0, rows_.narrow(0, 0, 3)).ok());
  auto r = ContinueSync(cm_, "small", "alice", 3, rows_[3]);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(cm_.Continue("small", "alice", 4, rows_[4], Unexpected()).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(cm_.AddTokens("small", "alice", 4, {1}).code(), absl::StatusCode::kOutOfRange);
  // Capacity beyond the server's limit, or negative, is refused at Open.
  SessionOptions huge;
  huge.capacity = 129;  // TinyGqa: max_position_embeddings = 128
  EXPECT_EQ(cm_.Open("huge", "alice", huge).status().code(), absl::StatusCode::kInvalidArgument);
  huge.capacity = -1;
  EXPECT_EQ(cm_.Open("huge", "alice", huge).status().code(), absl::StatusCode::kInvalidArgument);
  ExpectOtherSessionUnaffected();
}

TEST_F(ContextErrors, BadOpenRequests) {
  EXPECT_EQ(cm_.Open("", "alice", {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cm_.Open(std::string(300, 'x'), "alice", {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  SessionOptions bad;
  bad.sampling.temperature = -1.0f;
  EXPECT_EQ(cm_.Open("c", "alice", bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cm_.stats().sessions, 1);
}

TEST_F(ContextErrors, WrongOwnerIsPermissionDenied) {
  ASSERT_TRUE(cm_.AddContext("a", "alice", 0, rows_.narrow(0, 0, 3)).ok());
  const auto kDenied = absl::StatusCode::kPermissionDenied;
  EXPECT_EQ(cm_.Open("a", "mallory", {}).status().code(), kDenied);
  EXPECT_EQ(cm_.AddContext("a", "mallory", 3, rows_.narrow(0, 3, 1)).code(), kDenied);
  EXPECT_EQ(cm_.AddTokens("a", "mallory", 3, {1}).code(), kDenied);
  EXPECT_EQ(cm_.Continue("a", "mallory", 3, rows_[3], Unexpected()).code(), kDenied);
  EXPECT_EQ(cm_.Held("a", "mallory").status().code(), kDenied);
  EXPECT_EQ(cm_.Truncate("a", "mallory", 0).status().code(), kDenied);
  EXPECT_EQ(cm_.Close("a", "mallory").code(), kDenied);
  // Nothing of alice's changed.
  EXPECT_EQ(*cm_.Held("a", "alice"), 3);
  ASSERT_TRUE(cm_.AddContext("a", "alice", 3, rows_.narrow(0, 3, 4)).ok());
  auto r = ContinueSync(cm_, "a", "alice", 7, rows_[7]);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token, FullGreedy(*sm_.full, Prompt(1, 8), 1)[0]);
  ExpectOtherSessionUnaffected();
}

TEST_F(ContextErrors, UnknownSessionIsNotFound) {
  const auto kNotFound = absl::StatusCode::kNotFound;
  EXPECT_EQ(cm_.AddContext("nope", "alice", 0, rows_.narrow(0, 0, 1)).code(), kNotFound);
  EXPECT_EQ(cm_.AddTokens("nope", "alice", 0, {1}).code(), kNotFound);
  EXPECT_EQ(cm_.Continue("nope", "alice", 0, rows_[0], Unexpected()).code(), kNotFound);
  EXPECT_EQ(cm_.Held("nope", "alice").status().code(), kNotFound);
  EXPECT_EQ(cm_.Truncate("nope", "alice", 0).status().code(), kNotFound);
  EXPECT_EQ(cm_.Close("nope", "alice").code(), kNotFound);
  ASSERT_TRUE(cm_.Close("a", "alice").ok());
  EXPECT_EQ(cm_.Held("a", "alice").status().code(), kNotFound);
  // A closed id can be opened again, by anyone, from scratch.
  auto reopened = cm_.Open("a", "bob", {});
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ(*reopened, 0);
}

}  // namespace
}  // namespace tandem::cloud
