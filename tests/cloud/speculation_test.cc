// ContextManager: Continues that carry a draft (speculative verification),
// speculation branches and the rollback at a rejected draft.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>

#include "cloud_fixture.h"
#include "tandem/cloud/context_manager.h"

namespace tandem::cloud {
namespace {

using testing::EdgeRows;
using testing::FullGreedy;
using testing::MakeSplitModel;
using testing::Outcome;
using testing::Prompt;
using testing::SchedulerStall;
using testing::ServeGreedy;
using testing::SplitModel;

constexpr int kVocab = 97;  // TinyGqaConfig

ContinueRequest Request(int64_t position, const at::Tensor& row, uint32_t branch,
                        std::optional<int32_t> draft) {
  ContinueRequest r;
  r.position = position;
  r.row = row;
  r.branch = branch;
  if (draft.has_value()) r.draft = DraftToken{*draft, {}};
  return r;
}

// The edge's pipelined Continues: `ids` are the tokens so far, the session
// holds rows [0, held); queues the rows [held, ids.size() - 1) as context, then
// one Continue per draft at positions ids.size() - 1 + i, each row built on
// the drafts before it (greedy drafts). With `stall`, everything is queued
// behind a stalled scheduler, so that it runs as ONE batch.
std::vector<Outcome> QueueDrafts(ContextManager& cm, const SplitModel& sm, const std::string& id,
                                 const std::vector<int32_t>& ids, int64_t held,
                                 const std::vector<int32_t>& drafts, uint32_t branch,
                                 bool stall = true) {
  std::vector<int32_t> all = ids;
  all.insert(all.end(), drafts.begin(), drafts.end());
  at::Tensor rows = EdgeRows(*sm.full, sm.split, all);
  std::optional<SchedulerStall> stalled;
  if (stall) {
    (void)cm.Truncate("stall", "stall", 0);  // a stall of an earlier call (NotFound if none)
    stalled.emplace(cm, rows[0]);
  }
  const int64_t first = static_cast<int64_t>(ids.size()) - 1;
  if (first > held) {
    auto r = cm.AddContext(id, "o", held, rows.narrow(0, held, first - held), branch);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r.ok() && r->stale);
  }
  std::vector<Outcome> out(drafts.size());
  for (size_t i = 0; i < drafts.size(); ++i) {
    const int64_t p = first + static_cast<int64_t>(i);
    absl::Status s = cm.Continue(id, "o", Request(p, rows[p], branch, drafts[i]), out[i].callback());
    EXPECT_TRUE(s.ok()) << s;
    if (!s.ok()) out[i].promise->set_value(s);  // the callback will not come
  }
  return out;
}

// The outcome's result; a failure (and a default result) if it is an error.
ContinueResult Ok(const Outcome& o) {
  absl::StatusOr<ContinueResult> r = o.get();
  if (!r.ok()) {
    ADD_FAILURE() << r.status();
    return ContinueResult{};
  }
  return *r;
}

int64_t HeldBy(const ContextManager& cm, const std::string& id) {
  auto where = cm.Position(id, "o");
  EXPECT_TRUE(where.ok()) << where.status();
  return where.ok() ? where->held : -1;
}

bool IsReady(const Outcome& o) {
  return o.future.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

// Max |a - b| over two cache snapshots of equal shapes; +inf if shapes differ.
float CacheDistance(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  if (a.size() != b.size()) return INFINITY;
  float worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].sizes() != b[i].sizes()) return INFINITY;
    worst = std::max(worst, (a[i] - b[i]).abs().max().item<float>());
  }
  return worst;
}

class Speculation : public ::testing::Test {
 protected:
  void SetUp() override {
    sm_ = MakeSplitModel();
    prompt_ = Prompt(3, 7);
    reference_ = FullGreedy(*sm_.full, prompt_, 8);
  }
  int64_t n() const { return static_cast<int64_t>(prompt_.size()); }
  // The prompt and the first `k` reference tokens.
  std::vector<int32_t> Reference(int k) const {
    std::vector<int32_t> ids = prompt_;
    ids.insert(ids.end(), reference_.begin(), reference_.begin() + k);
    return ids;
  }

