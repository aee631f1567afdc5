// CloudLink (the threaded driver of LinkCore) over the in-process transport:
// the test plays the server and checks what arrives and what the edge learns.
#include "tandem/edge/cloud_link.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "link/in_process_transport.h"

namespace tandem::edge {
namespace {

constexpr int64_t kDim = 8;

class CloudLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    peer_ = std::make_shared<link::InProcessPeer>();
    CloudOptions options;
    options.address = "in-process";
    options.codec = "fp32";
    options.request_timeout = absl::Milliseconds(400);
    options.reconnect_initial_backoff = absl::Milliseconds(10);
    options.reconnect_max_backoff = absl::Milliseconds(20);
    options.upload_max_delay = absl::Milliseconds(5);
    options.transport = [peer = peer_] { return link::MakeInProcessTransport(peer); };
    auto created = CloudLink::Create(options, 42, 2, {1, 2}, kDim);
    ASSERT_TRUE(created.ok()) << created.status();
    link_ = *std::move(created);
  }

  // The server's side of Open: expects it, answers Ack(held).
  void AcceptOpen(uint32_t held = 0, uint32_t branch = 0) {
    wire::ClientMessage m;
    ASSERT_TRUE(peer_->Receive(&m, absl::Now() + absl::Seconds(10)));
    ASSERT_TRUE(m.has_open()) << m.DebugString();
    wire::ServerMessage ack;
    ack.mutable_ack()->set_next_position(held);
    ack.mutable_ack()->set_branch(branch);
    peer_->Send(ack);
    ASSERT_TRUE(link_->WaitUntilConnected(absl::Now() + absl::Seconds(10)));
  }

  // Feeds a token at `p` whose row reaches S, and drafts the next one.
  void Step(int64_t p, bool ask, int32_t draft = 5) {
    link_->OnInput(p, std::vector<int32_t>{draft});
    at::Tensor row = at::randn({1, kDim});
    link_->OnContext(p, row);
    if (ask) {
      ContinueRequest r;
      r.position = p;
      r.hidden_at_split = row;
      r.draft_token = draft;
      ASSERT_TRUE(link_->Submit(r, absl::Now() + absl::Milliseconds(400)).ok());
    }
  }

  // Server side: reads messages until the Continue for `position`.
  wire::Continue NextContinue(int64_t position) {
    wire::ClientMessage m;
    while (peer_->Receive(&m, absl::Now() + absl::Seconds(10))) {
      if (m.has_continue_() && m.continue_().position() == position) return m.continue_();
    }
    ADD_FAILURE() << "no Continue for " << position;
    return {};
  }

  void Answer(const wire::Continue& c, int32_t token, wire::Verdict verdict, uint32_t branch) {
    wire::ServerMessage m;
    m.mutable_token()->set_request_id(c.request_id());
    m.mutable_token()->set_position(c.position());
    m.mutable_token()->set_token_id(token);
    m.mutable_token()->set_verdict(verdict);
    m.mutable_token()->set_branch(branch);
    peer_->Send(m);
  }

  CloudVerdict Verdict() {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      auto v = link_->TakeVerdicts(deadline);
      if (!v.empty()) {
        EXPECT_EQ(v.size(), 1u);
        return v.front();
      }
    }
    ADD_FAILURE() << "no verdict";
    return {};
  }

  std::shared_ptr<link::InProcessPeer> peer_;
  std::unique_ptr<CloudLink> link_;
};

TEST_F(CloudLinkTest, DraftsGoOutWithoutWaitingAndVerdictsComeBack) {
  link_->OnBegin(SequenceInfo{{}, 64});
  AcceptOpen();
  link_->OnInput(0, std::vector<int32_t>{1, 2, 3});
  link_->OnContext(0, at::randn({3, kDim}));
  Step(3, true);
  Step(4, true);  // a second draft before the first is answered
  const wire::Continue c3 = NextContinue(3);
  const wire::Continue c4 = NextContinue(4);
  EXPECT_EQ(c3.draft().token_id(), 5);
  EXPECT_EQ(link_->in_flight(), 2);
  Answer(c3, 5, wire::VERDICT_ACCEPTED, 0);
  CloudVerdict v = Verdict();
  EXPECT_TRUE(v.status.ok());
  EXPECT_TRUE(v.accepted);
  EXPECT_EQ(v.position, 3);
  Answer(c4, 9, wire::VERDICT_REJECTED, 1);
  v = Verdict();
  EXPECT_FALSE(v.accepted);
  EXPECT_EQ(v.token, 9);
  // The edge rolls back to 5 and drafts again: the new branch goes out.
  link_->OnTruncate(5);
  Step(5, true, 9);
  EXPECT_EQ(NextContinue(5).branch(), 1u);
  link_->OnFinish(6);
}

TEST_F(CloudLinkTest, NoAnswerMeansADeadlineVerdictAndTheLinkStaysUp) {
  link_->OnBegin(SequenceInfo{{}, 64});
  AcceptOpen();
  link_->OnInput(0, std::vector<int32_t>{1, 2});
  link_->OnContext(0, at::randn({2, kDim}));
  Step(2, true);
  NextContinue(2);
  const CloudVerdict v = Verdict();
  EXPECT_EQ(v.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(link_->connected());
  EXPECT_EQ(link_->stats().failed_requests, 1);
}

TEST_F(CloudLinkTest, LinkLossFailsDraftsInFlightAndResumesOnANewStream) {
  link_->OnBegin(SequenceInfo{{}, 64});
  AcceptOpen();
  link_->OnInput(0, std::vector<int32_t>{1, 2});
  link_->OnContext(0, at::randn({2, kDim}));
  Step(2, true);
  Step(3, true);
  NextContinue(3);
  peer_->Break();
  std::vector<CloudVerdict> verdicts;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (verdicts.size() < 2 && absl::Now() < deadline) {
    for (CloudVerdict& v : link_->TakeVerdicts(deadline)) verdicts.push_back(std::move(v));
  }
  ASSERT_EQ(verdicts.size(), 2u);
  for (const CloudVerdict& v : verdicts) {
    EXPECT_EQ(v.status.code(), absl::StatusCode::kUnavailable) << v.status;
  }
  // The link reconnects by itself and resumes where it was.
  wire::ClientMessage m;
  ASSERT_TRUE(peer_->Receive(&m, absl::Now() + absl::Seconds(10)));
  ASSERT_TRUE(m.has_open());
  EXPECT_EQ(m.open().resume_next_position(), 4u);
  EXPECT_EQ(peer_->streams(), 2);
}

}  // namespace
}  // namespace tandem::edge
namespace tandem::edge {
namespace {
TEST_F(CloudLinkTest, ADraftSubmittedBeforeTheFirstConnectionWaitsForIt) {
  link_->OnBegin(SequenceInfo{{}, 64});
  link_->OnInput(0, std::vector<int32_t>{1, 2, 3});
  link_->OnContext(0, at::randn({3, kDim}));
  ContinueRequest r;
  r.position = 2;
  r.hidden_at_split = at::randn({1, kDim});
  r.draft_token = 4;
  ASSERT_TRUE(link_->Submit(r, absl::Now() + absl::Seconds(5)).ok());
  AcceptOpen();
  const wire::Continue c = NextContinue(2);
  Answer(c, 4, wire::VERDICT_ACCEPTED, 0);
  const CloudVerdict v = Verdict();
  EXPECT_TRUE(v.status.ok()) << v.status;
  EXPECT_TRUE(v.accepted);
}
}  // namespace
}  // namespace tandem::edge
