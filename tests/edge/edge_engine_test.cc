// EdgeEngine / EdgeSequence: the decode step of DESIGN.md on a random tiny model
// (4 layers, split S = 3, exits at 1, 2, 3). The central property is exactness:
// whatever mix of early exits happened, the KV cache and the hidden states
// handed to the sink equal a plain forward of layers [0, S).
#include "tandem/edge/edge_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <vector>

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "testing/tiny_model.h"

namespace tandem::edge {
namespace {

constexpr double kNever = std::numeric_limits<double>::infinity();
constexpr int64_t kSplit = 3;

struct Fixture {
  std::shared_ptr<const Model> model;
  std::shared_ptr<const ExitHeads> heads;
};

Fixture MakeParts(uint64_t seed = 5) {
  Fixture f;
  auto model = Model::CreateRandom(testing::TinyGqaConfig(), {}, seed);
  EXPECT_TRUE(model.ok()) << model.status();
  auto heads = ExitHeads::Create(**model, {1, 2, 3}, /*adapter_rank=*/2, seed);
  EXPECT_TRUE(heads.ok()) << heads.status();
  // Make the adapters non-trivial so the heads differ from one another.
  for (auto& [name, t] : (*heads)->NamedParameters()) {
    if (name.find("adapter.up") != std::string::npos) t.normal_(0.0, 0.3);
  }
  f.model = std::move(*model);
  f.heads = std::move(*heads);
  return f;
}

std::unique_ptr<EdgeEngine> MakeEngine(const Fixture& f, std::map<int64_t, double> thresholds,
                                       StandaloneFallback fallback = StandaloneFallback::kDeepest) {
  ExitPolicy policy;
  policy.thresholds = std::move(thresholds);
  policy.fallback = fallback;
  auto engine = EdgeEngine::FromParts(f.model, f.heads, kSplit, policy);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::move(*engine) : nullptr;
}

std::vector<int32_t> Prompt() { return {1, 17, 33, 8, 64}; }

// Runs Start + `steps` Steps, feeding back each token; returns every decision
// and appends the fed ids to `fed`.
std::vector<StepResult> Decode(EdgeSequence& seq, int steps, std::vector<int32_t>* fed,
                            const SamplingParams& sampling = {}) {
  std::vector<StepResult> out;
  *fed = Prompt();
  auto r = seq.Start(*fed, sampling);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return out;
  out.push_back(*r);
  for (int i = 0; i < steps; ++i) {
    fed->push_back(out.back().token);
    r = seq.Step(out.back().token);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) break;
    out.push_back(*r);
  }
  return out;
}

// Reference: layers [0, S) run as one batch over `ids` with a fresh cache.
struct Reference {
  std::unique_ptr<KVCache> cache;
  at::Tensor hidden_at_split;  // [T, D]
};
Reference PlainForward(const Model& model, const std::vector<int32_t>& ids) {
  Reference ref;
  const int64_t n = static_cast<int64_t>(ids.size());
  at::Tensor t = at::empty({n}, at::kLong);
  for (int64_t i = 0; i < n; ++i) t[i] = ids[i];
  ref.cache = model.NewCache(model.config().max_position_embeddings, 0, kSplit).value();
  ref.hidden_at_split =
      model.ForwardLayers(0, kSplit, model.Embed(t).value(), at::arange(n, at::kLong),
                          ref.cache.get())
          .value();
  return ref;
}

// Largest |difference| between the sequence's cache and the reference over the
// positions both hold in every layer.
double MaxCacheError(const KVCache& got, const KVCache& want, int64_t positions) {
  double err = 0.0;
  for (int64_t l = 0; l < kSplit; ++l) {
    EXPECT_EQ(got.length(l), positions) << "layer " << l;
    const int64_t n = std::min(got.length(l), positions);
    err = std::max(err, (got.keys(l).narrow(1, 0, n) - want.keys(l).narrow(1, 0, n))
                            .abs().max().item<double>());
    err = std::max(err, (got.values(l).narrow(1, 0, n) - want.values(l).narrow(1, 0, n))
                            .abs().max().item<double>());
  }
  return err;
}

// Threshold at quantile q of an exit's confidence over a plain forward of
// random tokens, so that roughly (1 - q) of the tokens pass there.
double Quantile(const Fixture& f, int64_t layer, double q) {
  at::Tensor ids = at::randint(3, 97, {64}, at::kLong);
  at::Tensor h = f.model->ForwardLayers(0, layer, f.model->Embed(ids).value(),
                                        at::arange(64, at::kLong), nullptr)
                     .value();
  at::Tensor conf = Confidence(f.heads->Logits(*f.model, layer, h).value(),
                               ConfidenceMeasure::kMaxProb)
                        .first;
  return at::quantile(conf, q).item<double>();
}

TEST(EdgeSequence, MixedExitsKeepTheKvCacheExact) {
  at::InferenceMode guard;
  at::manual_seed(0);
  Fixture f = MakeParts();
  auto engine =
      MakeEngine(f, {{1, Quantile(f, 1, 0.6)}, {2, Quantile(f, 2, 0.5)}, {3, kNever}});
  RecordingSink sink;
  auto seq = engine->NewSequence(0, &sink).value();
  SamplingParams sampling;
  sampling.temperature = 1.0f;  // varied tokens, so varied confidences
  sampling.seed = 11;
  std::vector<int32_t> fed;
  std::vector<StepResult> steps = Decode(*seq, 60, &fed, sampling);
  ASSERT_EQ(steps.size(), 61u);

  std::map<int64_t, int> by_layer;
  int early_then_earlier = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    ++by_layer[steps[i].exit_layer];
    if (i > 0 && steps[i - 1].exit_layer == 2 && steps[i].exit_layer == 1) ++early_then_earlier;
  }
  ASSERT_GT(by_layer[1], 0) << "no token exited at layer 1";
  ASSERT_GT(by_layer[2], 0) << "no token exited at layer 2";
  ASSERT_GT(by_layer[3], 0) << "every token exited early";
  EXPECT_GT(early_then_earlier, 0) << "the exit-at-2-then-at-1 case did not occur";

