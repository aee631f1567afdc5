// Shared helpers for the cloud tests: a random model split in two, the edge's
// rows at S, the full model's greedy reference, and a synchronous Continue.
#ifndef TANDEM_TESTS_CLOUD_CLOUD_FIXTURE_H_
#define TANDEM_TESTS_CLOUD_CLOUD_FIXTURE_H_

#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "tandem/cloud/cloud_model.h"
#include "tandem/cloud/context_manager.h"
#include "tandem/model.h"
#include "testing/tiny_model.h"

namespace tandem::cloud::testing {

// A random TinyGqaConfig model (L = 4), and the cloud's view of it at `split`.
struct SplitModel {
  std::shared_ptr<const Model> full;
  std::shared_ptr<const CloudModel> cloud;
  int64_t split = 2;
};

inline SplitModel MakeSplitModel(int64_t split = 2, uint64_t seed = 7) {
  SplitModel out;
  auto model = Model::CreateRandom(tandem::testing::TinyGqaConfig(), {}, seed);
  EXPECT_TRUE(model.ok()) << model.status();
  out.full = std::shared_ptr<const Model>(std::move(*model));
  auto cloud = CloudModel::FromModel(out.full, split);
  EXPECT_TRUE(cloud.ok()) << cloud.status();
  out.cloud = std::shared_ptr<const CloudModel>(std::move(*cloud));
  out.split = split;
  return out;
}

// What the edge uploads: the hidden states at S of `ids` at positions 0.. (full
// recompute of [0, S), no cache).
inline at::Tensor EdgeRows(const Model& m, int64_t split, const std::vector<int32_t>& ids) {
  at::InferenceMode guard;
  std::vector<int64_t> v(ids.begin(), ids.end());
  auto h = m.Embed(at::tensor(v, at::kLong));
  EXPECT_TRUE(h.ok()) << h.status();
  const int64_t n = static_cast<int64_t>(ids.size());
  auto out = m.ForwardLayers(0, split, *h, at::arange(n, at::kLong), nullptr);
  EXPECT_TRUE(out.ok()) << out.status();
  return out->clone();
}

// The full model's logits at every position of `ids` ([n, V]).
inline at::Tensor FullLogits(const Model& m, const std::vector<int32_t>& ids) {
  at::InferenceMode guard;
  std::vector<int64_t> v(ids.begin(), ids.end());
  auto h = m.Embed(at::tensor(v, at::kLong));
  const int64_t n = static_cast<int64_t>(ids.size());
  auto out = m.ForwardLayers(0, m.config().num_hidden_layers, *h, at::arange(n, at::kLong),
                             nullptr);
  EXPECT_TRUE(out.ok()) << out.status();
  auto logits = m.Logits(*out);
  EXPECT_TRUE(logits.ok()) << logits.status();
  return logits->clone();
}

// Greedy continuation of `prompt` by the full model: `steps` tokens.
inline std::vector<int32_t> FullGreedy(const Model& m, std::vector<int32_t> ids, int steps) {
  std::vector<int32_t> out;
  for (int i = 0; i < steps; ++i) {
    at::Tensor logits = FullLogits(m, ids);
    const int32_t t = static_cast<int32_t>(logits[-1].argmax().item<int64_t>());
    out.push_back(t);
    ids.push_back(t);
  }
  return out;
}

// Continue, waiting for the callback.
inline absl::StatusOr<ContinueResult> ContinueSync(ContextManager& cm, const std::string& id,
                                                   const std::string& owner, int64_t position,
                                                   const at::Tensor& row) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<ContinueResult>>>();
  std::future<absl::StatusOr<ContinueResult>> future = promise->get_future();
  absl::Status s = cm.Continue(id, owner, position, row,
                               [promise](absl::StatusOr<ContinueResult> r) {
                                 promise->set_value(std::move(r));
                               });
  if (!s.ok()) return s;
  return future.get();
}

