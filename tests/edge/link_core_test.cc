// LinkCore (the cloud link's policy, no I/O): driven with a controlled clock
// and a scripted server — connection, upload, pipelined drafts, rollbacks,
// resync and link loss.
#include "link/link_core.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tandem/wire/tandem.pb.h"
#include "wire_convert.h"

namespace tandem::edge::link {
namespace {

constexpr int64_t kDim = 8;
const absl::Time kT0 = absl::FromUnixSeconds(1000000);

class LinkCoreTest : public ::testing::Test {
 protected:
  LinkCoreTest() : core_(Options(), *ParseCodecSpec("fp32"), ModelIdentity{42, 2, {1, 2}, kDim}) {}

  static CloudOptions Options() {
    CloudOptions o;
    o.address = "test";
    o.upload_batch_rows = 4;
    o.upload_max_delay = absl::Milliseconds(20);
    o.request_timeout = absl::Seconds(1);
    return o;
  }

  // Begins a sequence with a prompt of `n` positions (rows 0..n-1 at S) and
  // connects: the Ack says the server holds nothing.
  void BeginAndConnect(int64_t n) {
    core_.Begin(SequenceInfo{{}, 128}, "session-id-0123456789", now_);
    std::vector<int32_t> ids(n, 7);
    core_.Input(0, ids);
    core_.Context(0, at::randn({n, kDim}), now_);
    LinkCore::Plan plan = core_.Poll(now_);
    ASSERT_EQ(plan.want, LinkCore::Want::kConnect);
    wire::ClientMessage open = core_.Opened(&stream_);
    ASSERT_TRUE(open.has_open());
    EXPECT_EQ(open.open().resume_next_position(), 0u);
    Ack(0, 0);
    ASSERT_TRUE(core_.ready());
  }

  void Ack(uint32_t next, uint32_t branch) {
    wire::ServerMessage m;
    m.mutable_ack()->set_next_position(next);
    m.mutable_ack()->set_branch(branch);
    core_.Received(stream_, m, now_);
  }

  // One decode step: feeds a token at position(), whose row reaches S; when
  // `ask`, submits a draft for it (the token after it).
  void Step(bool ask, int32_t draft = 5) {
    const int64_t p = position_;
    core_.Input(p, std::vector<int32_t>{draft});
    core_.Context(p, at::randn({1, kDim}), now_);
    ++position_;
    if (ask) {
      ContinueRequest r;
      r.position = p;
      r.hidden_at_split = at::randn({1, kDim});
      r.draft_token = draft;
      ASSERT_TRUE(core_.Submit(r, now_ + absl::Seconds(1), now_).ok());
    }
  }

  void Token(int64_t position, int32_t token, wire::Verdict verdict, uint32_t branch) {
    wire::ServerMessage m;
    wire::Token* t = m.mutable_token();
    t->set_position(static_cast<uint32_t>(position));
    t->set_token_id(token);
    t->set_verdict(verdict);
    t->set_branch(branch);
    t->set_request_id(request_ids_.count(position) ? request_ids_[position] : 999);
    core_.Received(stream_, m, now_);
  }

  // Polls and returns what was written; remembers request ids by position.
  std::vector<wire::ClientMessage> Flush() {
    LinkCore::Plan plan = core_.Poll(now_);
    for (const auto& m : plan.writes) {
      if (m.has_continue_()) request_ids_[m.continue_().position()] = m.continue_().request_id();
    }
    return plan.writes;
  }

  static std::vector<int64_t> ContinuePositions(const std::vector<wire::ClientMessage>& ms) {
    std::vector<int64_t> out;
    for (const auto& m : ms) if (m.has_continue_()) out.push_back(m.continue_().position());
    return out;
  }
  // [first, end) of every Context in order, and the branches they carry.
  static std::vector<std::pair<int64_t, int64_t>> ContextRanges(
      const std::vector<wire::ClientMessage>& ms, uint32_t expect_branch) {
    std::vector<std::pair<int64_t, int64_t>> out;
    for (const auto& m : ms) {
      if (!m.has_context()) continue;
      EXPECT_EQ(m.context().branch(), expect_branch);
      const int64_t rows = m.context().has_hidden() ? m.context().hidden().rows()
                                                    : m.context().tokens().ids_size();
      out.push_back({m.context().first_position(), m.context().first_position() + rows});
    }
    return out;
  }