  ASSERT_TRUE(seq->Flush().ok());
  EXPECT_EQ(seq->pending_rows(), 0);
  Reference ref = PlainForward(*f.model, fed);
  const double err = MaxCacheError(seq->cache(), *ref.cache, static_cast<int64_t>(fed.size()));
  EXPECT_LT(err, 1e-5);
  RecordProperty("max_cache_error", std::to_string(err));
  std::printf("[ mixed exits %d/%d/%d ] max |KV - plain forward| = %.3g\n", by_layer[1],
              by_layer[2], by_layer[3], err);

  // The sink saw every position once, in order, equal to the plain forward.
  EXPECT_TRUE(sink.in_order());
  ASSERT_EQ(sink.next_position(), static_cast<int64_t>(fed.size()));
  EXPECT_LT((sink.Rows() - ref.hidden_at_split).abs().max().item<double>(), 1e-5);
}

TEST(EdgeSequence, WithoutEarlyExitsTheSinkGetsThePlainForward) {
  at::InferenceMode guard;
  Fixture f = MakeParts();
  // max_prob never exceeds 1: thresholds above it never pass.
  auto engine = MakeEngine(f, {{1, 1.5}, {2, 1.5}, {3, 1.5}});
  RecordingSink sink;
  auto seq = engine->NewSequence(0, &sink).value();
  std::vector<int32_t> fed;
  std::vector<StepResult> steps = Decode(*seq, 20, &fed);
  for (const StepResult& s : steps) {
    EXPECT_EQ(s.source, TokenSource::kFallback);
    EXPECT_EQ(s.exit_layer, kSplit);
  }
  EXPECT_EQ(seq->pending_rows(), 0);
  Reference ref = PlainForward(*f.model, fed);
  ASSERT_EQ(sink.next_position(), static_cast<int64_t>(fed.size()));
  EXPECT_TRUE(sink.in_order());
  EXPECT_LT((sink.Rows() - ref.hidden_at_split).abs().max().item<double>(), 1e-5);
  // The prompt arrives as one batch, then one row per step.
  EXPECT_EQ(sink.row_counts().front(), static_cast<int64_t>(Prompt().size()));
  EXPECT_EQ(seq->bytes_to_sink(),
            static_cast<int64_t>(fed.size()) * f.model->config().hidden_size * 4);
}