// Serves `steps` greedy tokens for one session the way an edge would: the
// prompt's rows but the last as context, then Continue; each new token's row is
// recomputed with the full model's [0, S). Returns the tokens (and, if given,
// the logits of each step).
inline std::vector<int32_t> ServeGreedy(ContextManager& cm, const SplitModel& sm,
                                        const std::string& id, const std::string& owner,
                                        std::vector<int32_t> ids, int steps,
                                        std::vector<at::Tensor>* logits = nullptr) {
  std::vector<int32_t> tokens;
  const int64_t prompt = static_cast<int64_t>(ids.size());
  at::Tensor rows = EdgeRows(*sm.full, sm.split, ids);
  if (prompt > 1) {
    absl::Status s = cm.AddContext(id, owner, 0, rows.narrow(0, 0, prompt - 1));
    EXPECT_TRUE(s.ok()) << s;
  }
  for (int i = 0; i < steps; ++i) {
    const int64_t p = static_cast<int64_t>(ids.size()) - 1;
    at::Tensor row = EdgeRows(*sm.full, sm.split, ids)[p];
    auto r = ContinueSync(cm, id, owner, p, row);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) break;
    EXPECT_EQ(r->position, p);
    tokens.push_back(r->token);
    if (logits != nullptr) logits->push_back(r->logits);
    ids.push_back(r->token);
  }
  return tokens;
}

// Polls `done` until it holds or `timeout` passes.
template <typename F>
bool WaitFor(F done, absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

// Holds the scheduler thread inside a Continue callback (of the session
// "stall", owner "stall") until Release() or destruction, so that requests
// made meanwhile stay pending — a session with a pending Continue is busy.
// Tests only: real callbacks must not block. The stall session stays busy too
// (a second Continue of it waits behind the first).
class SchedulerStall {
 public:
  SchedulerStall(ContextManager& cm, const at::Tensor& row)
      : entered_(std::make_shared<absl::Notification>()),
        release_(std::make_shared<absl::Notification>()) {
    SessionOptions options;
    options.capacity = 2;
    auto opened = cm.Open("stall", "stall", options);
    EXPECT_TRUE(opened.ok()) << opened.status();
    auto entered = entered_;
    auto release = release_;
    absl::Status s = cm.Continue("stall", "stall", 0, row,
                                 [entered, release](absl::StatusOr<ContinueResult>) {
                                   entered->Notify();
                                   release->WaitForNotification();
                                 });
    EXPECT_TRUE(s.ok()) << s;
    entered_->WaitForNotification();
    s = cm.Continue("stall", "stall", 1, row, [](absl::StatusOr<ContinueResult>) {});
    EXPECT_TRUE(s.ok()) << s;
  }
  ~SchedulerStall() { Release(); }
  void Release() {
    if (!release_->HasBeenNotified()) release_->Notify();
  }

 private:
  std::shared_ptr<absl::Notification> entered_, release_;
};

// Collects one Continue's outcome.
struct Outcome {
  std::shared_ptr<std::promise<absl::StatusOr<ContinueResult>>> promise =
      std::make_shared<std::promise<absl::StatusOr<ContinueResult>>>();
  std::shared_future<absl::StatusOr<ContinueResult>> future = promise->get_future().share();
  ContinueCallback callback() {
    auto p = promise;
    return [p](absl::StatusOr<ContinueResult> r) { p->set_value(std::move(r)); };
  }
  absl::StatusOr<ContinueResult> get() const { return future.get(); }
};

// Deterministic prompts of varied lengths for session `i`.
inline std::vector<int32_t> Prompt(int i, int length) {
  std::vector<int32_t> ids;
  for (int k = 0; k < length; ++k) ids.push_back((7 * i + 13 * k + 3) % 97);
  return ids;
}

}  // namespace tandem::cloud::testing

#endif  // TANDEM_TESTS_CLOUD_CLOUD_FIXTURE_H_
