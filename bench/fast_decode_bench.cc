// Full-model decode steps side by side: libtorch fp32 (Model) against the edge
// decode path (FastDecoder) in every weight format, with 1 and 2 threads, on
//   tiny    the shipped model (models/tandem-tiny; 7.9M parameters),
//   250m    a random 16-layer d=1024 checkpoint (GQA 16/8, ff 2816, vocab
//           32000, untied: ~254M parameters),
//   700m    a random 24-layer d=1536 checkpoint (~700M parameters): its int8
//           weights (~750 MB) are larger than this machine's last-level cache,
//           so its steps measure the memory-bandwidth roofline.
// plus BM_ReadBandwidth, the roofline's denominator: the rate at which 1 and 2
// threads can stream a 2 GiB buffer.
//
// Each step feeds one token at context 64 (then truncates back), so attention
// is a small part and weight reads dominate. Counters: tokens/s, and GB/s of
// weights read per step (the decode path's step_bytes; fp32 bytes for
// libtorch). Run with --benchmark_repetitions=N
// --benchmark_enable_random_interleaving=true so compared cases alternate.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "tandem/fast_decoder.h"
#include "tandem/model.h"
#include "tandem/thread_pool.h"
#include "tandem/threads.h"

namespace tandem {
namespace {

constexpr int64_t kContext = 64;

ModelConfig RandomConfig(const std::string& name) {
  ModelConfig c;
  c.vocab_size = 32000;
  c.max_position_embeddings = 1024;
  c.tie_word_embeddings = false;
  c.rms_norm_eps = 1e-5;
  if (name == "250m") {
    c.num_hidden_layers = 16;
    c.hidden_size = 1024;
    c.num_attention_heads = 16;
    c.num_key_value_heads = 8;
    c.head_dim = 64;
    c.intermediate_size = 2816;
  } else {  // 700m
    c.num_hidden_layers = 24;
    c.hidden_size = 1536;
    c.num_attention_heads = 24;
    c.num_key_value_heads = 8;
    c.head_dim = 64;
    c.intermediate_size = 4096;
  }
  return c;
}

// Models are built once per process and shared by every benchmark.
const Model& GetModel(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Model>> models;
  std::lock_guard<std::mutex> lock(mu);
  auto it = models.find(name);
  if (it != models.end()) return *it->second;
  at::InferenceMode guard;
  std::unique_ptr<Model> model;
  if (name == "tiny") {
    const std::string dir = std::string(TANDEM_SOURCE_DIR) + "/models/tandem-tiny";
    model = std::move(Model::Load(dir).value());
  } else {
    model = std::move(Model::CreateRandom(RandomConfig(name), {}, 1).value());
  }
  return *(models[name] = std::move(model));
}

const FastDecoder& GetDecoder(const std::string& name, WeightFormat format) {
  static std::mutex mu;
  static std::map<std::pair<std::string, int>, std::unique_ptr<FastDecoder>> decoders;
  const Model& model = GetModel(name);
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_pair(name, static_cast<int>(format));
  auto it = decoders.find(key);
  if (it != decoders.end()) return *it->second;
  FastDecoderOptions options;
  options.format = format;
  return *(decoders[key] = std::move(FastDecoder::FromModel(model, options).value()));
}

std::vector<int32_t> PromptIds(int64_t vocab) {
  std::vector<int32_t> ids(kContext);
  for (int64_t i = 0; i < kContext; ++i) ids[i] = static_cast<int32_t>((i * 7919 + 3) % vocab);
  return ids;
}

void RunLibtorch(benchmark::State& state, const std::string& name, int threads) {
  SetComputeThreads(threads);
  at::InferenceMode guard;
  const Model& model = GetModel(name);
  const int64_t layers = model.config().num_hidden_layers;
  auto cache = std::move(model.NewCache(kContext + 1).value());
  std::vector<int32_t> ids = PromptIds(model.config().vocab_size);
  std::vector<int64_t> ids64(ids.begin(), ids.end());
  at::Tensor h = model.Embed(at::tensor(ids64, at::kLong)).value();
  (void)model.ForwardLayers(0, layers, h, at::arange(kContext, at::kLong), cache.get()).value();
  at::Tensor next = at::full({1}, 42, at::kLong);
  at::Tensor pos = at::full({1}, kContext, at::kLong);
  for (auto _ : state) {
    cache->Truncate(kContext);
    at::Tensor x = model.Embed(next).value();
    x = model.ForwardLayers(0, layers, x, pos, cache.get()).value();
    at::Tensor logits = model.Logits(x).value();
    benchmark::DoNotOptimize(logits.argmax().item<int64_t>());
  }
  const double bytes = static_cast<double>(model.weight_bytes());
  state.counters["tokens/s"] = benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
  state.counters["weight_GB/s"] =
      benchmark::Counter(bytes * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  SetComputeThreads(1);
}

void RunFast(benchmark::State& state, const std::string& name, WeightFormat format,
             int threads) {
  at::InferenceMode guard;
  const FastDecoder& f = GetDecoder(name, format);
  const ModelConfig& c = f.config();
  ThreadPool pool(threads);
  auto ws = f.NewWorkspace(8, &pool);
  auto cache = std::move(f.NewCache(kContext + 1).value());
  std::vector<int32_t> ids = PromptIds(c.vocab_size);
  std::vector<float> hidden(kContext * c.hidden_size);
  std::vector<float> logits(c.vocab_size);
  (void)f.Embed(ids, hidden.data());
  (void)f.ForwardLayers(0, c.num_hidden_layers, hidden.data(), kContext, 0, cache.get(), ws.get());
  for (auto _ : state) {
    cache->Truncate(kContext);
    const int32_t next = 42;
    (void)f.Embed({next}, hidden.data());
    (void)f.ForwardLayers(0, c.num_hidden_layers, hidden.data(), 1, kContext, cache.get(),
                          ws.get());
    (void)f.Logits(hidden.data(), 1, logits.data(), ws.get());
    benchmark::DoNotOptimize(logits.data());
  }
  const double bytes = static_cast<double>(f.step_bytes(0, c.num_hidden_layers, true));
  state.counters["tokens/s"] = benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
  state.counters["weight_GB/s"] =
      benchmark::Counter(bytes * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(FastDecoder::KernelTarget());
}

void RegisterAll() {
  for (const std::string name : {"tiny", "250m", "700m"}) {
    for (int threads : {1, 2}) {
      benchmark::RegisterBenchmark(
          ("BM_DecodeStep/" + name + "/libtorch_fp32/threads:" + std::to_string(threads)).c_str(),
          [name, threads](benchmark::State& s) { RunLibtorch(s, name, threads); })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
      for (WeightFormat format : {WeightFormat::kF32, WeightFormat::kF16, WeightFormat::kBF16,
                                  WeightFormat::kInt8, WeightFormat::kInt4}) {
        benchmark::RegisterBenchmark(("BM_DecodeStep/" + name + "/" + WeightFormatName(format) +
                                      "/threads:" + std::to_string(threads))
                                         .c_str(),
                                     [name, format, threads](benchmark::State& s) {
                                       RunFast(s, name, format, threads);
                                     })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
    }
  }
}

const bool registered = (RegisterAll(), true);

// Streams a 2 GiB buffer (larger than any cache here) split over the threads.
void BM_ReadBandwidth(benchmark::State& state) {
  static std::vector<uint64_t> buffer(size_t{1} << 28, 1);  // 2 GiB
  const int threads = static_cast<int>(state.range(0));
  ThreadPool pool(threads);
  std::vector<uint64_t> sums(threads);
  const int64_t n = static_cast<int64_t>(buffer.size());
  for (auto _ : state) {
    pool.ParallelFor(threads, [&](int64_t t) {
      const int64_t lo = n / threads * t, hi = t + 1 == threads ? n : n / threads * (t + 1);
      uint64_t a = 0, b = 0, c = 0, d = 0;
      for (int64_t i = lo; i + 4 <= hi; i += 4) {
        a += buffer[i];
        b += buffer[i + 1];
        c += buffer[i + 2];
        d += buffer[i + 3];
      }
      sums[t] = a + b + c + d;
    });
    benchmark::DoNotOptimize(sums.data());
  }
  state.SetBytesProcessed(state.iterations() * n * 8);
}
BENCHMARK(BM_ReadBandwidth)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace tandem