TEST(EdgeSequence, ZeroThresholdsExitEveryTokenAtTheFirstExit) {
  at::InferenceMode guard;
  Fixture f = MakeParts();
  auto engine = MakeEngine(f, {{1, 0.0}, {2, 0.0}, {3, 0.0}});
  RecordingSink sink;
  auto seq = engine->NewSequence(0, &sink).value();
  std::vector<int32_t> fed;
  std::vector<StepResult> steps = Decode(*seq, 15, &fed);
  for (const StepResult& s : steps) {
    EXPECT_EQ(s.source, TokenSource::kExit);
    EXPECT_EQ(s.exit_layer, 1);
  }
  // Each step leaves exactly its own token pending; the previous one finished.
  EXPECT_EQ(seq->pending_rows(), 1);
  ASSERT_TRUE(seq->Flush().ok());
  Reference ref = PlainForward(*f.model, fed);
  EXPECT_LT(MaxCacheError(seq->cache(), *ref.cache, static_cast<int64_t>(fed.size())), 1e-5);
  EXPECT_LT((sink.Rows() - ref.hidden_at_split).abs().max().item<double>(), 1e-5);
}

TEST(EdgeSequence, ThresholdsAboveEveryConfidenceNeverExitEarly) {
  at::InferenceMode guard;
  Fixture f = MakeParts();
  for (auto fallback : {StandaloneFallback::kDeepest, StandaloneFallback::kMostConfident}) {
    auto engine = MakeEngine(f, {{1, kNever}, {2, kNever}, {3, kNever}}, fallback);
    auto seq = engine->NewSequence().value();
    std::vector<int32_t> fed;
    for (const StepResult& s : Decode(*seq, 10, &fed)) {
      EXPECT_EQ(s.source, TokenSource::kFallback);
      if (fallback == StandaloneFallback::kDeepest) {
        EXPECT_EQ(s.exit_layer, kSplit);
      }
    }
    EXPECT_EQ(seq->pending_rows(), 0);
  }
}

TEST(EdgeSequence, MostConfidentFallbackPicksTheHighestConfidence) {
  at::InferenceMode guard;
  Fixture f = MakeParts();
  auto engine =
      MakeEngine(f, {{1, kNever}, {2, kNever}, {3, kNever}}, StandaloneFallback::kMostConfident);
  auto seq = engine->NewSequence().value();
  auto r = seq->Start(Prompt());
  ASSERT_TRUE(r.ok());
  // Recompute every exit's confidence on the prompt's last row.
  std::vector<int32_t> p = Prompt();
  at::Tensor ids = at::empty({5}, at::kLong);
  for (int i = 0; i < 5; ++i) ids[i] = p[i];
  at::Tensor h = f.model->Embed(ids).value();
  float best = -1.0f;
  int64_t best_layer = 0;
  int64_t layer = 0;
  for (int64_t e : {1, 2, 3}) {
    h = f.model->ForwardLayers(layer, e, h, at::arange(5, at::kLong), nullptr).value();
    layer = e;
    float c = Confidence(f.heads->Logits(*f.model, e, h[4].unsqueeze(0)).value(),
                         ConfidenceMeasure::kMaxProb)
                  .first.item<float>();
    if (c >= best) best = c, best_layer = e;
  }
  EXPECT_EQ(r->exit_layer, best_layer);
  EXPECT_NEAR(r->confidence, best, 1e-6);
}

