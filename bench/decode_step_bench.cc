// One decode step and one prompt prefill of a small Llama-family model (the size
// the shipped model targets: 8 layers, d=256, GQA 8/4 heads, vocab 8192), fp32
// and bf16, at context position 128. Weights are random: speed does not depend
// on their values.
#include <benchmark/benchmark.h>

#include <ATen/ATen.h>

#include "tandem/model.h"
#include "tandem/threads.h"

namespace tandem {
namespace {

ModelConfig SmallConfig() {
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

constexpr int64_t kContext = 128;

std::unique_ptr<Model> MakeModel(at::ScalarType dtype) {
  ModelOptions o;
  o.dtype = dtype;
  return std::move(Model::CreateRandom(SmallConfig(), o, 1).value());
}

at::ScalarType DTypeArg(const benchmark::State& state) {
  return state.range(0) == 0 ? at::kFloat : at::kBFloat16;
}

void BM_DecodeStep(benchmark::State& state) {
  SetComputeThreads(static_cast<int>(state.range(1)));
  at::InferenceMode guard;
  auto model = MakeModel(DTypeArg(state));
  auto cache = std::move(model->NewCache(kContext + 1).value());
  at::Tensor prompt = at::randint(0, 8192, {kContext}, at::kLong);
  auto h = model->Embed(prompt).value();
  (void)model->ForwardLayers(0, 8, h, at::arange(kContext, at::kLong), cache.get()).value();
  at::Tensor next = at::full({1}, 42, at::kLong);
  at::Tensor pos = at::full({1}, kContext, at::kLong);
  for (auto _ : state) {
    cache->Truncate(kContext);
    at::Tensor x = model->Embed(next).value();
    x = model->ForwardLayers(0, 8, x, pos, cache.get()).value();
    at::Tensor logits = model->Logits(x).value();
    benchmark::DoNotOptimize(logits.argmax().item<int64_t>());
  }
  state.SetItemsProcessed(state.iterations());
}
// Args: dtype (0 fp32, 1 bf16), threads.
BENCHMARK(BM_DecodeStep)->Args({0, 1})->Args({0, 2})->Args({1, 1})->Args({1, 2})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_Prefill64(benchmark::State& state) {
  SetComputeThreads(static_cast<int>(state.range(1)));
  at::InferenceMode guard;
  auto model = MakeModel(DTypeArg(state));
  auto cache = std::move(model->NewCache(64).value());
  at::Tensor prompt = at::randint(0, 8192, {64}, at::kLong);
  at::Tensor pos = at::arange(64, at::kLong);
  for (auto _ : state) {
    cache->Clear();
    at::Tensor x = model->Embed(prompt).value();
    x = model->ForwardLayers(0, 8, x, pos, cache.get()).value();
    benchmark::DoNotOptimize(model->Logits(x[63]).value().argmax().item<int64_t>());
  }
  state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_Prefill64)->Args({0, 2})->Args({1, 2})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace tandem
