#include "loopback.h"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <mutex>
#include <sstream>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tandem/edge/cloud_link.h"
#include "tandem/edge/edge_engine.h"
#include "tandem/fingerprint.h"
#include "tandem/generate.h"
#include "tandem/tokenizer.h"

namespace tandem::e2e {

std::string ShippedModelDir() { return std::string(TANDEM_SOURCE_DIR) + "/models/tandem-tiny"; }

std::shared_ptr<const cloud::CloudModel> ShippedCloudModel() {
  static std::once_flag once;
  static std::shared_ptr<const cloud::CloudModel> model;
  std::call_once(once, [] {
    cloud::CloudModelOptions options;
    options.model_dir = ShippedModelDir();
    auto loaded = cloud::CloudModel::Create(options);
    if (!loaded.ok()) {
      ADD_FAILURE() << loaded.status();
      return;
    }
    model = std::move(*loaded);
  });
  return model;
}

const Model& ShippedFullModel() {
  static std::once_flag once;
  static std::unique_ptr<Model> model;
  std::call_once(once, [] {
    auto loaded = Model::Load(ShippedModelDir());
    if (!loaded.ok()) std::abort();
    model = std::move(*loaded);
  });
  return *model;
}

std::unique_ptr<cloud::CloudServer> StartServer(cloud::ServerOptions options, int port) {
  options.listen_address = "127.0.0.1:" + std::to_string(port);
  if (std::getenv("TANDEM_TEST_SERVER_LOG") != nullptr) options.log = &std::cerr;
  auto server = cloud::CloudServer::Start(options, ShippedCloudModel());
  if (!server.ok()) {
    ADD_FAILURE() << "server: " << server.status();
    return nullptr;
  }
  return std::move(*server);
}

edge::EdgeOptions CollaborativeOptions(const std::string& address, const std::string& codec,
                                       bool never_exit) {
  edge::EdgeOptions options;
  options.model_dir = ShippedModelDir();
  options.max_context = 512;
  options.cloud.address = address;
  options.cloud.codec = codec;
  options.cloud.request_timeout = absl::Seconds(20);  // generous: CI machines are shared
  options.cloud.reconnect_initial_backoff = absl::Milliseconds(20);
  options.cloud.reconnect_max_backoff = absl::Milliseconds(200);
  if (never_exit) {
    const double inf = std::numeric_limits<double>::infinity();
    options.thresholds = {{2, inf}, {4, inf}};
  }
  return options;
}

std::vector<std::vector<int32_t>> Prompts(int count, int length) {
  static std::once_flag once;
  static std::vector<int32_t> ids;
  std::call_once(once, [] {
    std::ifstream in(std::string(TANDEM_SOURCE_DIR) + "/tests/data/corpus/test_slice.txt");
    std::stringstream text;
    text << in.rdbuf();
    auto tokenizer = Tokenizer::Load(ShippedModelDir());
    if (!tokenizer.ok()) std::abort();
    auto encoded = (*tokenizer)->Encode(text.str(), /*add_special_tokens=*/false);
    if (!encoded.ok()) std::abort();
    ids = *encoded;
  });
  std::vector<std::vector<int32_t>> prompts;
  const size_t stride = ids.size() / std::max(1, count);
  for (int i = 0; i < count; ++i) {
    const size_t begin = (i * stride) % (ids.size() - length);
    prompts.emplace_back(ids.begin() + begin, ids.begin() + begin + length);
  }
  return prompts;
}

std::vector<int32_t> FullGreedy(const std::vector<int32_t>& prompt, int new_tokens) {
  GenerateParams params;
  params.max_new_tokens = new_tokens;
  params.stop_at_eos = false;
  auto stats = GenerateFullIds(ShippedFullModel(), prompt, params, /*eos_id=*/-1);
  if (!stats.ok()) {
    ADD_FAILURE() << stats.status();
    return {};
  }
  return stats->ids;
}

namespace {

// The full model's greedy choice after every prefix of `ids`: element i is
// its choice for position i + 1. One pass, no cache.
std::vector<int64_t> FullArgmax(const std::vector<int32_t>& ids) {
  at::InferenceMode guard;
  const Model& model = ShippedFullModel();
  std::vector<int64_t> all(ids.begin(), ids.end());
  auto hidden = model.Embed(at::tensor(all, at::kLong));
  auto out = model.ForwardLayers(0, model.config().num_hidden_layers, *hidden,
                                 at::arange(static_cast<int64_t>(all.size()), at::kLong), nullptr);
  at::Tensor argmax = model.Logits(*out)->argmax(-1).contiguous();
  return std::vector<int64_t>(argmax.data_ptr<int64_t>(), argmax.data_ptr<int64_t>() + all.size());
}

}  // namespace

std::vector<bool> AgreesWithFull(const std::vector<int32_t>& prompt,
                                 const std::vector<int32_t>& generated) {
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), generated.begin(), generated.end());
  const std::vector<int64_t> argmax = FullArgmax(all);
  std::vector<bool> agree;
  for (size_t i = 0; i < generated.size(); ++i) {
    agree.push_back(argmax[prompt.size() - 1 + i] == generated[i]);
  }
  return agree;
}

TeacherForcedResult TeacherForced(const edge::EdgeOptions& options,
                                  const std::vector<std::vector<int32_t>>& windows) {
  TeacherForcedResult r;
  auto engine = edge::EdgeEngine::Create(options);
  if (!engine.ok()) {
    ADD_FAILURE() << engine.status();
    return r;
  }
  auto fingerprint = SplitFingerprint((*engine)->model(), (*engine)->split());
  auto link = edge::CloudLink::Create(options.cloud, *fingerprint, (*engine)->split(),
                                      (*engine)->exit_layers(),
                                      (*engine)->model().config().hidden_size);
  if (!link.ok()) {
    ADD_FAILURE() << link.status();
    return r;
  }
  int64_t longest = 0;
  for (const auto& w : windows) longest = std::max<int64_t>(longest, w.size());
  auto sequence = (*engine)->NewSequence(longest, link->get());
  if (!sequence.ok()) {
    ADD_FAILURE() << sequence.status();
    return r;
  }
  (*sequence)->set_cloud(link->get(), options.cloud.request_timeout);
  for (const auto& window : windows) {
    const std::vector<int64_t> argmax = FullArgmax(window);
    auto step = (*sequence)->Start(absl::MakeConstSpan(window.data(), 1));
    for (size_t p = 1; p < window.size() && step.ok(); ++p) {
      step = (*sequence)->AwaitVerdict(*step);
      if (!step.ok()) break;
      const bool agrees = argmax[p - 1] == step->token;
      ++r.positions;
      r.agreed += agrees;
      r.promised_agreed += step->source == edge::TokenSource::kExit ? agrees : 1;
      r.at_edge += step->source == edge::TokenSource::kExit;
      r.cloud += step->source == edge::TokenSource::kCloud;
      r.fallback += step->source == edge::TokenSource::kFallback;
      step = (*sequence)->Step(window[p]);  // teacher forcing: feed the text, not the choice
    }
    if (!step.ok()) ADD_FAILURE() << step.status();
    (*sequence)->Finish();
  }
  return r;
}

edge::GenerateOptions Greedy(int new_tokens) {
  edge::GenerateOptions options;
  options.max_new_tokens = new_tokens;
  options.stop_at_eos = false;
  options.add_special_tokens = false;
  return options;
}

}  // namespace tandem::e2e