// The pending-row corner cases, forced step by step with per-sequence thresholds.
TEST(EdgeSequence, DeferredRowsFollowTheNextTokenWhateverItsExit) {
  at::InferenceMode guard;
  Fixture f = MakeParts();
  auto engine = MakeEngine(f, {{1, kNever}, {2, kNever}, {3, kNever}});
  RecordingSink sink;
  auto seq = engine->NewSequence(0, &sink).value();
  auto at_layer = [&](int64_t e) {
    std::map<int64_t, double> t = {{1, kNever}, {2, kNever}, {3, kNever}};
    t[e] = 0.0;
    ASSERT_TRUE(seq->set_thresholds(t).ok());
  };
  std::vector<int32_t> fed = Prompt();
  auto r = seq->Start(fed);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rows_to_sink, 5);  // the prompt always reaches S
  auto step = [&](int64_t exit_at) {
    at_layer(exit_at);
    fed.push_back(r->token);
    r = seq->Step(r->token);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->exit_layer, exit_at);
  };
  const int64_t n = static_cast<int64_t>(fed.size());
  // A exits at 2: it waits at layer 2.
  step(2);
  EXPECT_EQ(r->rows_to_sink, 0);
  EXPECT_EQ(seq->pending_rows(), 1);
  EXPECT_EQ(seq->cache().length(1), n + 1);
  EXPECT_EQ(seq->cache().length(2), n);
  // B exits at 1 < 2: A finishes [2, 3) alone, B waits at 1.
  step(1);
  EXPECT_EQ(r->rows_to_sink, 1);
  EXPECT_EQ(seq->pending_rows(), 1);
  EXPECT_EQ(seq->cache().length(0), n + 2);
  EXPECT_EQ(seq->cache().length(1), n + 1);
  EXPECT_EQ(seq->cache().length(2), n + 1);
  // C exits at 2: B joins it at layer 1 (2 rows through [1, 2)), then B goes on.
  step(2);
  EXPECT_EQ(r->rows_to_sink, 1);
  EXPECT_EQ(seq->cache().length(1), n + 3);
  EXPECT_EQ(seq->cache().length(2), n + 2);
  // D exits at 2 as well: C joins it at layer 2, D stops there, C goes on alone.
  step(2);
  EXPECT_EQ(r->rows_to_sink, 1);
  // E reaches S: D joins at 2, both reach the sink.
  step(3);
  EXPECT_EQ(r->rows_to_sink, 2);
  EXPECT_EQ(seq->pending_rows(), 0);
  Reference ref = PlainForward(*f.model, fed);
  EXPECT_LT(MaxCacheError(seq->cache(), *ref.cache, static_cast<int64_t>(fed.size())), 1e-5);
  EXPECT_TRUE(sink.in_order());
  EXPECT_LT((sink.Rows() - ref.hidden_at_split).abs().max().item<double>(), 1e-5);
}

TEST(EdgeSequence, FlushAndFinishCompleteTheContext) {
  at::InferenceMode guard;
  Fixture f = MakeParts();
  auto engine = MakeEngine(f, {{1, 0.0}, {2, kNever}, {3, kNever}});
  RecordingSink sink;
  auto seq = engine->NewSequence(0, &sink).value();
  std::vector<int32_t> fed;
  Decode(*seq, 3, &fed);
  EXPECT_EQ(sink.next_position(), static_cast<int64_t>(fed.size()) - 1);
  ASSERT_TRUE(seq->Flush().ok());
  EXPECT_EQ(sink.next_position(), static_cast<int64_t>(fed.size()));
  seq->Finish();
  seq->Finish();
  EXPECT_EQ(sink.finishes(), 1);
  EXPECT_EQ(sink.begins(), 1);
}