  SplitModel sm_;
  std::vector<int32_t> prompt_;
  std::vector<int32_t> reference_;  // the full model's greedy continuation
};

TEST_F(Speculation, DraftsEqualToTheCloudsTokensAreAccepted) {
  ContextManager cm(sm_.cloud, {});
  ASSERT_TRUE(cm.Open("s", "o", {}).ok());
  const int k = 5;
  std::vector<int32_t> drafts(reference_.begin(), reference_.begin() + k);
  std::vector<Outcome> out = QueueDrafts(cm, sm_, "s", prompt_, 0, drafts, 0);
  for (int i = 0; i < k; ++i) {
    auto r = out[i].get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->position, n() - 1 + i);
    EXPECT_EQ(r->verdict, Verdict::kAccepted);
    EXPECT_EQ(r->token, reference_[i]);
    EXPECT_EQ(r->branch, 0u);
  }
  auto where = cm.Position("s", "o");
  ASSERT_TRUE(where.ok());
  EXPECT_EQ(where->held, n() - 1 + k);
  EXPECT_EQ(where->branch, 0u);
  const ContextStats stats = cm.stats();
  EXPECT_EQ(stats.drafts_accepted, k);
  EXPECT_EQ(stats.drafts_rejected, 0);
  EXPECT_EQ(stats.superseded, 0);
  // One batch: the stall session's first Continue ran alone, its second with
  // all of this session's work.
  EXPECT_EQ(stats.batches, 2);
}

// A rejection at the first, a middle and the last of five Continues in one
// batch: earlier ones accepted, the rejected one answered with the cloud's
// token and the new branch, later ones superseded; the session keeps [0, p].
TEST_F(Speculation, RejectionInABatchSupersedesTheRest) {
  const int k = 5;
  for (int j : {0, 2, k - 1}) {
    SCOPED_TRACE(::testing::Message() << "rejected draft " << j);
    ContextManager cm(sm_.cloud, {});
    ASSERT_TRUE(cm.Open("s", "o", {}).ok());
    std::vector<int32_t> drafts(reference_.begin(), reference_.begin() + k);
    drafts[j] = (drafts[j] + 1) % kVocab;
    std::vector<Outcome> out = QueueDrafts(cm, sm_, "s", prompt_, 0, drafts, 0);
    for (int i = 0; i < k; ++i) {
      auto r = out[i].get();
      if (i < j) {
        ASSERT_TRUE(r.ok()) << r.status();
        EXPECT_EQ(r->verdict, Verdict::kAccepted);
        EXPECT_EQ(r->branch, 0u);
      } else if (i == j) {
        ASSERT_TRUE(r.ok()) << r.status();
        EXPECT_EQ(r->verdict, Verdict::kRejected);
        EXPECT_EQ(r->token, reference_[j]);
        EXPECT_EQ(r->position, n() - 1 + j);
        EXPECT_EQ(r->branch, 1u);
      } else {
        EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << i;
      }
    }
    auto where = cm.Position("s", "o");
    ASSERT_TRUE(where.ok());
    EXPECT_EQ(where->held, n() + j);  // positions [0, p] with p = n - 1 + j
    EXPECT_EQ(where->branch, 1u);
    const ContextStats stats = cm.stats();
    EXPECT_EQ(stats.drafts_accepted, j);
    EXPECT_EQ(stats.drafts_rejected, 1);
    EXPECT_EQ(stats.superseded, k - 1 - j);
    EXPECT_EQ(stats.rows_rolled_back, k - 1 - j);
    EXPECT_EQ(stats.queued_rows, 0);

    // The new branch goes on from the cloud's token.
    std::vector<Outcome> next =
        QueueDrafts(cm, sm_, "s", Reference(j + 1), n() + j, {reference_[j + 1]}, 1, false);
    auto r = next[0].get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->verdict, Verdict::kAccepted);
    EXPECT_EQ(r->token, reference_[j + 1]);
    EXPECT_EQ(r->branch, 1u);
  }
}

