#include "tandem/fast_decoder.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "decode/kernels.h"
#include "decode/quantize.h"
#include "tandem/exit_heads.h"
#include "tandem/thread_pool.h"
#include "testing/tiny_model.h"

namespace tandem {
namespace {

using ::tandem::testing::TinyBiasConfig;
using ::tandem::testing::TinyGqaConfig;

// Dimensions that are not multiples of 32 (padding), GQA, a larger head_dim.
ModelConfig OddConfig() {
  ModelConfig c = TinyGqaConfig();
  c.hidden_size = 72;
  c.intermediate_size = 88;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 2;
  c.head_dim = 12;
  c.vocab_size = 131;
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8.0;
  c.rope_scaling.original_max_position_embeddings = 16;
  return c;
}

ModelConfig SlidingConfig() {
  ModelConfig c = TinyGqaConfig();
  c.model_type = "mistral";
  c.sliding_window = 4;
  return c;
}

// Random weights of std 0.02 give near-zero logits; scale the model up so the
// comparison is not vacuous (logits of order 1).
std::unique_ptr<Model> LoudModel(const ModelConfig& config, uint64_t seed, double gain = 10.0) {
  auto model = Model::CreateRandom(config, {}, seed);
  EXPECT_TRUE(model.ok()) << model.status();
  at::NoGradGuard no_grad;
  for (auto& [name, t] : (*model)->NamedParameters()) {
    if (t.dim() == 2) t.mul_(gain);
    if (name.find("bias") != std::string::npos) t.normal_(0.0, 0.5);
  }
  return std::move(*model);
}

std::vector<int32_t> Prompt() { return {1, 5, 9, 33, 2, 17, 80, 41, 8, 8, 3, 60, 7, 21}; }

// Logits of every position of `ids` from the libtorch model, one pass.
at::Tensor ReferenceLogits(const Model& m, const std::vector<int32_t>& ids) {
  std::vector<int64_t> ids64(ids.begin(), ids.end());
  at::Tensor t = at::tensor(ids64, at::kLong);
  auto h = m.Embed(t);
  EXPECT_TRUE(h.ok());
  auto out = m.ForwardLayers(0, m.config().num_hidden_layers, *h,
                             at::arange(0, t.size(0), at::kLong), nullptr);
  EXPECT_TRUE(out.ok()) << out.status();
  auto logits = m.Logits(*out);
  EXPECT_TRUE(logits.ok());
  return *logits;
}

// Logits of every position from the decode path: prefill `prefill` rows as
// one call, then one row at a time.
at::Tensor FastLogits(const FastDecoder& f, const std::vector<int32_t>& ids, int64_t prefill,
                      DecodeWorkspace* ws) {
  const int64_t d = f.config().hidden_size, v = f.config().vocab_size;
  const int64_t n = static_cast<int64_t>(ids.size());
  auto cache = f.NewCache(n + 4);
  EXPECT_TRUE(cache.ok());
  at::Tensor out = at::empty({n, v}, at::kFloat);
  std::vector<float> hidden(n * d);
  EXPECT_TRUE(f.Embed(ids, hidden.data()).ok());
  int64_t done = 0;
  while (done < n) {
    const int64_t rows = done == 0 ? prefill : 1;
    absl::Status s = f.ForwardLayers(0, f.config().num_hidden_layers, hidden.data() + done * d,
                                     rows, done, cache->get(), ws);
    EXPECT_TRUE(s.ok()) << s;
    s = f.Logits(hidden.data() + done * d, rows, out.data_ptr<float>() + done * v, ws);
    EXPECT_TRUE(s.ok()) << s;
    done += rows;
  }
  return out;
}

float MaxAbsDiff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<float>();
}

class FastDecoderConfigs : public ::testing::TestWithParam<ModelConfig> {};

TEST_P(FastDecoderConfigs, Fp32AgreesWithLibtorchWithin1e4) {
  at::InferenceMode guard;
  auto model = LoudModel(GetParam(), 7);
  auto fast = FastDecoder::FromModel(*model, {});
  ASSERT_TRUE(fast.ok()) << fast.status();
  const at::Tensor reference = ReferenceLogits(*model, Prompt());
  ASSERT_GT(reference.abs().max().item<float>(), 0.5f);  // not a vacuous comparison
  auto ws = (*fast)->NewWorkspace(8, nullptr);
  const at::Tensor logits = FastLogits(**fast, Prompt(), 5, ws.get());
  EXPECT_LT(MaxAbsDiff(logits, reference), 1e-4);
}

TEST_P(FastDecoderConfigs, PrefillChunksAndThreadsGiveTheSameLogits) {
  at::InferenceMode guard;
  auto model = LoudModel(GetParam(), 9);
  auto fast = FastDecoder::FromModel(*model, {});
  ASSERT_TRUE(fast.ok());
  auto one = (*fast)->NewWorkspace(8, nullptr);
  const at::Tensor base = FastLogits(**fast, Prompt(), 9, one.get());
  // A workspace of 3 rows splits the prefill into chunks; a 2-thread pool
  // splits every product by output rows. Each output is computed the same
  // way either way, so the results are bit-identical.
  ThreadPool pool(2);
  auto chunked = (*fast)->NewWorkspace(3, &pool);
  const at::Tensor other = FastLogits(**fast, Prompt(), 9, chunked.get());
  EXPECT_TRUE(at::equal(base, other));
}

TEST_P(FastDecoderConfigs, TruncateThenReplayRecomputesTheSameLogits) {
  at::InferenceMode guard;
  auto model = LoudModel(GetParam(), 5);
  auto fast = FastDecoder::FromModel(*model, {});
  ASSERT_TRUE(fast.ok());
  const FastDecoder& f = **fast;
  const int64_t d = f.config().hidden_size, v = f.config().vocab_size;
  const int64_t layers = f.config().num_hidden_layers;
  auto ws = f.NewWorkspace(4, nullptr);
  auto cache = f.NewCache(32);
  ASSERT_TRUE(cache.ok());
  std::vector<int32_t> ids = Prompt();
  std::vector<float> h(ids.size() * d);
  ASSERT_TRUE(f.Embed(ids, h.data()).ok());
  ASSERT_TRUE(f.ForwardLayers(0, layers, h.data(), 10, 0, cache->get(), ws.get()).ok());
  std::vector<float> branch(d), branch_logits(v);
  ASSERT_TRUE(f.Embed({ids[10]}, branch.data()).ok());
  ASSERT_TRUE(f.ForwardLayers(0, layers, branch.data(), 1, 10, cache->get(), ws.get()).ok());
  ASSERT_TRUE(f.Logits(branch.data(), 1, branch_logits.data(), ws.get()).ok());
  // A speculative branch of two other tokens, then rollback to 11 and redo.
  std::vector<float> spec(2 * d);
  ASSERT_TRUE(f.Embed({40, 41}, spec.data()).ok());
  ASSERT_TRUE(f.ForwardLayers(0, layers, spec.data(), 2, 11, cache->get(), ws.get()).ok());
  (*cache)->Truncate(10);
  EXPECT_EQ((*cache)->min_length(), 10);
  std::vector<float> again(d), again_logits(v);
  ASSERT_TRUE(f.Embed({ids[10]}, again.data()).ok());
  ASSERT_TRUE(f.ForwardLayers(0, layers, again.data(), 1, 10, cache->get(), ws.get()).ok());
  ASSERT_TRUE(f.Logits(again.data(), 1, again_logits.data(), ws.get()).ok());
  EXPECT_EQ(branch_logits, again_logits);
}

INSTANTIATE_TEST_SUITE_P(Tiny, FastDecoderConfigs,
                         ::testing::Values(TinyGqaConfig(), TinyBiasConfig(), OddConfig(),
                                           SlidingConfig()),
                         [](const auto& info) {
                           const ModelConfig& c = info.param;
                           if (c.sliding_window > 0) return std::string("Sliding");
                           if (c.attention_bias) return std::string("Bias");
                           if (c.hidden_size % 32 != 0) return std::string("Odd");
                           return std::string("Gqa");
                         });

TEST(FastDecoder, LayerRangesComposeAndMatchLibtorchPerRange) {
  at::InferenceMode guard;
  auto model = LoudModel(TinyGqaConfig(), 3);
  auto fast = FastDecoder::FromModel(*model, {});
  ASSERT_TRUE(fast.ok());
  const FastDecoder& f = **fast;
  auto ws = f.NewWorkspace(8, nullptr);
  auto cache = f.NewCache(16);
  auto ref_cache = model->NewCache(16);
  ASSERT_TRUE(cache.ok() && ref_cache.ok());
  auto x = f.EmbedTensor(at::tensor({3, 4, 5}, at::kLong));
  ASSERT_TRUE(x.ok());
  auto ref = model->Embed(at::tensor({3, 4, 5}, at::kLong));
  ASSERT_TRUE(ref.ok());
  at::Tensor pos = at::arange(0, 3, at::kLong);
  for (auto [a, b] : {std::pair<int64_t, int64_t>{0, 1}, {1, 3}, {3, 4}}) {
    auto fx = f.ForwardLayersTensor(a, b, *x, 0, cache->get(), ws.get());
    ASSERT_TRUE(fx.ok()) << fx.status();
    auto rx = model->ForwardLayers(a, b, *ref, pos, ref_cache->get());
    ASSERT_TRUE(rx.ok());
    EXPECT_LT(MaxAbsDiff(*fx, *rx), 1e-4) << "layers [" << a << ", " << b << ")";
    // The K/V the two paths cached agree too.
    for (int64_t l = a; l < b; ++l) {
      EXPECT_LT(MaxAbsDiff((*cache)->keys(l), (*ref_cache)->keys(l)), 1e-4);
      EXPECT_LT(MaxAbsDiff((*cache)->values(l), (*ref_cache)->values(l)), 1e-4);
    }
    *x = *fx;
    *ref = *rx;
  }
}

TEST(FastDecoder, ExitHeadLogitsMatchLibtorch) {
  at::InferenceMode guard;
  auto model = LoudModel(TinyGqaConfig(), 4);
  auto heads = ExitHeads::Create(*model, {2, 4}, /*adapter_rank=*/3, 1);
  ASSERT_TRUE(heads.ok());
  {
    at::NoGradGuard no_grad;
    for (auto& [name, t] : (*heads)->NamedParameters()) t.normal_(0.0, 0.3);
  }
  auto converted = ConvertExitHeads(**heads);
  ASSERT_TRUE(converted.ok()) << converted.status();
  ASSERT_EQ(converted->size(), 2u);
  auto fast = FastDecoder::FromModel(*model, {});
  ASSERT_TRUE(fast.ok());
  at::Tensor hidden = at::randn({3, model->config().hidden_size}) * 3.0;
  for (int64_t layer : {2, 4}) {
    auto expected = (*heads)->Logits(*model, layer, hidden);
    ASSERT_TRUE(expected.ok());
    auto got = (*fast)->LogitsTensor(hidden, nullptr, &converted->at(layer));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_LT(MaxAbsDiff(*got, *expected), 1e-4) << "exit " << layer;
  }
}

TEST(FastDecoder, QuantizedFormatsStayCloseToFp32) {
  at::InferenceMode guard;
  ModelConfig c = TinyGqaConfig();
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.head_dim = 32;
  // A gain of 4 keeps this random network out of the chaotic regime where any
  // perturbation is amplified layer after layer (trained models are not).
  auto model = LoudModel(c, 12, 4.0);
  auto fp32 = FastDecoder::FromModel(*model, {});
  ASSERT_TRUE(fp32.ok());
  auto ws = (*fp32)->NewWorkspace(8, nullptr);
  const at::Tensor base = FastLogits(**fp32, Prompt(), 4, ws.get());
  const float scale = base.abs().max().item<float>();
  // Bounds on the largest logit error relative to the largest logit; measured
  // on this model (AVX-512): fp16 0.0008, bf16 0.0097, int8 0.024, int4 0.36.
  const std::vector<std::pair<WeightFormat, float>> bounds = {
      {WeightFormat::kF16, 0.005f},
      {WeightFormat::kBF16, 0.05f},
      {WeightFormat::kInt8, 0.05f},
      {WeightFormat::kInt4, 0.5f}};
  float previous = 0.0f;
  for (auto [format, bound] : bounds) {
    FastDecoderOptions options;
    options.format = format;
    auto q = FastDecoder::FromModel(*model, options);
    ASSERT_TRUE(q.ok());
    auto qws = (*q)->NewWorkspace(8, nullptr);
    const float error = MaxAbsDiff(FastLogits(**q, Prompt(), 4, qws.get()), base) / scale;
    EXPECT_GT(error, 0.0f) << WeightFormatName(format);  // really quantized
    EXPECT_LT(error, bound) << WeightFormatName(format);
    if (format != WeightFormat::kBF16) {
      EXPECT_GT(error, previous) << WeightFormatName(format);
    }
    previous = format == WeightFormat::kBF16 ? previous : error;
    std::printf("[ format %s ] max |logit error| / max |logit| = %.5f, weights %lld bytes\n",
                WeightFormatName(format), error, static_cast<long long>((*q)->weight_bytes()));
  }
}

TEST(FastDecoder, InvalidCallsFailWithoutTouchingTheCache) {
  at::InferenceMode guard;
  auto model = LoudModel(TinyGqaConfig(), 2);
  auto fast = FastDecoder::FromModel(*model, {});
  ASSERT_TRUE(fast.ok());
  const FastDecoder& f = **fast;
  auto ws = f.NewWorkspace(4, nullptr);
  auto cache = f.NewCache(4);
  ASSERT_TRUE(cache.ok());
  std::vector<float> h(5 * f.config().hidden_size, 0.1f);
  // Wrong first position.
  EXPECT_EQ(f.ForwardLayers(0, 4, h.data(), 1, 1, cache->get(), ws.get()).code(),
            absl::StatusCode::kInvalidArgument);
  // Past the capacity.
  EXPECT_EQ(f.ForwardLayers(0, 4, h.data(), 5, 0, cache->get(), ws.get()).code(),
            absl::StatusCode::kOutOfRange);
  // Outside the layers.
  EXPECT_EQ(f.ForwardLayers(0, 5, h.data(), 1, 0, cache->get(), ws.get()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*cache)->min_length(), 0);
  // A libtorch cache in another dtype is refused.
  auto bf16 = KVCache::Create(f.config(), 0, 4, 4, at::kBFloat16);
  ASSERT_TRUE(bf16.ok());
  EXPECT_EQ(f.ForwardLayers(0, 4, h.data(), 1, 0, bf16->get(), ws.get()).code(),
            absl::StatusCode::kInvalidArgument);
  // Token ids outside the vocabulary.
  EXPECT_EQ(f.Embed({static_cast<int32_t>(f.config().vocab_size)}, h.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.Embed({-1}, h.data()).code(), absl::StatusCode::kInvalidArgument);
}

TEST(FastDecoder, PartialLoadsRefuseWhatTheyDoNotHold) {
  at::InferenceMode guard;
  auto model = LoudModel(TinyGqaConfig(), 2);
  FastDecoderOptions options;
  options.layer_begin = 1;
  options.layer_end = 3;
  options.load_embedding = false;
  options.load_head = false;
  auto fast = FastDecoder::FromModel(*model, options);
  ASSERT_TRUE(fast.ok());
  EXPECT_LT((*fast)->weight_bytes(), model->weight_bytes() / 2);
  std::vector<float> h(32);
  EXPECT_EQ((*fast)->Embed({1}, h.data()).code(), absl::StatusCode::kFailedPrecondition);
  auto ws = (*fast)->NewWorkspace(1, nullptr);
  std::vector<float> logits(97);
  EXPECT_EQ((*fast)->Logits(h.data(), 1, logits.data(), ws.get()).code(),
            absl::StatusCode::kFailedPrecondition);
  auto cache = (*fast)->NewCache(4, 0, 3);
  EXPECT_FALSE(cache.ok());
}

TEST(WeightFormat, ParsesNamesAndCountsBytes) {
  EXPECT_EQ(*ParseWeightFormat("int8"), WeightFormat::kInt8);
  EXPECT_EQ(*ParseWeightFormat("Q4_0"), WeightFormat::kInt4);
  EXPECT_EQ(*ParseWeightFormat("bfloat16"), WeightFormat::kBF16);
  EXPECT_FALSE(ParseWeightFormat("int3").ok());
  EXPECT_EQ(WeightRowBytes(WeightFormat::kF32, 64), 256);
  EXPECT_EQ(WeightRowBytes(WeightFormat::kF16, 40), 128);  // padded to 64
  EXPECT_EQ(WeightRowBytes(WeightFormat::kInt8, 64), 68);  // as Q8_0: 34 per 32
  EXPECT_EQ(WeightRowBytes(WeightFormat::kInt4, 64), 36);  // as Q4_0: 18 per 32
}

TEST(Quantize, BlockErrorsStayWithinHalfAStep) {
  std::vector<float> w(3 * 40);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * i) * (1.0f + i % 7);
  for (WeightFormat f : {WeightFormat::kInt8, WeightFormat::kInt4}) {
    decode::QuantizedMatrix q(f, w.data(), 3, 40);
    EXPECT_EQ(q.padded_cols(), 64);
    std::vector<float> row(64);
    for (int64_t r = 0; r < 3; ++r) {
      decode::DequantizeRow(q.view(), r, row.data());
      for (int64_t b = 0; b < 2; ++b) {
        float amax = 0.0f;
        for (int64_t i = b * 32; i < std::min<int64_t>(40, b * 32 + 32); ++i) {
          amax = std::max(amax, std::fabs(w[r * 40 + i]));
        }
        const float step = amax / (f == WeightFormat::kInt8 ? 127.0f : 8.0f);
        for (int64_t i = b * 32; i < b * 32 + 32; ++i) {
          const float expected = i < 40 ? w[r * 40 + i] : 0.0f;
          // Half a step, plus the scale's own fp16 rounding. int4's range is
          // [-8, 7] steps with the block's extreme at -8: a value of the other
          // sign beyond 7 steps is clipped to 7 (as in Q4_0).
          const float clipped =
              f == WeightFormat::kInt4 ? std::fabs(expected) - 7.0f * step : 0.0f;
          EXPECT_LE(std::fabs(row[i] - expected),
                    std::max(0.5f * step, clipped) * 1.01f + 1e-6f)
              << WeightFormatName(f) << " row " << r << " col " << i;
        }
      }
    }
  }
}

TEST(ThreadPool, RunsEveryTaskOnceAndIsReusable) {
  ThreadPool pool(2);
  EXPECT_EQ(pool.threads(), 2);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::atomic<int>> hits(37);
    pool.ParallelFor(37, [&](int64_t t) { hits[t].fetch_add(1); });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  }
}

