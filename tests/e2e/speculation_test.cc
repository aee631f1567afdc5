// Pipelined speculative verification over real gRPC, spoken by a raw client:
// Continues with drafts in flight, a rejection and its new branch, silence for
// the abandoned branch, and hostile drafts.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "loopback.h"
#include "raw_client.h"
#include "raw_messages.h"
#include "tandem/wire/tandem.grpc.pb.h"
#include "wire_convert.h"

namespace tandem::e2e {
namespace {

constexpr int kSplit = 4;

// The shipped model's rows at S for `ids` (what the edge uploads).
at::Tensor RowsAtSplit(const std::vector<int32_t>& ids) {
  at::InferenceMode guard;
  const Model& model = ShippedFullModel();
  std::vector<int64_t> all(ids.begin(), ids.end());
  auto hidden = model.Embed(at::tensor(all, at::kLong));
  EXPECT_TRUE(hidden.ok()) << hidden.status();
  auto out = model.ForwardLayers(0, kSplit, *hidden,
                                 at::arange(static_cast<int64_t>(all.size()), at::kLong), nullptr);
  EXPECT_TRUE(out.ok()) << out.status();
  return out->clone();
}

wire::ClientMessage Context(const at::Tensor& rows, int64_t first, int64_t count,
                            uint32_t branch) {
  wire::ClientMessage m;
  wire::Context* c = m.mutable_context();
  c->set_first_position(static_cast<uint32_t>(first));
  c->set_branch(branch);
  EncodeFp32(rows.narrow(0, first, count), c->mutable_hidden());
  return m;
}

// A Continue at `position` with a greedy draft (no distribution) unless
// `draft` < 0 (no draft at all).
wire::ClientMessage Continue(const at::Tensor& rows, int64_t position, uint64_t request_id,
                             uint32_t branch, int32_t draft) {
  wire::ClientMessage m;
  wire::Continue* c = m.mutable_continue_();
  c->set_request_id(request_id);
  c->set_position(static_cast<uint32_t>(position));
  c->set_branch(branch);
  EncodeFp32(rows.narrow(0, position, 1), c->mutable_hidden());
  if (draft >= 0) c->mutable_draft()->set_token_id(draft);
  return m;
}

wire::ServerMessage Next(RawClient& client) {
  wire::ServerMessage m;
  EXPECT_TRUE(client.Read(&m)) << "the stream ended";
  return m;
}

class Speculation : public ::testing::Test {
 protected:
  void SetUp() override {
    cloud::ServerOptions options;
    options.max_message_bytes = 16 << 20;  // room for a hostile million-entry draft
    server_ = StartServer(options);
    ASSERT_NE(server_, nullptr);
    prompt_ = Prompts(1, 12)[0];
    reference_ = FullGreedy(prompt_, 8);
    ASSERT_EQ(reference_.size(), 8u);
  }
  int64_t n() const { return static_cast<int64_t>(prompt_.size()); }
  std::vector<int32_t> With(std::vector<int32_t> tokens) const {
    std::vector<int32_t> ids = prompt_;
    ids.insert(ids.end(), tokens.begin(), tokens.end());
    return ids;
  }
  // Opens `id` and uploads the prompt's rows but the last one.
  void OpenWithPrompt(RawClient& client, const std::string& id) {
    client.Send(ShippedFp32Open(id, kSplit));
    wire::ServerMessage ack = Next(client);
    ASSERT_TRUE(ack.has_ack()) << ack.DebugString();
    EXPECT_EQ(ack.ack().branch(), 0u);
    client.Send(Context(RowsAtSplit(prompt_), 0, n() - 1, 0));
    ack = Next(client);
    ASSERT_TRUE(ack.has_ack()) << ack.DebugString();
    EXPECT_EQ(ack.ack().next_position(), n() - 1);
  }

