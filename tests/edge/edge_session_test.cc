// EdgeSession: the SDK on a random tiny checkpoint written to disk with exit
// heads and a tokenizer — loading only the edge's layers, options resolved from
// exits.json, streaming, stops, cancellation, statistics and errors.
#include "tandem/edge/edge_session.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "testing/tiny_model.h"

namespace tandem::edge {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using tandem::testing::TempDir;

constexpr char kTokenizer[] = TANDEM_TEST_DATA_DIR "/tokenizer/tiny_bytelevel/tokenizer.json";

// A 4-layer random model with the tiny byte-level tokenizer and exit heads at
// 1, 2, 3 (thresholds calibrated-looking, max_prob) in `dir`.
struct Checkpoint {
  TempDir dir;
  std::unique_ptr<Model> full;
  std::string path() const { return dir.path().string(); }
};

std::unique_ptr<Checkpoint> WriteCheckpoint(bool with_heads = true) {
  auto c = std::make_unique<Checkpoint>();
  auto tokenizer = Tokenizer::Load(kTokenizer);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  ModelConfig config = testing::TinyGqaConfig();
  config.vocab_size = (*tokenizer)->vocab_size();
  config.eos_token_ids = {};
  c->full = testing::WriteRandomModel(config, c->dir.path(), 7);
  fs::copy_file(kTokenizer, c->dir.path() / "tokenizer.json");
  if (with_heads) {
    auto heads = ExitHeads::Create(*c->full, {1, 2, 3}, 0, 1);
    EXPECT_TRUE(heads.ok());
    ExitThresholds t;
    t.measure = ConfidenceMeasure::kMaxProb;
    t.by_layer = {{1, 0.9}, {2, 0.8}, {3, 0.7}};
    (*heads)->set_thresholds(t);
    EXPECT_TRUE((*heads)->Save(c->path()).ok());
  }
  return c;
}

EdgeOptions Options(const Checkpoint& c) {
  EdgeOptions o;
  o.model_dir = c.path();
  o.split = 3;
  return o;
}

GenerateOptions Plain(int32_t max_new_tokens) {
  GenerateOptions g;
  g.max_new_tokens = max_new_tokens;
  g.stop_at_eos = false;
  return g;
}

TEST(EdgeSession, LoadsOnlyTheEdgeLayers) {
  auto c = WriteCheckpoint();
  auto session = EdgeSession::Create(Options(*c));
  ASSERT_TRUE(session.ok()) << session.status();
  const Model& edge = (*session)->engine().model();
  EXPECT_EQ(edge.layer_begin(), 0);
  EXPECT_EQ(edge.layer_end(), 3);
  EXPECT_LT(edge.weight_bytes(), c->full->weight_bytes());
  for (const auto& [name, t] : edge.NamedParameters()) {
    EXPECT_THAT(name, ::testing::Not(HasSubstr("layers.3."))) << "the cloud's layer was loaded";
  }
}

TEST(EdgeSession, SplitExitsAndThresholdsComeFromExitsJson) {
  auto c = WriteCheckpoint();
  EdgeOptions o;
  o.model_dir = c->path();
  auto session = EdgeSession::Create(o);
  ASSERT_TRUE(session.ok()) << session.status();
  const EdgeEngine& e = (*session)->engine();
  EXPECT_EQ(e.split(), 3);  // the deepest head
  EXPECT_EQ(e.exit_layers(), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(e.policy().thresholds.at(2), 0.8);
  // Options override; S is always an exit.
  o.split = 2;
  o.exit_layers = {1};
  o.thresholds = {{1, 0.25}};
  session = EdgeSession::Create(o);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ((*session)->engine().exit_layers(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ((*session)->engine().policy().thresholds.at(1), 0.25);
  EXPECT_EQ((*session)->engine().policy().thresholds.at(2), 0.8);
  // Another measure discards the calibrated thresholds.
  o.measure = ConfidenceMeasure::kMargin;
  o.thresholds = {};
  session = EdgeSession::Create(o);
  ASSERT_TRUE(session.ok());
  EXPECT_TRUE(std::isinf((*session)->engine().policy().thresholds.at(1)));
}

TEST(EdgeSession, BadOptionsAreClearErrors) {
  auto c = WriteCheckpoint();
  EdgeOptions o;
  EXPECT_EQ(EdgeSession::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  TempDir empty;
  o.model_dir = empty.path().string();
  auto s = EdgeSession::Create(o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("config.json"));
  o.model_dir = (empty.path() / "missing").string();
  EXPECT_EQ(EdgeSession::Create(o).status().code(), absl::StatusCode::kNotFound);

  o = Options(*c);
  o.split = 5;
  s = EdgeSession::Create(o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("beyond the model"));
  o = Options(*c);
  o.split = 2;
  o.exit_layers = {1, 3};
  s = EdgeSession::Create(o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("beyond the split"));
  o = Options(*c);
  o.thresholds = {{4, 0.5}};
  EXPECT_EQ(EdgeSession::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options(*c);
  o.max_context = 100000;
  EXPECT_EQ(EdgeSession::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(EdgeSession, MissingHeadsNeedAllowFreshHeads) {
  auto c = WriteCheckpoint(/*with_heads=*/false);
  EdgeOptions o = Options(*c);
  o.exit_layers = {1};
  auto s = EdgeSession::Create(o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("train-exits"));
  o.allow_fresh_heads = true;
  o.thresholds = {{1, 0.5}};
  s = EdgeSession::Create(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->engine().exit_layers(), (std::vector<int64_t>{1, 3}));
  auto summary = (*s)->Generate("hello", Plain(4));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->generated_tokens, 4);
}

TEST(EdgeSession, StreamsUpToMaxTokensWithPerTokenInfo) {
  auto c = WriteCheckpoint();
  RecordingSink sink;
  EdgeOptions o = Options(*c);
  o.context_sink = &sink;
  auto session = EdgeSession::Create(o).value();
  std::vector<TokenInfo> tokens;
  std::string streamed;
  auto summary = session->Generate("the quick brown fox", Plain(12), [&](const TokenInfo& t) {
    tokens.push_back(t);
    streamed += t.text;
    return true;
  });
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->stop_reason, StopReason::kMaxTokens);
  EXPECT_EQ(summary->generated_tokens, 12);
  EXPECT_EQ(summary->counts.total(), 12);
  EXPECT_EQ(streamed, summary->text);
  EXPECT_EQ(summary->text, session->tokenizer().Decode(summary->ids, true).value());
  int64_t position = summary->prompt_tokens;
  for (const TokenInfo& t : tokens) {
    if (t.id < 0) continue;  // the text-only tail
    EXPECT_EQ(t.position, position++);
    EXPECT_GE(t.exit_layer, 1);
    EXPECT_LE(t.exit_layer, 3);
    EXPECT_GT(t.seconds, 0.0);
  }
  // Every fed position whose row reached S went to the sink.
  EXPECT_EQ(summary->bytes_to_sink, sink.next_position() * 32 * 4);
  EXPECT_EQ(sink.finishes(), 1);
  SessionStats stats = session->stats();
  EXPECT_EQ(stats.generations, 1);
  EXPECT_EQ(stats.generated_tokens, 12);
  EXPECT_EQ(stats.decode_steps, 11);
  EXPECT_GT(stats.seconds_per_token(), 0.0);
  EXPECT_EQ(stats.bytes_to_sink, summary->bytes_to_sink);
}

TEST(EdgeSession, ZeroThresholdsDecideEveryTokenAtTheFirstExit) {
  auto c = WriteCheckpoint();
  EdgeOptions o = Options(*c);
  o.thresholds = {{1, 0.0}, {2, 0.0}, {3, 0.0}};
  auto session = EdgeSession::Create(o).value();
  auto summary = session->Generate("abc", Plain(8));
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->counts.exited.at(1), 8);
  EXPECT_EQ(summary->counts.total(), 8);
}

TEST(EdgeSession, ThresholdsAboveOneFallBackToTheDeepestExit) {
  auto c = WriteCheckpoint();
  EdgeOptions o = Options(*c);
  o.thresholds = {{1, 1.01}, {2, 1.01}, {3, 1.01}};
  auto session = EdgeSession::Create(o).value();
  auto summary = session->Generate("abc", Plain(8));
  ASSERT_TRUE(summary.ok());
  EXPECT_TRUE(summary->counts.exited.empty());
  EXPECT_EQ(summary->counts.fallback.at(3), 8);
}

TEST(EdgeSession, StopsAtAStopStringWithoutShowingIt) {
  auto c = WriteCheckpoint();
  auto session = EdgeSession::Create(Options(*c)).value();
  // Seeded sampling: varied, reproducible text (greedy on a random model tends
  // to repeat one special token, which has no text).
  GenerateOptions g = Plain(24);
  g.sampling.temperature = 1.0f;
  g.sampling.seed = 5;
  auto full = session->Generate("once upon", g);
  ASSERT_TRUE(full.ok());
  ASSERT_GE(full->text.size(), 8u);
  const std::string stop = full->text.substr(full->text.size() / 2, 2);
  const std::string want = full->text.substr(0, full->text.find(stop));
  g.stop_strings = {"never-appears-here", stop};
  std::string streamed;
  auto cut = session->Generate("once upon", g, [&](const TokenInfo& t) {
    streamed += t.text;
    return true;
  });
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut->stop_reason, StopReason::kStopString);
  EXPECT_EQ(cut->text, want);
  EXPECT_EQ(streamed, want);
  g.stop_strings = {""};
  EXPECT_EQ(session->Generate("x", g).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(EdgeSession, CancelFromAnotherThreadStopsBeforeTheNextStep) {
  auto c = WriteCheckpoint();
  auto session = EdgeSession::Create(Options(*c)).value();
  int seen = 0;
  auto summary = session->Generate("abc", Plain(50), [&](const TokenInfo& t) {
    if (t.id >= 0 && ++seen == 3) {
      std::thread canceller([&] { session->Cancel(); });
      canceller.join();
    }
    return true;
  });
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->stop_reason, StopReason::kCancelled);
  EXPECT_EQ(summary->generated_tokens, 3);
  // The next Generate is not affected by the earlier Cancel.
  auto next = session->Generate("abc", Plain(5));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->generated_tokens, 5);
}

TEST(EdgeSession, CancelWhileAnotherThreadGenerates) {
  auto c = WriteCheckpoint();
  auto session = EdgeSession::Create(Options(*c)).value();
  std::atomic<int> tokens{0};
  absl::StatusOr<GenerationSummary> summary;
  std::thread worker([&] {
    summary = session->Generate("abc", Plain(100), [&](const TokenInfo&) {
      ++tokens;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      return true;
    });
  });
  while (tokens.load() < 2) std::this_thread::yield();
  session->Cancel();
  worker.join();
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->stop_reason, StopReason::kCancelled);
  EXPECT_LT(summary->generated_tokens, 100);
}

TEST(EdgeSession, CallbackStopsAndSecondConcurrentGenerateIsRefused) {
  auto c = WriteCheckpoint();
  auto session = EdgeSession::Create(Options(*c)).value();
  absl::Status inner;
  auto summary = session->Generate("abc", Plain(10), [&](const TokenInfo&) {
    inner = session->Generate("def", Plain(2)).status();
    return false;
  });
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->stop_reason, StopReason::kCallback);
  EXPECT_EQ(summary->generated_tokens, 1);
  EXPECT_EQ(inner.code(), absl::StatusCode::kFailedPrecondition);
}

TEST(EdgeSession, PromptLongerThanTheContextIsAnError) {
  auto c = WriteCheckpoint();
  EdgeOptions o = Options(*c);
  o.max_context = 8;
  auto session = EdgeSession::Create(o).value();
  auto s = session->GenerateIds({1, 2, 3, 4, 5, 6, 7, 8, 9}, Plain(4));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("longer than the context"));
  // A prompt that fits runs until the context is full.
  auto r = session->GenerateIds({1, 2, 3, 4, 5}, Plain(100));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stop_reason, StopReason::kContextFull);
  EXPECT_EQ(r->generated_tokens, 8 - 5 + 1);
}

TEST(EdgeSession, RejectsBadRequests) {
  auto c = WriteCheckpoint();
  auto session = EdgeSession::Create(Options(*c)).value();
  GenerateOptions g = Plain(4);
  g.add_special_tokens = false;
  EXPECT_EQ(session->Generate("", g).status().code(), absl::StatusCode::kInvalidArgument);
  g.max_new_tokens = -1;
  EXPECT_EQ(session->Generate("a", g).status().code(), absl::StatusCode::kInvalidArgument);
  g = Plain(4);
  g.sampling.temperature = -1.0f;
  EXPECT_EQ(session->Generate("a", g).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(session->GenerateIds({1, 100000}, Plain(2)).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto zero = session->Generate("a", Plain(0));
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero->generated_tokens, 0);
}

TEST(EdgeSession, SamplingIsSeededAndReproducible) {
  auto c = WriteCheckpoint();
  auto session = EdgeSession::Create(Options(*c)).value();
  GenerateOptions g = Plain(10);
  g.sampling.temperature = 1.0f;
  g.sampling.seed = 3;
  auto a = session->Generate("abc", g);
  auto b = session->Generate("abc", g);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->ids, b->ids);
}

}  // namespace
}  // namespace tandem::edge