TEST_F(Speculation, StaleBranchRowsAreDroppedAndNewerOnesRefused) {
  ContextManager cm(sm_.cloud, {});
  ASSERT_TRUE(cm.Open("s", "o", {}).ok());
  std::vector<int32_t> drafts = {reference_[0], (reference_[1] + 1) % kVocab};
  std::vector<Outcome> out = QueueDrafts(cm, sm_, "s", prompt_, 0, drafts, 0);
  ASSERT_EQ(Ok(out[1]).verdict, Verdict::kRejected);
  const int64_t held = n() + 1;  // [0, n]

  // What the edge had in flight before it saw the rejection: rows of branch 0
  // built on the wrong draft.
  std::vector<int32_t> wrong = prompt_;
  wrong.insert(wrong.end(), drafts.begin(), drafts.end());
  wrong.push_back(5);
  at::Tensor rows = EdgeRows(*sm_.full, sm_.split, wrong);
  auto receipt = cm.AddContext("s", "o", held, rows.narrow(0, held, 1), /*branch=*/0);
  ASSERT_TRUE(receipt.ok()) << receipt.status();
  EXPECT_TRUE(receipt->stale);
  EXPECT_EQ(receipt->session.held, held);
  EXPECT_EQ(receipt->session.branch, 1u);
  // Old-branch context at the position the new branch also needs: dropped too.
  receipt = cm.AddContext("s", "o", held - 1, rows.narrow(0, held - 1, 1), /*branch=*/0);
  ASSERT_TRUE(receipt.ok());
  EXPECT_TRUE(receipt->stale);
  // Token ids too.
  receipt = cm.AddTokens("s", "o", held, {5}, /*branch=*/0);
  ASSERT_TRUE(receipt.ok());
  EXPECT_TRUE(receipt->stale);
  // A stale Continue is answered Cancelled before Continue returns, not queued.
  Outcome stale;
  ASSERT_TRUE(cm.Continue("s", "o", Request(held + 1, rows[held + 1], 0, 7), stale.callback()).ok());
  ASSERT_TRUE(IsReady(stale));
  EXPECT_EQ(stale.get().status().code(), absl::StatusCode::kCancelled);
  // A branch the session has not reached: refused, nothing queued.
  Outcome ahead;
  EXPECT_EQ(cm.Continue("s", "o", Request(held, rows[held], 2, std::nullopt), ahead.callback())
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cm.AddContext("s", "o", held, rows.narrow(0, held, 1), 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  // The plain (branch 0) forms are stale now as well.
  EXPECT_TRUE(cm.AddContext("s", "o", held, rows.narrow(0, held, 1)).ok());

  ContextStats stats = cm.stats();
  EXPECT_EQ(stats.stale_dropped, 5);
  EXPECT_EQ(stats.queued_rows, 0);
  auto where = cm.Position("s", "o");
  ASSERT_TRUE(where.ok());
  EXPECT_EQ(where->held, held);

  // The new branch's rows are taken and served (the cloud's token at n + 1).
  std::vector<Outcome> next =
      QueueDrafts(cm, sm_, "s", Reference(3), held, {reference_[3]}, 1, false);
  auto r = next[0].get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token, reference_[3]);
  EXPECT_EQ(r->verdict, Verdict::kAccepted);
  EXPECT_EQ(HeldBy(cm, "s"), n() + 3);
}

// Two batches in flight: the first all accepted, the second with a rejection;
// then the Continues the edge had sent after it arrive — all stale.
TEST_F(Speculation, RejectionAcrossBatches) {
  ContextManager cm(sm_.cloud, {});
  ASSERT_TRUE(cm.Open("s", "o", {}).ok());
  std::vector<Outcome> first =
      QueueDrafts(cm, sm_, "s", prompt_, 0, {reference_[0], reference_[1], reference_[2]}, 0);
  for (Outcome& o : first) ASSERT_EQ(Ok(o).verdict, Verdict::kAccepted);
  const int32_t wrong = (reference_[4] + 3) % kVocab;
  std::vector<Outcome> second =
      QueueDrafts(cm, sm_, "s", Reference(3), n() + 2, {reference_[3], wrong, 11, 12}, 0);
  EXPECT_EQ(Ok(second[0]).verdict, Verdict::kAccepted);
  auto rejected = second[1].get();
  ASSERT_TRUE(rejected.ok());
  EXPECT_EQ(rejected->verdict, Verdict::kRejected);
  EXPECT_EQ(rejected->token, reference_[4]);
  EXPECT_EQ(rejected->branch, 1u);
  EXPECT_EQ(second[2].get().status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(second[3].get().status().code(), absl::StatusCode::kCancelled);
  // Arriving late, after the rejection: stale.
  std::vector<int32_t> late = Reference(4);
  late.insert(late.end(), {wrong, 11, 12, 13});
  at::Tensor rows = EdgeRows(*sm_.full, sm_.split, late);
  Outcome after;
  ASSERT_TRUE(cm.Continue("s", "o", Request(n() + 6, rows[n() + 6], 0, 13), after.callback()).ok());
  EXPECT_EQ(after.get().status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(HeldBy(cm, "s"), n() + 4);

  // The session serves the reference from the cloud's token on.
  std::vector<Outcome> third =
      QueueDrafts(cm, sm_, "s", Reference(5), n() + 4, {reference_[5], reference_[6]}, 1, false);
  EXPECT_EQ(Ok(third[0]).token, reference_[5]);
  EXPECT_EQ(Ok(third[1]).token, reference_[6]);
  EXPECT_EQ(Ok(third[1]).verdict, Verdict::kAccepted);
}

// After a forced mismatch, the [S, L) KV cache equals that of a session that
// took the cloud's token in the first place — right after the rollback and
// after going on along the new branch.
TEST_F(Speculation, AfterARejectionTheCacheEqualsTheCloudsOwnPath) {
  ContextManager cm(sm_.cloud, {});
  ASSERT_TRUE(cm.Open("spec", "o", {}).ok());
  ASSERT_TRUE(cm.Open("ref", "o", {}).ok());
  const int j = 2;
  std::vector<int32_t> drafts(reference_.begin(), reference_.begin() + 5);
  drafts[j] = (drafts[j] + 1) % kVocab;
  std::vector<Outcome> out = QueueDrafts(cm, sm_, "spec", prompt_, 0, drafts, 0);
  ASSERT_EQ(Ok(out[j]).verdict, Verdict::kRejected);

  // The reference session: no drafts, the cloud's own tokens, one at a time.
  EXPECT_EQ(ServeGreedy(cm, sm_, "ref", "o", prompt_, j + 1),
            std::vector<int32_t>(reference_.begin(), reference_.begin() + j + 1));
  auto spec = cm.CacheSnapshot("spec", "o");
  auto ref = cm.CacheSnapshot("ref", "o");
  ASSERT_TRUE(spec.ok() && ref.ok());
  ASSERT_EQ(spec->size(), 4u);  // layers [2, 4) x (keys, values)
  EXPECT_EQ((*spec)[0].size(1), n() + j);
  EXPECT_LT(CacheDistance(*spec, *ref), 1e-5);

  // Both go on with the same tokens.
  std::vector<Outcome> more = QueueDrafts(cm, sm_, "spec", Reference(j + 1), n() + j,
                                          {reference_[j + 1], reference_[j + 2]}, 1, false);
  EXPECT_EQ(Ok(more[1]).token, reference_[j + 2]);
  std::vector<int32_t> ref_ids = Reference(j + 1);
  at::Tensor rows = EdgeRows(*sm_.full, sm_.split, Reference(j + 3));
  for (int64_t p = n() + j; p < n() + j + 2; ++p) {
    Outcome o;
    ASSERT_TRUE(cm.Continue("ref", "o", p, rows[p], o.callback()).ok());
    ASSERT_TRUE(o.get().ok());
  }
  spec = cm.CacheSnapshot("spec", "o");
  ref = cm.CacheSnapshot("ref", "o");
  ASSERT_TRUE(spec.ok() && ref.ok());
  EXPECT_EQ((*spec)[0].size(1), n() + j + 2);
  EXPECT_LT(CacheDistance(*spec, *ref), 1e-5);
}

// Old-branch rows keep arriving, from another thread than the scheduler's,
// around the rejecting batch: whether they were queued before it started (run,
// then rolled back), while it ran (dropped with the queue) or after it
// (stale), the session ends at [0, p] on branch 1 with the cloud's own cache.
// Which interleavings occur depends on timing (session_table_rollback_test.cc
// forces the middle one).
TEST_F(Speculation, RowsRacingARejectionNeverSurviveIt) {
  ContextManager cm(sm_.cloud, {});
  ASSERT_TRUE(cm.Open("ref", "o", {}).ok());
  ServeGreedy(cm, sm_, "ref", "o", prompt_, 1);
  auto ref = cm.CacheSnapshot("ref", "o");
  ASSERT_TRUE(ref.ok());
  const int32_t wrong = (reference_[0] + 1) % kVocab;
  std::vector<int32_t> ids = prompt_;
  ids.push_back(wrong);
  for (int k = 0; k < 40; ++k) ids.push_back((k * 7 + 1) % kVocab);
  at::Tensor rows = EdgeRows(*sm_.full, sm_.split, ids);
  for (int round = 0; round < 10; ++round) {
    const std::string id = "race" + std::to_string(round);
    ASSERT_TRUE(cm.Open(id, "o", {}).ok());
    ASSERT_TRUE(cm.AddContext(id, "o", 0, rows.narrow(0, 0, n() - 1), 0).ok());
    Outcome rejected;
    ASSERT_TRUE(cm.Continue(id, "o", Request(n() - 1, rows[n() - 1], 0, wrong),
                            rejected.callback())
                    .ok());
    std::vector<Outcome> later;
    int64_t next = n();
    while (next + 1 < rows.size(0)) {
      auto receipt = cm.AddContext(id, "o", next, rows.narrow(0, next, 1), 0);
      ASSERT_TRUE(receipt.ok()) << receipt.status();
      if (receipt->stale) break;
      ++next;
      later.emplace_back();
      ASSERT_TRUE(cm.Continue(id, "o", Request(next, rows[next], 0, ids[next + 1]),
                              later.back().callback())
                      .ok());
      ++next;
    }
    auto r = rejected.get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->verdict, Verdict::kRejected);
    EXPECT_EQ(r->token, reference_[0]);
    for (Outcome& o : later) EXPECT_EQ(o.get().status().code(), absl::StatusCode::kCancelled);
    auto where = cm.Position(id, "o");
    ASSERT_TRUE(where.ok());
    EXPECT_EQ(where->held, n());
    EXPECT_EQ(where->branch, 1u);
    auto spec = cm.CacheSnapshot(id, "o");
    ASSERT_TRUE(spec.ok());
    EXPECT_LT(CacheDistance(*spec, *ref), 1e-5);
  }
  EXPECT_EQ(cm.stats().queued_rows, 0);
  EXPECT_TRUE(cm.Drain(absl::Now() + absl::Seconds(10)));
}

TEST_F(Speculation, AGreedyDraftUnderSamplingIsVerifiedAgainstTheSessionsDistribution) {
  ContextManager cm(sm_.cloud, {});
  SessionOptions options;
  options.sampling.temperature = 1.0f;
  options.sampling.seed = 5;
  options.return_logits = true;
  ASSERT_TRUE(cm.Open("s", "o", options).ok());
  at::Tensor rows = EdgeRows(*sm_.full, sm_.split, prompt_);
  ASSERT_TRUE(cm.AddContext("s", "o", 0, rows.narrow(0, 0, n() - 1), 0).ok());
  Outcome o;
  ASSERT_TRUE(cm.Continue("s", "o", Request(n() - 1, rows[n() - 1], 0, 4), o.callback()).ok());
  auto r = o.get();
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_NE(r->verdict, Verdict::kNone);
  EXPECT_EQ(r->verdict == Verdict::kAccepted, r->token == 4);
  // The reported probability is the token's under the session's distribution.
  const float expected = at::softmax(r->logits, -1)[r->token].item<float>();
  EXPECT_NEAR(r->probability, expected, 1e-5);
}

TEST_F(Speculation, ASamplingOverrideAppliesToOneTokenAndKeepsTheGenerator) {
  ContextManager cm(sm_.cloud, {});
  SessionOptions options;
  options.sampling.temperature = 1.5f;
  options.sampling.seed = 9;
  options.return_logits = true;
  ASSERT_TRUE(cm.Open("a", "o", options).ok());
  ASSERT_TRUE(cm.Open("b", "o", options).ok());
  // a: position n-1 greedy by override, then n sampled by the session's params.
  at::Tensor rows = EdgeRows(*sm_.full, sm_.split, Reference(1));
  ASSERT_TRUE(cm.AddContext("a", "o", 0, rows.narrow(0, 0, n() - 1), 0).ok());
  ContinueRequest greedy = Request(n() - 1, rows[n() - 1], 0, std::nullopt);
  greedy.sampling = SamplingParams{};  // temperature 0
  Outcome first;
  ASSERT_TRUE(cm.Continue("a", "o", std::move(greedy), first.callback()).ok());
  auto r = first.get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token, reference_[0]);
  EXPECT_EQ(r->verdict, Verdict::kNone);
  Outcome second;
  ASSERT_TRUE(cm.Continue("a", "o", Request(n(), rows[n()], 0, std::nullopt), second.callback())
                  .ok());
  // b: the same rows, one sampled token: the generator's first draw, as a's
  // second was (greedy draws nothing, and the session's params came back).
  ASSERT_TRUE(cm.AddContext("b", "o", 0, rows.narrow(0, 0, n()), 0).ok());
  Outcome twin;
  ASSERT_TRUE(cm.Continue("b", "o", Request(n(), rows[n()], 0, std::nullopt), twin.callback())
                  .ok());
  EXPECT_EQ(Ok(second).token, Ok(twin).token);
  EXPECT_NEAR(Ok(second).probability, Ok(twin).probability, 1e-6);
  // The probability is at temperature 1.5: the session's, not the override's.
  const float at_temperature =
      at::softmax(Ok(second).logits / 1.5f, -1)[Ok(second).token].item<float>();
  EXPECT_NEAR(Ok(second).probability, at_temperature, 1e-5);
}

TEST_F(Speculation, BadDraftsAndOverridesAreInvalidArgument) {
  ContextManager cm(sm_.cloud, {});
  ASSERT_TRUE(cm.Open("s", "o", {}).ok());
  at::Tensor rows = EdgeRows(*sm_.full, sm_.split, prompt_);
  ASSERT_TRUE(cm.AddContext("s", "o", 0, rows.narrow(0, 0, n() - 1), 0).ok());
  auto code = [&](ContinueRequest request) {
    return cm.Continue("s", "o", std::move(request), [](absl::StatusOr<ContinueResult>) {})
        .code();
  };
  const auto bad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(code(Request(n() - 1, rows[n() - 1], 0, kVocab)), bad);
  EXPECT_EQ(code(Request(n() - 1, rows[n() - 1], 0, -1)), bad);
  ContinueRequest q = Request(n() - 1, rows[n() - 1], 0, 3);
  q.draft->distribution = {{3, 4}, {0.5f, NAN}};
  EXPECT_EQ(code(q), bad);
  q.draft->distribution = {{3, 400}, {0.5f, 0.5f}};
  EXPECT_EQ(code(q), bad);
  q.draft->distribution.ids.assign(65, 3);
  q.draft->distribution.probs.assign(65, 1.0f / 65);
  EXPECT_EQ(code(q), bad);
  ContinueRequest s = Request(n() - 1, rows[n() - 1], 0, std::nullopt);
  s.sampling = SamplingParams{};
  s.sampling->top_p = 2.0f;
  EXPECT_EQ(code(s), bad);
  // Nothing was queued: the position is still free.
  EXPECT_EQ(HeldBy(cm, "s"), n() - 1);
  EXPECT_EQ(cm.stats().queued_rows, n() - 1);
}

}  // namespace
}  // namespace tandem::cloud