  std::unique_ptr<cloud::CloudServer> server_;
  std::vector<int32_t> prompt_;
  std::vector<int32_t> reference_;  // the full model's greedy continuation
};

TEST_F(Speculation, ARejectedDraftStartsABranchAndSilencesTheOldOne) {
  RawClient client(server_->address());
  OpenWithPrompt(client, "speculation-session-0001");
  // Five Continues in flight: drafts 0 and 1 right, 2 wrong, 3 and 4 built on it.
  const int32_t wrong = (reference_[2] + 1) % 8192;
  const std::vector<int32_t> drafts = {reference_[0], reference_[1], wrong, 17, 18, 19, 20};
  at::Tensor rows = RowsAtSplit(With(drafts));  // positions up to n + 6
  for (int i = 0; i < 5; ++i) client.Send(Continue(rows, n() - 1 + i, 1 + i, 0, drafts[i]));

  for (int i = 0; i < 2; ++i) {
    wire::ServerMessage m = Next(client);
    ASSERT_TRUE(m.has_token()) << m.DebugString();
    EXPECT_EQ(m.token().request_id(), 1u + i);
    EXPECT_EQ(m.token().verdict(), wire::VERDICT_ACCEPTED);
    EXPECT_EQ(m.token().token_id(), reference_[i]);
    EXPECT_EQ(m.token().branch(), 0u);
  }
  wire::ServerMessage rejected = Next(client);
  ASSERT_TRUE(rejected.has_token()) << rejected.DebugString();
  EXPECT_EQ(rejected.token().request_id(), 3u);
  EXPECT_EQ(rejected.token().verdict(), wire::VERDICT_REJECTED);
  EXPECT_EQ(rejected.token().token_id(), reference_[2]);
  EXPECT_EQ(rejected.token().position(), n() + 1);
  EXPECT_EQ(rejected.token().branch(), 1u);

  // What the edge sent before it saw the rejection: context and a Continue of
  // branch 0. Then the new branch's first Continue. Its Token must be the next
  // message: the stream answers in order, and nothing answers the old branch.
  client.Send(Context(rows, n() + 4, 1, 0));
  client.Send(Continue(rows, n() + 5, 6, 0, 19));
  at::Tensor good = RowsAtSplit(
      With({reference_[0], reference_[1], reference_[2], reference_[3], reference_[4]}));
  client.Send(Continue(good, n() + 2, 7, 1, reference_[3]));
  wire::ServerMessage m = Next(client);
  ASSERT_TRUE(m.has_token()) << m.DebugString();
  EXPECT_EQ(m.token().request_id(), 7u);
  EXPECT_EQ(m.token().verdict(), wire::VERDICT_ACCEPTED);
  EXPECT_EQ(m.token().token_id(), reference_[3]);
  EXPECT_EQ(m.token().branch(), 1u);

  // New-branch context is acknowledged with the branch and what is held.
  client.Send(Context(good, n() + 3, 1, 1));
  m = Next(client);
  ASSERT_TRUE(m.has_ack()) << m.DebugString();
  EXPECT_EQ(m.ack().next_position(), n() + 4);
  EXPECT_EQ(m.ack().branch(), 1u);

  // A branch the server never announced is an error.
  client.Send(Continue(good, n() + 4, 8, 2, 5));
  wire::Error error;
  EXPECT_EQ(client.Finish(&error).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(error.message().find("branch"), std::string::npos) << error.message();
}

TEST_F(Speculation, ContinuesWithoutDraftsAreAnsweredAsBefore) {
  RawClient client(server_->address());
  OpenWithPrompt(client, "speculation-session-0002");
  at::Tensor rows = RowsAtSplit(With({reference_[0]}));
  client.Send(Continue(rows, n() - 1, 1, 0, /*draft=*/-1));
  client.Send(Continue(rows, n(), 2, 0, /*draft=*/-1));
  for (int i = 0; i < 2; ++i) {
    wire::ServerMessage m = Next(client);
    ASSERT_TRUE(m.has_token()) << m.DebugString();
    EXPECT_EQ(m.token().verdict(), wire::VERDICT_NONE);
    EXPECT_EQ(m.token().branch(), 0u);
    EXPECT_EQ(m.token().token_id(), reference_[i]);
  }
  EXPECT_TRUE(client.Finish().ok());
}

TEST_F(Speculation, HostileDraftsGetAClearErrorAndTheServerStaysUp) {
  const std::vector<std::pair<std::string, std::function<void(wire::Draft*)>>> hostile = {
      {"token outside the vocabulary", [](wire::Draft* d) { d->set_token_id(1 << 30); }},
      {"negative token", [](wire::Draft* d) { d->set_token_id(-5); }},
      {"id outside the vocabulary",
       [](wire::Draft* d) {
         d->set_token_id(3);
         d->add_ids(3), d->add_ids(1 << 30), d->add_probs(0.5f), d->add_probs(0.5f);
       }},
      {"NaN probability",
       [](wire::Draft* d) {
         d->set_token_id(3);
         d->add_ids(3), d->add_ids(4);
         d->add_probs(std::numeric_limits<float>::quiet_NaN()), d->add_probs(0.5f);
       }},
      {"repeated id",
       [](wire::Draft* d) {
         d->set_token_id(3);
         d->add_ids(3), d->add_ids(3), d->add_probs(0.5f), d->add_probs(0.5f);
       }},
      {"token not among the ids",
       [](wire::Draft* d) {
         d->set_token_id(9);
         d->add_ids(3), d->add_ids(4), d->add_probs(0.5f), d->add_probs(0.5f);
       }},
      {"probabilities not summing to 1",
       [](wire::Draft* d) {
         d->set_token_id(3);
         d->add_ids(3), d->add_ids(4), d->add_probs(0.5f), d->add_probs(0.1f);
       }},
      {"ids without probabilities", [](wire::Draft* d) { d->set_token_id(3), d->add_ids(3); }},
      {"a million entries",
       [](wire::Draft* d) {
         d->set_token_id(0);
         for (int i = 0; i < 1000000; ++i) {
           d->add_ids(i % 500);
           d->add_probs(1e-6f);
         }
       }},
  };
  at::Tensor rows = RowsAtSplit(prompt_);
  for (size_t i = 0; i < hostile.size(); ++i) {
    SCOPED_TRACE(hostile[i].first);
    RawClient client(server_->address());
    OpenWithPrompt(client, "speculation-hostile-" + std::to_string(1000 + i));
    wire::ClientMessage m = Continue(rows, n() - 1, 1, 0, -1);
    hostile[i].second(m.mutable_continue_()->mutable_draft());
    ASSERT_LT(m.ByteSizeLong(), size_t{16} << 20);
    client.Send(m);
    wire::Error error;
    EXPECT_EQ(client.Finish(&error).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(error.fatal());
    EXPECT_NE(error.message().find("draft"), std::string::npos) << error.message();
  }
  // A bad sampling override too.
  {
    RawClient client(server_->address());
    OpenWithPrompt(client, "speculation-hostile-sampling");
    wire::ClientMessage m = Continue(rows, n() - 1, 1, 0, -1);
    m.mutable_continue_()->mutable_sampling()->set_temperature(-1.0f);
    client.Send(m);
    EXPECT_EQ(client.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // The server still serves.
  RawClient client(server_->address());
  OpenWithPrompt(client, "speculation-session-after");
  client.Send(Continue(rows, n() - 1, 1, 0, reference_[0]));
  wire::ServerMessage m = Next(client);
  ASSERT_TRUE(m.has_token()) << m.DebugString();
  EXPECT_EQ(m.token().verdict(), wire::VERDICT_ACCEPTED);
  EXPECT_TRUE(client.Finish().ok());
}

}  // namespace
}  // namespace tandem::e2e
