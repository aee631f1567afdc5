// The edge decode step (EdgeSequence::Step) on a random model of the shipped
// architecture (8 layers, d=256, GQA 8/4 heads, intermediate 688, vocab 8192,
// tied), split S = 4, at context ~128, fp32:
//  - BM_EdgeStep/0: exit only at S (one head per token, never early);
//  - BM_EdgeStep/1: exits at 2 and 4, never confident (two heads per token);
//  - BM_EdgeStep/2: exits at 2 and 4, every token leaves at 2 (the previous
//    token's deferred row then runs [2, 4) alone in the same step);
//  - BM_FullStep: the whole 8-layer model + final head, for comparison;
//  - BM_DeferredRows/N: N rows at consecutive positions through layers [2, 4)
//    in one call — the cost of carrying deferred rows with the next token.
#include <benchmark/benchmark.h>

#include <limits>

#include <ATen/ATen.h>

#include "tandem/edge/edge_engine.h"
#include "tandem/model.h"
#include "tandem/threads.h"

namespace tandem::edge {
namespace {

constexpr int64_t kContext = 128;
constexpr int64_t kSplit = 4;
constexpr int64_t kStepsPerSequence = 64;

ModelConfig ShippedConfig() {
  ModelConfig c;
  c.vocab_size = 8192;
  c.hidden_size = 256;
  c.intermediate_size = 688;
  c.num_hidden_layers = 8;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.head_dim = 32;
  c.max_position_embeddings = 1024;
  c.tie_word_embeddings = true;
  return c;
}

std::shared_ptr<const Model> SharedModel() {
  static std::shared_ptr<const Model> model =
      std::move(Model::CreateRandom(ShippedConfig(), {}, 1).value());
  return model;
}

std::vector<int32_t> Prompt() {
  std::vector<int32_t> ids(kContext);
  for (int64_t i = 0; i < kContext; ++i) ids[i] = static_cast<int32_t>((i * 7919) % 8192);
  return ids;
}

void BM_EdgeStep(benchmark::State& state) {
  SetComputeThreads(static_cast<int>(state.range(1)));
  at::InferenceMode guard;
  constexpr double kNever = std::numeric_limits<double>::infinity();
  std::shared_ptr<const Model> model = SharedModel();
  ExitPolicy policy;
  switch (state.range(0)) {
    case 0: policy.thresholds = {{4, kNever}}; break;
    case 1: policy.thresholds = {{2, kNever}, {4, kNever}}; break;
    default: policy.thresholds = {{2, 0.0}, {4, kNever}}; break;
  }
  std::vector<int64_t> layers;
  for (const auto& [l, t] : policy.thresholds) layers.push_back(l);
  auto heads = ExitHeads::Create(*model, layers, 0, 1).value();
  auto engine = EdgeEngine::FromParts(model, std::move(heads), kSplit, policy).value();
  auto seq = engine->NewSequence(kContext + kStepsPerSequence + 1).value();
  const std::vector<int32_t> prompt = Prompt();
  int32_t token = seq->Start(prompt).value().token;
  int64_t steps = 0;
  for (auto _ : state) {
    if (steps++ % kStepsPerSequence == 0) {
      state.PauseTiming();
      token = seq->Start(prompt).value().token;
      state.ResumeTiming();
    }
    StepResult r = seq->Step(token).value();
    token = r.token;
    benchmark::DoNotOptimize(token);
  }
  state.SetItemsProcessed(state.iterations());
}
// Args: mode (see above), threads.
BENCHMARK(BM_EdgeStep)->Args({0, 1})->Args({1, 1})->Args({2, 1})->Args({0, 2})->Args({1, 2})
    ->Args({2, 2})->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_FullStep(benchmark::State& state) {
  SetComputeThreads(static_cast<int>(state.range(0)));
  at::InferenceMode guard;
  std::shared_ptr<const Model> model = SharedModel();
  auto cache = model->NewCache(kContext + 1).value();
  at::Tensor prompt = at::randint(0, 8192, {kContext}, at::kLong);
  (void)model->ForwardLayers(0, 8, model->Embed(prompt).value(), at::arange(kContext, at::kLong),
                             cache.get())
      .value();
  at::Tensor next = at::full({1}, 42, at::kLong);
  at::Tensor pos = at::full({1}, kContext, at::kLong);
  for (auto _ : state) {
    cache->Truncate(kContext);
    at::Tensor x = model->ForwardLayers(0, 8, model->Embed(next).value(), pos, cache.get()).value();
    benchmark::DoNotOptimize(model->Logits(x).value().argmax().item<int64_t>());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FullStep)->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_DeferredRows(benchmark::State& state) {
  SetComputeThreads(1);
  at::InferenceMode guard;
  const int64_t rows = state.range(0);
  std::shared_ptr<const Model> model = SharedModel();
  auto cache = model->NewCache(kContext + rows, 0, kSplit).value();
  at::Tensor prompt = at::randint(0, 8192, {kContext}, at::kLong);
  (void)model->ForwardLayers(0, kSplit, model->Embed(prompt).value(),
                             at::arange(kContext, at::kLong), cache.get())
      .value();
  at::Tensor x = at::randn({rows, 256});
  at::Tensor pos = at::arange(kContext, kContext + rows, at::kLong);
  for (auto _ : state) {
    cache->Truncate(kContext);
    benchmark::DoNotOptimize(model->ForwardLayers(2, kSplit, x, pos, cache.get()).value());
  }
  state.SetItemsProcessed(state.iterations() * rows);
}
BENCHMARK(BM_DeferredRows)->Arg(1)->Arg(2)->Arg(3)->Arg(4)->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace tandem::edge
