// Issue 14, items 5-7 on the edge: non-finite logits stop generation with an
// error, generation_config.json's stop ids end it, and head rows beyond the
// tokenizer are never sampled.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tandem/edge/edge_session.h"
#include "testing/tiny_model.h"

namespace tandem::edge {
namespace {

namespace fs = std::filesystem;
using tandem::testing::TempDir;

constexpr char kTokenizer[] = TANDEM_TEST_DATA_DIR "/tokenizer/tiny_bytelevel/tokenizer.json";

// Untied random model + tiny tokenizer in `dir`; fresh exit heads are built
// from the final norm + LM head, so `edit_head` reaches the edge's exits too.
void WriteCheckpoint(const fs::path& dir, int64_t extra_rows,
                     const std::function<void(at::Tensor&)>& edit_head) {
  ModelConfig config = tandem::testing::TinyBiasConfig();
  config.eos_token_ids = {};
  tandem::testing::WriteCheckpointWithTokenizer(config, kTokenizer, dir, extra_rows, /*seed=*/5,
                                                edit_head);
}

absl::StatusOr<std::unique_ptr<EdgeSession>> Session(const fs::path& dir) {
  EdgeOptions o;
  o.model_dir = dir.string();
  o.split = 2;
  o.allow_fresh_heads = true;  // no thresholds: every token is the fallback at S
  return EdgeSession::Create(o);
}

GenerateOptions Request(int32_t n, float temperature = 0.0f, bool stop_at_eos = true) {
  GenerateOptions g;
  g.max_new_tokens = n;
  g.sampling.temperature = temperature;
  g.sampling.seed = 9;
  g.stop_at_eos = stop_at_eos;
  return g;
}

TEST(EdgeTokenRules, NanLogitIsAnError) {
  TempDir dir;
  WriteCheckpoint(dir.path(), 0, [](at::Tensor& head) { head[41].fill_(NAN); });
  auto session = Session(dir.path());
  ASSERT_TRUE(session.ok()) << session.status();
  for (float temperature : {0.0f, 1.0f}) {
    auto r = (*session)->Generate("abc", Request(8, temperature));
    ASSERT_FALSE(r.ok()) << "temperature " << temperature << " generated "
                         << ::testing::PrintToString(r->ids);
    EXPECT_NE(r.status().message().find("NaN"), std::string::npos) << r.status();
  }
}

TEST(EdgeTokenRules, StopsAtGenerationConfigEosIds) {
  TempDir dir;
  WriteCheckpoint(dir.path(), 0, nullptr);
  std::vector<int32_t> reference;
  {
    auto session = Session(dir.path());
    ASSERT_TRUE(session.ok()) << session.status();
    auto r = (*session)->Generate("abc", Request(10, 0.0f, /*stop_at_eos=*/false));
    ASSERT_TRUE(r.ok()) << r.status();
    reference = r->ids;
  }
  ASSERT_EQ(reference.size(), 10u);
  const int32_t stop = reference[3];
  auto tokenizer = Tokenizer::Load(kTokenizer);
  ASSERT_TRUE(tokenizer.ok());
  size_t expected = 0;
  while (expected < reference.size() && reference[expected] != stop &&
         reference[expected] != (*tokenizer)->eos_id()) {
    ++expected;
  }
  std::ofstream(dir.path() / "generation_config.json")
      << "{\"eos_token_id\": [" << stop << "]}";
  auto session = Session(dir.path());
  ASSERT_TRUE(session.ok()) << session.status();
  auto r = (*session)->Generate("abc", Request(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->ids.size(), expected);
  EXPECT_EQ(r->stop_reason, StopReason::kEos);
}

TEST(EdgeTokenRules, NeverSamplesHeadRowsTheTokenizerCannotDecode) {
  TempDir dir;
  WriteCheckpoint(dir.path(), 64, [](at::Tensor& head) {
    const int64_t real = head.size(0) - 64;
    head.narrow(0, 0, real).mul_(0.01);
    head.narrow(0, real, 64).mul_(50.0);
  });
  auto session = Session(dir.path());
  ASSERT_TRUE(session.ok()) << session.status();
  const int32_t ids = (*session)->tokenizer().vocab_size();
  for (float temperature : {0.0f, 1.0f}) {
    auto r = (*session)->Generate("abc", Request(12, temperature, false));
    ASSERT_TRUE(r.ok()) << r.status();  // used to end with "Decode: id ... out of range"
    ASSERT_EQ(r->ids.size(), 12u);
    for (int32_t id : r->ids) EXPECT_LT(id, ids);
  }
  // An explicit limit covering every row brings the extra rows back: the
  // mask above is what kept them out.
  GenerateOptions all = Request(12, 0.0f, false);
  all.sampling.vocab_limit = ids + 64;
  auto raw = (*session)->GenerateIds({5, 6, 7}, all);
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_GE(*std::max_element(raw->ids.begin(), raw->ids.end()), ids);
}

}  // namespace
}  // namespace tandem::edge