TEST(EdgeSequence, RejectsBadInputs) {
  at::InferenceMode guard;
  Fixture f = MakeParts();
  auto engine = MakeEngine(f, {{1, 0.5}, {2, 0.5}, {3, 0.5}});
  auto seq = engine->NewSequence(8).value();
  EXPECT_EQ(seq->Step(3).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(seq->Start({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seq->Start({1, 2, 3, 4, 5, 6, 7, 8, 9}).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(seq->Start({1, 500}).status().code(), absl::StatusCode::kInvalidArgument);
  SamplingParams bad;
  bad.top_p = 0.0f;
  EXPECT_EQ(seq->Start({1, 2}, bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(seq->set_thresholds({{4, 0.1}}).ok());
  // The cache fills up: 8 positions, prompt of 6 -> two more tokens can be fed.
  auto r = seq->Start({1, 2, 3, 4, 5, 6});
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(seq->Step(r->token).ok());
  ASSERT_TRUE(seq->Step(r->token).ok());
  EXPECT_EQ(seq->Step(r->token).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(EdgeEngine, FromPartsValidatesTheSplitAndExits) {
  Fixture f = MakeParts();
  ExitPolicy p;
  p.thresholds = {{1, 0.5}, {2, 0.5}};
  EXPECT_FALSE(EdgeEngine::FromParts(f.model, f.heads, 3, p).ok());  // S missing from E
  p.thresholds = {{1, 0.5}, {3, 0.5}};
  EXPECT_FALSE(EdgeEngine::FromParts(f.model, f.heads, 2, p).ok());  // exit beyond S
  p.thresholds = {{5, 0.5}};
  EXPECT_FALSE(EdgeEngine::FromParts(f.model, f.heads, 5, p).ok());  // S beyond the model
  p.thresholds = {{4, 0.5}};
  EXPECT_FALSE(EdgeEngine::FromParts(f.model, f.heads, 4, p).ok());  // no head at 4
  p.thresholds = {{1, 0.5}, {3, 0.5}};
  EXPECT_TRUE(EdgeEngine::FromParts(f.model, f.heads, 3, p).ok());
}

// --- The collaborative-mode seam, exercised with fakes ----------------------

class FakeCloud : public CloudContinuation {
 public:
  explicit FakeCloud(const RecordingSink* sink) : sink_(sink) {}
  absl::Status Submit(const ContinueRequest& request, absl::Time) override {
    ++calls;
    // The context through `position` is already with the sink.
    sink_positions_ok = sink_positions_ok && sink_->next_position() == request.position + 1;
    EXPECT_EQ(request.hidden_at_split.size(0), 1);
    if (!error.ok()) return error;
    submitted.push_back(request.position);
    ContinueRequest copy = request;
    copy.hidden_at_split = at::Tensor();
    requests.push_back(std::move(copy));
    return absl::OkStatus();
  }
  std::vector<CloudVerdict> TakeVerdicts(absl::Time) override { return {}; }
  absl::Status error = absl::OkStatus();
  int calls = 0;
  std::vector<int64_t> submitted;
  std::vector<ContinueRequest> requests;  // copies (the row is dropped)
  bool sink_positions_ok = true;

 private:
  const RecordingSink* sink_;
};

TEST(EdgeSequence, DraftsAreSubmittedOnlyWhenNoExitPasses) {
  at::InferenceMode guard;
  Fixture f = MakeParts();
  auto engine = MakeEngine(f, {{1, kNever}, {2, kNever}, {3, kNever}});
  RecordingSink sink;
  auto seq = engine->NewSequence(0, &sink).value();
  FakeCloud cloud(&sink);
  seq->set_cloud(&cloud, absl::Seconds(5));
  std::vector<int32_t> fed;
  for (const StepResult& s : Decode(*seq, 4, &fed)) {
    EXPECT_TRUE(s.provisional);
    EXPECT_EQ(s.source, TokenSource::kFallback);
    EXPECT_EQ(s.exit_layer, kSplit);
  }
  EXPECT_EQ(cloud.calls, 5);
  EXPECT_TRUE(cloud.sink_positions_ok);
  // A cloud that cannot be asked: the draft is an ordinary fallback token.
  cloud.error = absl::UnavailableError("link down");
  for (const StepResult& s : Decode(*seq, 2, &fed)) {
    EXPECT_FALSE(s.provisional);
    EXPECT_EQ(s.source, TokenSource::kFallback);
  }
  // A confident exit never asks.
  ASSERT_TRUE(seq->set_thresholds({{1, 0.0}, {2, kNever}, {3, kNever}}).ok());
  const int before = cloud.calls;
  Decode(*seq, 2, &fed);
  EXPECT_EQ(cloud.calls, before);
}

// Under sampling the draft is drawn from exactly the distribution sent with it
// (what makes the cloud's speculative sampling rule exact): over many seeded
// first tokens, each draft token's frequency matches its sent probability.
TEST(EdgeSequence, SampledDraftsFollowTheDistributionSentWithThem) {
  at::InferenceMode guard;
  Fixture f = MakeParts();
  auto engine = MakeEngine(f, {{1, kNever}, {2, kNever}, {3, kNever}});
  RecordingSink sink;
  auto seq = engine->NewSequence(0, &sink).value();
  FakeCloud cloud(&sink);
  seq->set_cloud(&cloud, absl::Seconds(5), /*draft_top_k=*/4);
  SamplingParams sampling;
  sampling.temperature = 1.5f;  // a flat distribution: several tokens matter
  constexpr int kRuns = 3000;
  std::map<int32_t, int> seen;
  for (int i = 0; i < kRuns; ++i) {
    sampling.seed = 1000 + i;
    auto r = seq->Start(Prompt(), sampling);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->provisional);
    ++seen[r->token];
  }
  // The same prompt gives the same q every time.
  const ContinueRequest& q = cloud.requests.back();
  ASSERT_EQ(q.draft.ids.size(), 4u);
  double sum = 0.0, chi2 = 0.0;
  for (size_t k = 0; k < q.draft.ids.size(); ++k) {
    sum += q.draft.probs[k];
    const double expected = kRuns * q.draft.probs[k];
    const double d = seen[q.draft.ids[k]] - expected;
    chi2 += d * d / expected;
    seen.erase(q.draft.ids[k]);
  }
  EXPECT_NEAR(sum, 1.0, 1e-5);
  EXPECT_TRUE(seen.empty()) << "a draft outside the distribution sent";
  // 3 degrees of freedom: P(chi2 > 16.27) = 0.001 for the right sampler.
  EXPECT_LT(chi2, 16.27);
}

// Truncate after decoding on top of drafts leaves the KV cache equal to a
// sequence that never took them (the rollback of a rejected draft).
TEST(EdgeSequence, TruncateRestoresTheCacheOfTheShorterSequence) {
  at::InferenceMode guard;
  Fixture f = MakeParts();
  // Exit 1 always passes: every token's row is deferred, the hard case.
  auto engine = MakeEngine(f, {{1, 0.0}, {2, kNever}, {3, kNever}});
  auto a = engine->NewSequence(64).value();
  auto b = engine->NewSequence(64).value();
  const std::vector<int32_t> prompt = {5, 9, 2, 7};
  ASSERT_TRUE(a->Start(prompt).ok());
  ASSERT_TRUE(b->Start(prompt).ok());
  for (int32_t t : {11, 3, 8}) {
    ASSERT_TRUE(a->Step(t).ok());
    ASSERT_TRUE(b->Step(t).ok());
  }
  for (int32_t t : {40, 41, 42, 43}) ASSERT_TRUE(a->Step(t).ok());  // the abandoned branch
  ASSERT_TRUE(a->Truncate(7).ok());
  EXPECT_EQ(a->position(), 7);
  ASSERT_TRUE(b->Flush().ok());
  ASSERT_TRUE(a->Flush().ok());
  // Both go on with the same token; their caches must then be equal.
  ASSERT_TRUE(a->Step(20).ok());
  ASSERT_TRUE(b->Step(20).ok());
  ASSERT_TRUE(a->Flush().ok());
  ASSERT_TRUE(b->Flush().ok());
  for (int64_t l = 0; l < kSplit; ++l) {
    ASSERT_EQ(a->cache().length(l), b->cache().length(l)) << "layer " << l;
    EXPECT_TRUE(at::allclose(a->cache().keys(l), b->cache().keys(l), 1e-6, 1e-6)) << l;
    EXPECT_TRUE(at::allclose(a->cache().values(l), b->cache().values(l), 1e-6, 1e-6)) << l;
  }
  EXPECT_FALSE(a->Truncate(0).ok());
  EXPECT_FALSE(a->Truncate(100).ok());
}

}  // namespace
}  // namespace tandem::edge