  absl::Time now_ = kT0;
  LinkCore core_;
  uint64_t stream_ = 0;
  int64_t position_ = 4;
  std::map<int64_t, uint64_t> request_ids_;
};

TEST_F(LinkCoreTest, ContextIsBatchedAndHeldBackRowGoesWithItsContinue) {
  BeginAndConnect(4);
  // The prompt's last row is held back (a Continue for it may follow).
  EXPECT_TRUE(Flush().empty());
  now_ += absl::Milliseconds(25);
  auto writes = Flush();
  EXPECT_EQ(ContextRanges(writes, 0), (std::vector<std::pair<int64_t, int64_t>>{{0, 3}}));
  Step(/*ask=*/true);  // the row of position 4, and a draft for position 5
  writes = Flush();
  EXPECT_EQ(ContextRanges(writes, 0), (std::vector<std::pair<int64_t, int64_t>>{{3, 4}}));
  ASSERT_EQ(ContinuePositions(writes), std::vector<int64_t>{4});
  const wire::Continue& c = writes.back().continue_();
  EXPECT_EQ(c.draft().token_id(), 5);
  EXPECT_EQ(c.hidden().rows(), 1u);
}

TEST_F(LinkCoreTest, PipelinedDraftsAreSentWithoutWaitingAndAcceptedInOrder) {
  BeginAndConnect(4);
  for (int i = 0; i < 6; ++i) Step(/*ask=*/i % 2 == 0);  // drafts at 4, 6, 8
  auto writes = Flush();
  EXPECT_EQ(ContinuePositions(writes), (std::vector<int64_t>{4, 6, 8}));
  EXPECT_EQ(core_.in_flight(), 3);
  Token(4, 5, wire::VERDICT_ACCEPTED, 0);
  Token(6, 5, wire::VERDICT_ACCEPTED, 0);
  auto verdicts = core_.TakeVerdicts();
  ASSERT_EQ(verdicts.size(), 2u);
  EXPECT_TRUE(verdicts[0].accepted);
  EXPECT_EQ(verdicts[1].position, 6);
  EXPECT_EQ(core_.in_flight(), 1);
  EXPECT_EQ(core_.stats().drafts_accepted, 2);
}

// Rejection at the first, a middle and the last in-flight draft.
class RejectAt : public LinkCoreTest, public ::testing::WithParamInterface<int> {};

TEST_P(RejectAt, UploadsStopAtTheRollbackUntilTheEdgeTruncatesThenUseTheNewBranch) {
  BeginAndConnect(4);
  for (int i = 0; i < 6; ++i) Step(/*ask=*/i % 2 == 0);  // drafts at 4, 6, 8; rows to 9
  Flush();
  const int64_t rejected = 4 + 2 * GetParam();
  for (int64_t p = 4; p < rejected; p += 2) Token(p, 5, wire::VERDICT_ACCEPTED, 0);
  Token(rejected, 77, wire::VERDICT_REJECTED, 1);
  auto verdicts = core_.TakeVerdicts();
  ASSERT_FALSE(verdicts.empty());
  EXPECT_FALSE(verdicts.back().accepted);
  EXPECT_EQ(verdicts.back().token, 77);
  EXPECT_EQ(core_.branch(), 1u);
  // The edge decodes more on the abandoned branch before it sees the verdict:
  // nothing of it may leave.
  Step(/*ask=*/true);
  now_ += absl::Milliseconds(50);
  EXPECT_TRUE(Flush().empty());
  // Roll back to the replaced token's position; the later drafts are abandoned.
  core_.Truncate(rejected + 1);
  EXPECT_EQ(core_.in_flight(), 0);
  position_ = rejected + 1;
  Step(/*ask=*/true, 77);
  auto writes = Flush();
  EXPECT_EQ(ContinuePositions(writes), std::vector<int64_t>{rejected + 1});
  EXPECT_EQ(writes.back().continue_().branch(), 1u);
  EXPECT_TRUE(ContextRanges(writes, 1).empty());  // row rejected+1 went with its Continue
}

INSTANTIATE_TEST_SUITE_P(FirstMiddleLast, RejectAt, ::testing::Values(0, 1, 2));

// A new sequence opens a session the server has never seen: its rows and
// drafts follow the Open without waiting for the Ack, on branch 0 even when
// the previous sequence ended on a later branch.
TEST_F(LinkCoreTest, ANewSequenceSendsRightAfterItsOpenOnBranchZero) {
  BeginAndConnect(4);
  Step(true);  // draft at 4
  Flush();
  Token(4, 70, wire::VERDICT_REJECTED, 3);
  ASSERT_EQ(core_.branch(), 3u);
  core_.Finish();

  core_.Begin(SequenceInfo{{}, 128}, "session-id-second-sequence", now_);
  core_.Input(0, std::vector<int32_t>(4, 7));
  core_.Context(0, at::randn({4, kDim}), now_);
  LinkCore::Plan plan = core_.Poll(now_);
  ASSERT_EQ(plan.want, LinkCore::Want::kDisconnect);  // the old stream is retired
  core_.Disconnected(now_);
  plan = core_.Poll(now_);
  ASSERT_EQ(plan.want, LinkCore::Want::kConnect);
  wire::ClientMessage open = core_.Opened(&stream_);
  EXPECT_EQ(open.open().session_id(), "session-id-second-sequence");
  EXPECT_TRUE(core_.ready()) << "no Ack needed for a fresh session";
  EXPECT_EQ(core_.branch(), 0u);
  position_ = 4;
  Step(true);
  auto writes = Flush();
  EXPECT_EQ(ContextRanges(writes, 0), (std::vector<std::pair<int64_t, int64_t>>{{0, 4}}));
  ASSERT_EQ(ContinuePositions(writes), std::vector<int64_t>{4});
  EXPECT_EQ(writes.back().continue_().branch(), 0u);

  // A later stream of the same sequence resumes: it waits for the Ack.
  core_.StreamBroken(stream_, now_);
  core_.Disconnected(now_);
  now_ += absl::Seconds(1);
  plan = core_.Poll(now_);
  ASSERT_EQ(plan.want, LinkCore::Want::kConnect);
  open = core_.Opened(&stream_);
  EXPECT_GT(open.open().resume_next_position(), 0u);
  EXPECT_FALSE(core_.ready());
}

TEST_F(LinkCoreTest, TwoRollbacksInOneWindow) {
  BeginAndConnect(4);
  for (int i = 0; i < 4; ++i) Step(true);  // drafts at 4..7
  Flush();
  Token(4, 70, wire::VERDICT_REJECTED, 1);
  core_.Truncate(5);
  position_ = 5;
  Step(true, 70);  // 5
  Step(true);      // 6
  auto writes = Flush();
  EXPECT_EQ(ContinuePositions(writes), (std::vector<int64_t>{5, 6}));
  Token(5, 5, wire::VERDICT_REJECTED, 2);  // branch 1's draft at 5 rejected too
  core_.Truncate(6);
  position_ = 6;
  Step(true, 5);
  writes = Flush();
  EXPECT_EQ(ContinuePositions(writes), std::vector<int64_t>{6});
  EXPECT_EQ(writes.back().continue_().branch(), 2u);
  EXPECT_EQ(core_.stats().drafts_rejected, 2);
}

TEST_F(LinkCoreTest, LateRejectionReuploadsTheEdgesOwnRowsOnTheNewBranch) {
  BeginAndConnect(4);
  Step(true);   // draft at 4
  Step(false);  // 5
  Step(true);   // draft at 6
  Flush();
  // The edge gives up on 4 (deadline): its draft stands.
  now_ += absl::Milliseconds(1001);
  Flush();
  auto verdicts = core_.TakeVerdicts();
  ASSERT_EQ(verdicts.size(), 2u);  // both requests timed out
  EXPECT_EQ(verdicts[0].status.code(), absl::StatusCode::kDeadlineExceeded);
  Step(true);  // draft at 7 (new request, sent now)
  Flush();
  // Then the cloud rejects 4 after all: the server dropped everything after 4,
  // so rows 5.. go again on branch 1, and the request at 7 with them.
  Token(4, 99, wire::VERDICT_REJECTED, 1);
  EXPECT_TRUE(core_.TakeVerdicts().empty());  // nobody waits for 4 any more
  auto writes = Flush();
  EXPECT_EQ(ContextRanges(writes, 1), (std::vector<std::pair<int64_t, int64_t>>{{5, 7}}));
  EXPECT_EQ(ContinuePositions(writes), std::vector<int64_t>{7});
  EXPECT_EQ(core_.stats().late_rejections, 1);
}

TEST_F(LinkCoreTest, ResyncDuringARollbackReplaysOnlyUpToTheRollback) {
  BeginAndConnect(4);
  for (int i = 0; i < 4; ++i) Step(true);  // drafts at 4..7
  Flush();
  Token(4, 5, wire::VERDICT_ACCEPTED, 0);
  Token(5, 70, wire::VERDICT_REJECTED, 1);
  // The server lost the session meanwhile (evicted): replay from 0, epoch 1.
  wire::ServerMessage m;
  m.mutable_resync()->set_epoch(1);
  m.mutable_resync()->set_next_position(0);
  m.mutable_resync()->set_branch(0);
  core_.Received(stream_, m, now_);
  auto writes = Flush();
  // Rows 0..5 go again (the fence at 6 holds); no request is pending below it.
  auto ranges = ContextRanges(writes, 0);
  ASSERT_FALSE(ranges.empty());
  EXPECT_EQ(ranges.front().first, 0);
  EXPECT_EQ(ranges.back().second, 6);
  EXPECT_TRUE(ContinuePositions(writes).empty());
  core_.Truncate(6);
  position_ = 6;
  Step(true, 70);
  writes = Flush();
  EXPECT_EQ(ContinuePositions(writes), std::vector<int64_t>{6});
}

TEST_F(LinkCoreTest, LinkLossFailsEveryRequestInFlightAndReconnectsWithBackoff) {
  BeginAndConnect(4);
  for (int i = 0; i < 3; ++i) Step(true);
  Flush();
  core_.StreamBroken(stream_, now_);
  auto verdicts = core_.TakeVerdicts();
  ASSERT_EQ(verdicts.size(), 3u);
  for (const auto& v : verdicts) EXPECT_EQ(v.status.code(), absl::StatusCode::kUnavailable);
  LinkCore::Plan plan = core_.Poll(now_);
  EXPECT_EQ(plan.want, LinkCore::Want::kDisconnect);
  core_.Disconnected(now_);
  // While reconnecting, a new draft is decided by the edge at once.
  core_.Input(position_, std::vector<int32_t>{1});
  core_.Context(position_, at::randn({1, kDim}), now_);
  ContinueRequest r;
  r.position = position_;
  r.hidden_at_split = at::randn({1, kDim});
  EXPECT_EQ(core_.Submit(r, now_ + absl::Seconds(1), now_).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(core_.Poll(now_).want, LinkCore::Want::kNothing);  // backing off
  now_ += absl::Milliseconds(60);
  EXPECT_EQ(core_.Poll(now_).want, LinkCore::Want::kConnect);
  wire::ClientMessage open = core_.Opened(&stream_);
  EXPECT_EQ(open.open().resume_next_position(), 7u);  // what was sent before
}

TEST_F(LinkCoreTest, AnErrorAboutARequestFailsItWithTheCloudsCodeAndReason) {
  BeginAndConnect(4);
  for (int i = 0; i < 2; ++i) Step(true);
  Flush();
  auto error = [&](int64_t position, int32_t code) {
    wire::ServerMessage m;
    m.mutable_error()->set_code(code);
    m.mutable_error()->set_message("no such draft");
    m.mutable_error()->set_request_id(request_ids_.at(position));
    core_.Received(stream_, m, now_);
  };
  error(4, static_cast<int32_t>(absl::StatusCode::kInvalidArgument));
  // Code 0 from a confused peer still fails the request (an OK verdict would
  // pass token 0 off as the cloud's answer).
  error(5, 0);
  auto verdicts = core_.TakeVerdicts();
  ASSERT_EQ(verdicts.size(), 2u);
  EXPECT_EQ(verdicts[0].position, 4);
  EXPECT_EQ(verdicts[0].status, absl::InvalidArgumentError("cloud: no such draft"));
  EXPECT_EQ(verdicts[1].position, 5);
  EXPECT_EQ(verdicts[1].status, absl::UnknownError("cloud: no such draft"));
  EXPECT_TRUE(core_.ready()) << "a non-fatal error leaves the stream up";
}

// The Continue seam is honest: what goes on the wire for a request is the row,
// the draft and the sampling parameters passed to Submit — not the history's
// row at that position nor the sequence's sampling — including when the
// request is sent again after a resync.
TEST_F(LinkCoreTest, ContinueCarriesTheSubmittedRowDraftAndSamplingNotTheHistorys) {
  BeginAndConnect(4);
  const at::Tensor history_row = at::full({1, kDim}, 1.0f);
  const at::Tensor submitted_row = at::arange(kDim, at::kFloat).reshape({1, kDim}) * 0.5f;
  core_.Input(4, std::vector<int32_t>{5});
  core_.Context(4, history_row, now_);
  ContinueRequest r;
  r.position = 4;
  r.hidden_at_split = submitted_row;
  r.draft_token = 11;
  r.draft.ids = {11, 3};
  r.draft.probs = {0.75f, 0.25f};
  r.sampling.temperature = 0.7f;
  r.sampling.top_k = 3;
  r.sampling.seed = 99;
  ASSERT_TRUE(core_.Submit(r, now_ + absl::Seconds(1), now_).ok());

  auto check = [&](const std::vector<wire::ClientMessage>& writes) {
    const wire::Continue* c = nullptr;
    for (const auto& m : writes) if (m.has_continue_()) c = &m.continue_();
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->position(), 4u);
    auto row = wire::DecodeRows(c->hidden(), kDim, 1);
    ASSERT_TRUE(row.ok()) << row.status();
    EXPECT_TRUE(at::equal(*row, submitted_row));  // fp32: exact
    EXPECT_FALSE(at::equal(*row, history_row));
    EXPECT_EQ(c->draft().token_id(), 11);
    ASSERT_EQ(c->draft().ids_size(), 2);
    EXPECT_EQ(c->draft().ids(1), 3);
    EXPECT_FLOAT_EQ(c->draft().probs(0), 0.75f);
    auto sampling = wire::FromProto(c->sampling());
    ASSERT_TRUE(sampling.ok()) << sampling.status();
    EXPECT_FLOAT_EQ(sampling->temperature, 0.7f);  // the sequence samples greedily
    EXPECT_EQ(sampling->top_k, 3);
    EXPECT_EQ(sampling->seed, 99u);
  };
  ASSERT_NO_FATAL_FAILURE(check(Flush()));

  // The server lost everything after position 2: the rows before the request
  // come from the history again, the request with what was submitted.
  wire::ServerMessage m;
  m.mutable_resync()->set_epoch(1);
  m.mutable_resync()->set_next_position(2);
  core_.Received(stream_, m, now_);
  auto writes = Flush();
  EXPECT_EQ(ContextRanges(writes, 0), (std::vector<std::pair<int64_t, int64_t>>{{2, 4}}));
  ASSERT_NO_FATAL_FAILURE(check(writes));
}

TEST_F(LinkCoreTest, GoingAwayDropsTheStreamAtOnceAndReconnectsWithBackoff) {
  BeginAndConnect(4);
  Step(true);
  Flush();
  Token(4, 5, wire::VERDICT_ACCEPTED, 0);  // answered before the drain
  Step(true);
  Flush();
  wire::ServerMessage going_away;
  going_away.mutable_going_away()->set_reason("the server is shutting down");
  going_away.mutable_going_away()->set_grace_ms(5000);
  core_.Received(stream_, going_away, now_);
  // No failure was seen, yet the stream is dropped now (not after a deadline),
  // and the request still waiting is the edge's to decide.
  auto verdicts = core_.TakeVerdicts();
  ASSERT_EQ(verdicts.size(), 2u);
  EXPECT_TRUE(verdicts[0].status.ok());
  EXPECT_EQ(verdicts[1].position, 5);
  EXPECT_EQ(verdicts[1].status.code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(core_.ready());
  LinkCore::Plan plan = core_.Poll(now_);
  EXPECT_EQ(plan.want, LinkCore::Want::kDisconnect);
  EXPECT_FALSE(plan.polite) << "a Close would end the session the next server may resume";
  core_.Disconnected(now_);
  EXPECT_EQ(core_.Poll(now_).want, LinkCore::Want::kNothing);  // backing off
  now_ += absl::Milliseconds(60);
  EXPECT_EQ(core_.Poll(now_).want, LinkCore::Want::kConnect);
  wire::ClientMessage open = core_.Opened(&stream_);
  EXPECT_EQ(open.open().resume_next_position(), 6u);  // resumes what was sent
  EXPECT_NE(core_.stats().last_error.find("going away"), std::string::npos);
}

TEST_F(LinkCoreTest, DepthOfRequestsIsUnboundedHereTheWindowIsTheSessions) {
  // The core sends every submitted draft; SpeculationWindow (the session)
  // decides how many to submit. 32 drafts in flight all go out in order.
  BeginAndConnect(4);
  for (int i = 0; i < 32; ++i) Step(true);
  auto positions = ContinuePositions(Flush());
  ASSERT_EQ(positions.size(), 32u);
  for (size_t i = 1; i < positions.size(); ++i) EXPECT_EQ(positions[i], positions[i - 1] + 1);
}

}  // namespace
}  // namespace tandem::edge::link
