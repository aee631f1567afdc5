// EdgeEngine on the decode path (EdgeOptions::weights): the deferred-KV
// exactness of edge_engine_test.cc, for every weight format. The reference is
// a plain one-batch forward of layers [0, S) through the same decoder, so the
// property checked is the engine's bookkeeping, whatever the format's rounding.
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tandem/edge/edge_engine.h"
#include "tandem/fast_decoder.h"
#include "tandem/thread_pool.h"
#include "testing/tiny_model.h"

namespace tandem::edge {
namespace {

constexpr double kNever = std::numeric_limits<double>::infinity();
constexpr int64_t kSplit = 3;

struct Parts {
  std::shared_ptr<const Model> model;
  std::shared_ptr<const ExitHeads> heads;
};

Parts MakeParts() {
  Parts p;
  ModelConfig c = testing::TinyGqaConfig();
  c.hidden_size = 64;  // two quantization blocks per row
  c.head_dim = 16;
  auto model = Model::CreateRandom(c, {}, 5);
  EXPECT_TRUE(model.ok());
  auto heads = ExitHeads::Create(**model, {1, 2, 3}, /*adapter_rank=*/2, 5);
  EXPECT_TRUE(heads.ok());
  for (auto& [name, t] : (*heads)->NamedParameters()) {
    if (name.find("adapter.up") != std::string::npos) t.normal_(0.0, 0.3);
  }
  p.model = std::move(*model);
  p.heads = std::move(*heads);
  return p;
}

std::unique_ptr<EdgeEngine> MakeEngine(const Parts& p, std::optional<WeightFormat> weights,
                                       ThreadPool* pool = nullptr) {
  ExitPolicy policy;
  policy.thresholds = {{1, kNever}, {2, kNever}, {3, kNever}};
  auto engine = EdgeEngine::FromParts(p.model, p.heads, kSplit, policy, 0, weights, pool);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::move(*engine) : nullptr;
}

// Forces the exit of each step: 1, 2 or 3 (= S, no early exit), a pattern
// that covers every pending-row case (later-then-earlier, equal, reaching S).
const std::vector<int64_t> kExitPattern = {2, 1, 2, 2, 3, 1, 1, 3, 2, 3, 1, 2, 1, 3, 3, 2};

std::vector<StepResult> DecodeForced(EdgeSequence& seq, std::vector<int32_t>* fed) {
  std::vector<StepResult> out;
  *fed = {1, 17, 33, 8, 64};
  auto r = seq.Start(*fed);
  EXPECT_TRUE(r.ok()) << r.status();
  out.push_back(*r);
  for (int64_t exit_at : kExitPattern) {
    std::map<int64_t, double> t = {{1, kNever}, {2, kNever}, {3, kNever}};
    t[exit_at] = -1.0;
    EXPECT_TRUE(seq.set_thresholds(t).ok());
    fed->push_back(out.back().token);
    r = seq.Step(out.back().token);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) break;
    EXPECT_EQ(r->exit_layer, exit_at);
    out.push_back(*r);
  }
  return out;
}

class EdgeFormats : public ::testing::TestWithParam<WeightFormat> {};

TEST_P(EdgeFormats, DeferredRowsKeepTheKvCacheExact) {
  at::InferenceMode guard;
  Parts p = MakeParts();
  ThreadPool pool(2);
  auto engine = MakeEngine(p, GetParam(), &pool);
  ASSERT_NE(engine, nullptr);
  ASSERT_NE(engine->fast_decoder(), nullptr);
  RecordingSink sink;
  auto seq = engine->NewSequence(0, &sink).value();
  std::vector<int32_t> fed;
  DecodeForced(*seq, &fed);
  ASSERT_TRUE(seq->Flush().ok());
  EXPECT_EQ(seq->pending_rows(), 0);

  // Plain forward of every fed token through [0, S) on the same decoder.
  const FastDecoder& fast = *engine->fast_decoder();
  const int64_t n = static_cast<int64_t>(fed.size());
  auto cache = fast.NewCache(64, 0, kSplit).value();
  auto ws = fast.NewWorkspace(n, nullptr);
  at::Tensor hidden = at::empty({n, fast.config().hidden_size}, at::kFloat);
  ASSERT_TRUE(fast.Embed(fed, hidden.data_ptr<float>()).ok());
  ASSERT_TRUE(
      fast.ForwardLayers(0, kSplit, hidden.data_ptr<float>(), n, 0, cache.get(), ws.get()).ok());
  double err = 0.0;
  for (int64_t l = 0; l < kSplit; ++l) {
    ASSERT_EQ(seq->cache().length(l), n);
    err = std::max(err, (seq->cache().keys(l) - cache->keys(l)).abs().max().item<double>());
    err = std::max(err, (seq->cache().values(l) - cache->values(l)).abs().max().item<double>());
  }
  EXPECT_LT(err, 1e-5) << WeightFormatName(GetParam());
  EXPECT_TRUE(sink.in_order());
  ASSERT_EQ(sink.next_position(), n);
  EXPECT_LT((sink.Rows() - hidden).abs().max().item<double>(), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(AllFormats, EdgeFormats,
                         ::testing::Values(WeightFormat::kF32, WeightFormat::kF16,
                                           WeightFormat::kBF16, WeightFormat::kInt8,
                                           WeightFormat::kInt4),
                         [](const auto& info) { return std::string(WeightFormatName(info.param)); });

TEST(EdgeFormats, Fp32DecodePathDecidesLikeLibtorch) {
  at::InferenceMode guard;
  Parts p = MakeParts();
  auto reference = MakeEngine(p, std::nullopt);
  auto fast = MakeEngine(p, WeightFormat::kF32);
  auto seq_ref = reference->NewSequence().value();
  auto seq_fast = fast->NewSequence().value();
  std::vector<int32_t> fed_ref, fed_fast;
  std::vector<StepResult> a = DecodeForced(*seq_ref, &fed_ref);
  std::vector<StepResult> b = DecodeForced(*seq_fast, &fed_fast);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(fed_ref, fed_fast);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].exit_layer, b[i].exit_layer);
    EXPECT_NEAR(a[i].probability, b[i].probability, 1e-4) << "step " << i;
  }
  ASSERT_TRUE(seq_ref->Flush().ok());
  ASSERT_TRUE(seq_fast->Flush().ok());
  for (int64_t l = 0; l < kSplit; ++l) {
    EXPECT_LT((seq_ref->cache().keys(l) - seq_fast->cache().keys(l)).abs().max().item<double>(),
              1e-4);
  }
}

}  // namespace
}  // namespace tandem::edge
