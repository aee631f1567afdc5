// Model::ForwardLayersPacked: several sequences' rows in one call equal each
// sequence run alone through ForwardLayers with its cache.
#include <memory>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tandem/model.h"
#include "testing/tiny_model.h"

namespace tandem {
namespace {

using ::tandem::testing::TinyBiasConfig;
using ::tandem::testing::TinyGqaConfig;

at::Tensor Range(int64_t a, int64_t b) { return at::arange(a, b, at::kLong); }

float MaxDiff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kFloat) - b.to(at::kFloat)).abs().max().item<float>();
}

class PackedConfigs : public ::testing::TestWithParam<ModelConfig> {};

// Sequence i already holds `held[i]` positions (prefilled alone), then gets
// `rows[i]` more rows in one packed call with the others.
TEST_P(PackedConfigs, PackedEqualsEachSequenceAlone) {
  at::InferenceMode guard;
  auto model = Model::CreateRandom(GetParam(), {}, 11);
  ASSERT_TRUE(model.ok()) << model.status();
  const Model& m = **model;
  const int64_t d = m.config().hidden_size;
  const std::vector<int64_t> held = {0, 3, 7, 1, 12};
  const std::vector<int64_t> rows = {4, 1, 2, 5, 1};
  const int64_t begin = 1, end = 4;  // a range not starting at layer 0
  const size_t n = held.size();

  std::vector<std::unique_ptr<KVCache>> packed_caches, alone_caches;
  std::vector<at::Tensor> inputs, expected;
  at::manual_seed(3);
  for (size_t i = 0; i < n; ++i) {
    for (auto* caches : {&packed_caches, &alone_caches}) {
      auto c = m.NewCache(32, begin, end);
      ASSERT_TRUE(c.ok()) << c.status();
      caches->push_back(std::move(*c));
    }
    // The same history in both caches.
    if (held[i] > 0) {
      at::Tensor history = at::randn({held[i], d});
      for (auto* caches : {&packed_caches, &alone_caches}) {
        auto out = m.ForwardLayers(begin, end, history, Range(0, held[i]), (*caches)[i].get());
        ASSERT_TRUE(out.ok()) << out.status();
      }
    }
    inputs.push_back(at::randn({rows[i], d}));
    auto alone = m.ForwardLayers(begin, end, inputs[i], Range(held[i], held[i] + rows[i]),
                                 alone_caches[i].get());
    ASSERT_TRUE(alone.ok()) << alone.status();
    expected.push_back(*alone);
  }

  std::vector<PackedSegment> segments;
  for (size_t i = 0; i < n; ++i) segments.push_back({rows[i], held[i], packed_caches[i].get()});
  auto packed = m.ForwardLayersPacked(begin, end, at::cat(inputs, 0), segments);
  ASSERT_TRUE(packed.ok()) << packed.status();
  ASSERT_EQ(packed->size(0), at::cat(inputs, 0).size(0));

  int64_t offset = 0;
  for (size_t i = 0; i < n; ++i) {
    EXPECT_LT(MaxDiff(packed->narrow(0, offset, rows[i]), expected[i]), 1e-5) << "sequence " << i;
    offset += rows[i];
    for (int64_t l = begin; l < end; ++l) {
      ASSERT_EQ(packed_caches[i]->length(l), held[i] + rows[i]);
      EXPECT_LT(MaxDiff(packed_caches[i]->keys(l), alone_caches[i]->keys(l)), 1e-5);
      EXPECT_LT(MaxDiff(packed_caches[i]->values(l), alone_caches[i]->values(l)), 1e-5);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, PackedConfigs, ::testing::Values(TinyGqaConfig(), TinyBiasConfig()),
                         [](const ::testing::TestParamInfo<ModelConfig>& info) {
                           return info.param.model_type;
                         });

// Decoding step after step, the packed path keeps agreeing with the full
// forward of each sequence (the cache it appends to is right).
TEST(ModelPacked, RepeatedPackedDecodeMatchesFullForward) {
  at::InferenceMode guard;
  auto model = Model::CreateRandom(TinyGqaConfig(), {}, 5);
  ASSERT_TRUE(model.ok());
  const Model& m = **model;
  const int64_t d = m.config().hidden_size, steps = 6;
  at::manual_seed(9);
  std::vector<at::Tensor> seqs = {at::randn({steps + 2, d}), at::randn({steps + 5, d})};
  std::vector<int64_t> prompt = {2, 5};
  std::vector<std::unique_ptr<KVCache>> caches;
  std::vector<int64_t> pos = prompt;
  std::vector<at::Tensor> got(2);
  for (size_t i = 0; i < 2; ++i) caches.push_back(std::move(*m.NewCache(32)));
  // Prompts packed together, then one row each per step.
  {
    std::vector<PackedSegment> segs = {{prompt[0], 0, caches[0].get()},
                                       {prompt[1], 0, caches[1].get()}};
    auto out = m.ForwardLayersPacked(
        0, 4, at::cat({seqs[0].narrow(0, 0, prompt[0]), seqs[1].narrow(0, 0, prompt[1])}), segs);
    ASSERT_TRUE(out.ok()) << out.status();
    got[0] = out->narrow(0, 0, prompt[0]);
    got[1] = out->narrow(0, prompt[0], prompt[1]);
  }
  for (int64_t step = 0; step < steps; ++step) {
    std::vector<PackedSegment> segs = {{1, pos[0], caches[0].get()}, {1, pos[1], caches[1].get()}};
    auto out = m.ForwardLayersPacked(
        0, 4, at::cat({seqs[0].narrow(0, pos[0], 1), seqs[1].narrow(0, pos[1], 1)}), segs);
    ASSERT_TRUE(out.ok()) << out.status();
    got[0] = at::cat({got[0], out->narrow(0, 0, 1)});
    got[1] = at::cat({got[1], out->narrow(0, 1, 1)});
    ++pos[0];
    ++pos[1];
  }
  for (size_t i = 0; i < 2; ++i) {
    auto full = m.ForwardLayers(0, 4, seqs[i].narrow(0, 0, pos[i]), Range(0, pos[i]), nullptr);
    ASSERT_TRUE(full.ok());
    EXPECT_LT(MaxDiff(got[i], *full), 1e-5) << "sequence " << i;
  }
}

TEST(ModelPacked, InvalidSegmentsAreRefusedWithoutTouchingAnyCache) {
  at::InferenceMode guard;
  auto model = Model::CreateRandom(TinyGqaConfig(), {}, 2);
  ASSERT_TRUE(model.ok());
  const Model& m = **model;
  const int64_t d = m.config().hidden_size;
  auto a = std::move(*m.NewCache(8, 2, 4));
  auto b = std::move(*m.NewCache(8, 2, 4));
  auto lacking = std::move(*m.NewCache(8, 3, 4));
  ASSERT_TRUE(m.ForwardLayers(2, 4, at::randn({3, d}), Range(0, 3), a.get()).ok());
  ASSERT_TRUE(m.ForwardLayers(2, 4, at::randn({1, d}), Range(0, 1), b.get()).ok());
  at::Tensor a_keys = a->keys(2).clone(), b_keys = b->keys(3).clone();
  at::Tensor h3 = at::randn({3, d});

  struct Case {
    const char* name;
    int64_t begin, end;
    at::Tensor hidden;
    std::vector<PackedSegment> segments;
    absl::StatusCode code;
  };
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  std::vector<Case> cases = {
      {"valid first, wrong position second", 2, 4, h3, {{2, 3, a.get()}, {1, 0, b.get()}}, kInvalid},
      {"duplicate position", 2, 4, h3, {{1, 3, a.get()}, {2, 0, b.get()}}, kInvalid},
      {"rows do not add up", 2, 4, h3, {{1, 3, a.get()}, {1, 1, b.get()}}, kInvalid},
      {"no cache", 2, 4, h3, {{2, 3, a.get()}, {1, 1, nullptr}}, kInvalid},
      {"shared cache", 2, 4, h3, {{2, 3, a.get()}, {1, 3, a.get()}}, kInvalid},
      {"empty segment", 2, 4, h3, {{3, 3, a.get()}, {0, 1, b.get()}}, kInvalid},
      {"negative position", 2, 4, h3, {{2, -1, a.get()}, {1, 1, b.get()}}, kInvalid},
      {"cache lacks a layer", 2, 4, h3, {{2, 3, a.get()}, {1, 0, lacking.get()}}, kInvalid},
      {"layers not loaded", 2, 5, h3, {{2, 3, a.get()}, {1, 1, b.get()}}, kInvalid},
      {"wrong width", 2, 4, at::randn({3, d + 1}), {{2, 3, a.get()}, {1, 1, b.get()}}, kInvalid},
      {"3-D hidden", 2, 4, at::randn({1, 3, d}), {{2, 3, a.get()}, {1, 1, b.get()}}, kInvalid},
      {"no segments", 2, 4, h3, {}, kInvalid},
      {"over capacity", 2, 4, at::randn({9, d}), {{1, 3, a.get()}, {8, 1, b.get()}},
       absl::StatusCode::kOutOfRange},
  };
  for (const Case& c : cases) {
    auto out = m.ForwardLayersPacked(c.begin, c.end, c.hidden, c.segments);
    EXPECT_EQ(out.status().code(), c.code) << c.name << ": " << out.status();
    for (int64_t l = 2; l < 4; ++l) {
      EXPECT_EQ(a->length(l), 3) << c.name;
      EXPECT_EQ(b->length(l), 1) << c.name;
    }
    EXPECT_EQ(lacking->length(3), 0) << c.name;
    EXPECT_TRUE(at::equal(a->keys(2), a_keys)) << c.name;
    EXPECT_TRUE(at::equal(b->keys(3), b_keys)) << c.name;
  }
  // The same caches then take a valid packed call.
  auto ok = m.ForwardLayersPacked(2, 4, h3, std::vector<PackedSegment>{{2, 3, a.get()},
                                                                       {1, 1, b.get()}});
  EXPECT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(a->length(3), 5);
  EXPECT_EQ(b->length(2), 2);
}

}  // namespace
}  // namespace tandem