TEST(FastDecoder, ShippedModelFp32MatchesLibtorchGreedily) {
  const std::filesystem::path dir =
      std::filesystem::path(TANDEM_SOURCE_DIR) / "models" / "tandem-tiny";
  if (!std::filesystem::exists(dir / "model.safetensors")) GTEST_SKIP() << "no shipped model";
  at::InferenceMode guard;
  auto model = Model::Load(dir.string());
  ASSERT_TRUE(model.ok()) << model.status();
  auto fast = FastDecoder::Load(dir.string(), {});
  ASSERT_TRUE(fast.ok()) << fast.status();
  std::vector<int32_t> ids = {8189, 644, 262, 2026, 280, 262, 1000, 35};
  const int64_t steps = 24;
  // Greedy continuation by the libtorch model, then teacher-forced logits of
  // both paths over the whole sequence.
  for (int64_t s = 0; s < steps; ++s) {
    at::Tensor logits = ReferenceLogits(**model, ids);
    ids.push_back(static_cast<int32_t>(logits[-1].argmax().item<int64_t>()));
  }
  const at::Tensor reference = ReferenceLogits(**model, ids);
  ThreadPool pool(2);
  auto ws = (*fast)->NewWorkspace(8, &pool);
  const at::Tensor logits = FastLogits(**fast, ids, 8, ws.get());
  EXPECT_LT(MaxAbsDiff(logits, reference), 1e-4);
  EXPECT_TRUE(at::equal(logits.argmax(-1), reference.argmax(-1)));
}

}  // namespace
}  // namespace tandem
