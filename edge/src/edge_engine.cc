#include "tandem/edge/edge_engine.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include "absl/base/macros.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tandem/model_config.h"
#include "tandem/speculative.h"
#include "tandem/status_macros.h"
#include "tandem/threads.h"

namespace tandem::edge {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr double kNever = std::numeric_limits<double>::infinity();

// What exits.json says about the split and the layers, read before any weights
// so bad options fail fast. Absent file = empty.
struct ExitsFile {
  bool present = false;
  int64_t split = 0;
  std::vector<int64_t> layers;
};

absl::StatusOr<ExitsFile> ReadExitsFile(const fs::path& dir) {
  ExitsFile out;
  const fs::path path = dir / "exits.json";
  if (!fs::exists(path)) return out;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  json j = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not a JSON object"));
  }
  out.present = true;
  if (j.contains("split") && j["split"].is_number_integer()) out.split = j["split"].get<int64_t>();
  if (j.contains("layers") && j["layers"].is_array()) {
    for (const json& l : j["layers"]) {
      if (l.is_number_integer()) out.layers.push_back(l.get<int64_t>());
    }
  }
  return out;
}

absl::Status ValidateExits(const std::vector<int64_t>& exits, int64_t split) {
  for (int64_t e : exits) {
    if (e <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("exit layer ", e, " must be >= 1"));
    }
    if (e > split) {
      return absl::InvalidArgumentError(absl::StrCat(
          "exit layer ", e, " is beyond the split ", split, ": the edge holds layers [0, ", split,
          ") only"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ExitPolicy> ResolvePolicy(const EdgeOptions& options, const ExitHeads& heads,
                                         const std::vector<int64_t>& exits) {
  ExitPolicy policy;
  const ExitThresholds& calibrated = heads.thresholds();
  policy.measure = options.measure.value_or(calibrated.measure);
  policy.fallback = options.fallback;
  const bool use_calibrated = policy.measure == calibrated.measure;
  for (int64_t e : exits) {
    double t = kNever;
    auto it = calibrated.by_layer.find(e);
    if (use_calibrated && it != calibrated.by_layer.end()) t = it->second;
    policy.thresholds[e] = t;
  }
  for (const auto& [layer, t] : options.thresholds) {
    if (!policy.thresholds.count(layer)) {
      return absl::InvalidArgumentError(absl::StrCat("a threshold is given for layer ", layer,
                                                     ", which is not an exit (exits: ",
                                                     absl::StrJoin(exits, ","), ")"));
    }
    if (std::isnan(t)) return absl::InvalidArgumentError("a threshold is NaN");
    policy.thresholds[layer] = t;
  }
  return policy;
}

absl::StatusOr<std::unique_ptr<EdgeEngine>> CreateImpl(const EdgeOptions& options) {
  if (options.model_dir.empty()) {
    return absl::InvalidArgumentError("EdgeOptions.model_dir is empty");
  }
  const fs::path dir(options.model_dir);
  if (!fs::is_directory(dir)) {
    return absl::NotFoundError(absl::StrCat("model directory ", options.model_dir,
                                            " does not exist"));
  }
  if (!fs::exists(dir / "config.json")) {
    return absl::NotFoundError(absl::StrCat(
        options.model_dir, " has no config.json (expected a Hugging Face checkpoint directory)"));
  }
  TANDEM_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::FromFile((dir / "config.json").string()));
  const int64_t num_layers = config.num_hidden_layers;
  if (options.split < 0 || options.split > num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("split ", options.split,
                                                   " is beyond the model: it has ", num_layers,
                                                   " layers (the split must be in [1, ",
                                                   num_layers, "])"));
  }
  if (options.max_context < 0 || options.max_context > config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat("max_context ", options.max_context,
                                                   " must be in [0, max_position_embeddings = ",
                                                   config.max_position_embeddings, "]"));
  }
  if (options.compute_threads < 0) {
    return absl::InvalidArgumentError("compute_threads must be >= 0");
  }
  TANDEM_ASSIGN_OR_RETURN(ExitsFile file, ReadExitsFile(dir));

  // S: options, else exits.json's split, else its deepest exit, else the
  // deepest requested exit.
  int64_t split = options.split;
  if (split == 0) split = file.split;
  if (split == 0 && !file.layers.empty()) {
    split = *std::max_element(file.layers.begin(), file.layers.end());
  }
  if (split == 0 && !options.exit_layers.empty()) {
    split = *std::max_element(options.exit_layers.begin(), options.exit_layers.end());
  }
  if (split == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "no split given and ", options.model_dir, " has no exits.json to take it from"));
  }
  if (split < 1 || split > num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("split ", split, " is beyond the model: it has ",
                                                   num_layers, " layers"));
  }
  std::vector<int64_t> exits = options.exit_layers;
  TANDEM_RETURN_IF_ERROR(ValidateExits(exits, split));
  if (exits.empty()) {
    for (int64_t l : file.layers) {
      if (l > 0 && l <= split) exits.push_back(l);
    }
  }
  exits.push_back(split);
  std::sort(exits.begin(), exits.end());
  exits.erase(std::unique(exits.begin(), exits.end()), exits.end());

  if (options.compute_threads > 0) SetComputeThreads(options.compute_threads);

  // Only what the edge runs: layers [0, S), the embedding, the final norm and
  // LM head (shared by the exit heads). Layers [S, L) are never read.
  ModelOptions model_options;
  model_options.layer_begin = 0;
  model_options.layer_end = split;
  model_options.load_embedding = true;
  model_options.load_head = true;
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                          Model::Load(options.model_dir, model_options));

  std::unique_ptr<ExitHeads> heads;
  auto loaded = ExitHeads::Load(options.model_dir, *model);
  if (loaded.ok()) {
    heads = std::move(*loaded);
  } else if (loaded.status().code() == absl::StatusCode::kNotFound && options.allow_fresh_heads) {
    TANDEM_ASSIGN_OR_RETURN(heads, ExitHeads::Create(*model, exits, /*adapter_rank=*/0, 0));
  } else if (loaded.status().code() == absl::StatusCode::kNotFound) {
    return absl::NotFoundError(absl::StrCat(
        loaded.status().message(),
        "; train heads with `tandem train-exits`, or set allow_fresh_heads (--fresh-heads)"));
  } else {
    return loaded.status();
  }
  for (int64_t e : exits) {
    if (!heads->HasLayer(e)) {
      return absl::NotFoundError(absl::StrCat(
          "no exit head at layer ", e, (e == split ? " (the split always needs one)" : ""),
          "; the heads in ", options.model_dir, " are at layers ",
          absl::StrJoin(heads->layers(), ",")));
    }
  }
  TANDEM_ASSIGN_OR_RETURN(ExitPolicy policy, ResolvePolicy(options, *heads, exits));
  return EdgeEngine::FromParts(std::shared_ptr<const Model>(std::move(model)),
                               std::shared_ptr<const ExitHeads>(std::move(heads)), split,
                               std::move(policy), options.max_context, options.weights,
                               options.thread_pool);
}

}  // namespace

const char* StandaloneFallbackName(StandaloneFallback f) {
  switch (f) {
    case StandaloneFallback::kDeepest: return "deepest";
    case StandaloneFallback::kMostConfident: return "most_confident";
  }
  return "?";
}

const char* TokenSourceName(TokenSource s) {
  switch (s) {
    case TokenSource::kExit: return "exit";
    case TokenSource::kFallback: return "fallback";
    case TokenSource::kCloud: return "cloud";
  }
  return "?";
}

absl::StatusOr<std::unique_ptr<EdgeEngine>> EdgeEngine::Create(const EdgeOptions& options) {
  try {
    return CreateImpl(options);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("EdgeEngine::Create: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("EdgeEngine::Create: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<EdgeEngine>> EdgeEngine::FromParts(
    std::shared_ptr<const Model> model, std::shared_ptr<const ExitHeads> heads, int64_t split,
    ExitPolicy policy, int64_t max_context, std::optional<WeightFormat> weights,
    ThreadPool* pool) {
  if (model == nullptr || heads == nullptr) {
    return absl::InvalidArgumentError("EdgeEngine needs a model and exit heads");
  }
  const ModelConfig& c = model->config();
  if (split < 1 || split > c.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat("split ", split, " is beyond the model: it has ",
                                                   c.num_hidden_layers, " layers"));
  }
  if (model->layer_begin() != 0 || model->layer_end() < split) {
    return absl::InvalidArgumentError(absl::StrCat("the model holds layers [", model->layer_begin(),
                                                   ", ", model->layer_end(),
                                                   "), the edge needs [0, ", split, ")"));
  }
  if (!model->options().load_embedding || !model->options().load_head) {
    return absl::InvalidArgumentError("the edge model needs its embedding and head loaded");
  }
  std::vector<int64_t> exits;
  for (const auto& [layer, t] : policy.thresholds) exits.push_back(layer);  // std::map: sorted
  if (exits.empty() || exits.back() != split) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the exits must include the split ", split, " and nothing beyond it"));
  }
  TANDEM_RETURN_IF_ERROR(ValidateExits(exits, split));
  for (int64_t e : exits) {
    if (!heads->HasLayer(e)) {
      return absl::InvalidArgumentError(absl::StrCat("no exit head at layer ", e));
    }
  }
  if (max_context < 0 || max_context > c.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat("max_context must be in [0, ",
                                                   c.max_position_embeddings, "]"));
  }
  auto engine = std::unique_ptr<EdgeEngine>(new EdgeEngine());
  if (weights.has_value()) {
    FastDecoderOptions fast_options;
    fast_options.format = *weights;
    fast_options.layer_end = split;
    TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<FastDecoder> fast,
                            FastDecoder::FromModel(*model, fast_options));
    engine->fast_ = std::move(fast);
    TANDEM_ASSIGN_OR_RETURN(engine->fast_heads_, ConvertExitHeads(*heads));
    engine->pool_ = pool;
  }
  engine->model_ = std::move(model);
  engine->heads_ = std::move(heads);
  engine->split_ = split;
  engine->exit_layers_ = std::move(exits);
  engine->policy_ = std::move(policy);
  engine->max_context_ = max_context > 0 ? max_context : c.max_position_embeddings;
  return engine;
}

absl::StatusOr<std::unique_ptr<EdgeSequence>> EdgeEngine::NewSequence(int64_t capacity,
                                                                      ContextSink* sink) const {
  if (capacity < 0 || capacity > model_->config().max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat("capacity must be in [0, ",
                                                   model_->config().max_position_embeddings, "]"));
  }
  if (capacity == 0) capacity = max_context_;
  try {
    at::InferenceMode guard;
    if (fast_ != nullptr) {
      TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<KVCache> cache, fast_->NewCache(capacity, 0, split_));
      auto seq = std::unique_ptr<EdgeSequence>(new EdgeSequence(*this, std::move(cache), sink));
      // Prompts prefill in chunks of 8 rows; a step has at most 2-3 rows.
      seq->workspace_ = fast_->NewWorkspace(8, pool_);
      return seq;
    }
    TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<KVCache> cache, model_->NewCache(capacity, 0, split_));
    return std::unique_ptr<EdgeSequence>(new EdgeSequence(*this, std::move(cache), sink));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("NewSequence: ", e.what_without_backtrace()));
  }
}

// --- EdgeSequence -----------------------------------------------------------

EdgeSequence::EdgeSequence(const EdgeEngine& engine, std::unique_ptr<KVCache> cache,
                           ContextSink* sink)
    : engine_(engine), cache_(std::move(cache)), sink_(sink) {
  for (int64_t e : engine_.exit_layers()) thresholds_.push_back(engine_.policy().thresholds.at(e));
}

absl::Status EdgeSequence::set_thresholds(const std::map<int64_t, double>& thresholds) {
  const std::vector<int64_t>& exits = engine_.exit_layers();
  for (const auto& [layer, t] : thresholds) {
    if (std::find(exits.begin(), exits.end(), layer) == exits.end()) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " is not an exit"));
    }
    if (std::isnan(t)) return absl::InvalidArgumentError("a threshold is NaN");
  }
  for (size_t i = 0; i < exits.size(); ++i) {
    auto it = thresholds.find(exits[i]);
    if (it != thresholds.end()) thresholds_[i] = it->second;
  }
  return absl::OkStatus();
}

int64_t EdgeSequence::capacity() const { return cache_->capacity(); }

int64_t EdgeSequence::pending_rows() const {
  int64_t n = 0;
  for (const PendingGroup& g : pending_) n += g.rows.size(0);
  return n;
}

absl::StatusOr<StepResult> EdgeSequence::Start(absl::Span<const int32_t> prompt,
                                               const SamplingParams& sampling) {
  started_ = false;
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  TANDEM_RETURN_IF_ERROR(sampling.Validate());
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n > cache_->capacity()) {
    return absl::OutOfRangeError(absl::StrCat("the prompt has ", n,
                                              " tokens but the context holds ",
                                              cache_->capacity()));
  }
  try {
    at::InferenceMode guard;
    TANDEM_ASSIGN_OR_RETURN(at::Tensor x, Embed(prompt));
    cache_->Clear();
    pending_.clear();
    position_ = 0;
    sink_next_ = 0;
    bytes_to_sink_ = 0;
    sampling_ = sampling;
    sampler_.emplace(sampling);
    finished_ = false;
    if (sink_ != nullptr) {
      sink_->OnBegin(SequenceInfo{sampling, cache_->capacity()});
      sink_->OnInput(0, prompt);
    }
    StepResult result;
    TANDEM_RETURN_IF_ERROR(Advance(x, /*decide=*/true, /*may_defer=*/false, &result));
    started_ = true;
    return result;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("EdgeSequence::Start: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<StepResult> EdgeSequence::Step(int32_t token) {
  if (!started_) {
    return absl::FailedPreconditionError("EdgeSequence::Step before a successful Start");
  }
  if (position_ >= cache_->capacity()) {
    return absl::OutOfRangeError(absl::StrCat("the context of ", cache_->capacity(),
                                              " positions is full"));
  }
  try {
    at::InferenceMode guard;
    TANDEM_ASSIGN_OR_RETURN(at::Tensor x, Embed(absl::MakeConstSpan(&token, 1)));
    if (sink_ != nullptr) sink_->OnInput(position_, absl::MakeConstSpan(&token, 1));
    StepResult result;
    absl::Status status = Advance(x, /*decide=*/true, /*may_defer=*/true, &result);
    if (!status.ok()) {
      started_ = false;
      return status;
    }
    return result;
  } catch (const c10::Error& e) {
    started_ = false;
    return absl::InternalError(absl::StrCat("EdgeSequence::Step: ", e.what_without_backtrace()));
  }
}

absl::Status EdgeSequence::Flush() {
  if (!started_ || pending_.empty()) return absl::OkStatus();
  try {
    at::InferenceMode guard;
    StepResult unused;
    absl::Status status = Advance(at::Tensor(), /*decide=*/false, /*may_defer=*/false, &unused);
    if (!status.ok()) started_ = false;
    return status;
  } catch (const c10::Error& e) {
    started_ = false;
    return absl::InternalError(absl::StrCat("EdgeSequence::Flush: ", e.what_without_backtrace()));
  }
}

void EdgeSequence::Finish() {
  if (finished_) return;
  finished_ = true;
  if (sink_ != nullptr) sink_->OnFinish(sink_next_);
}

void EdgeSequence::HandToSink(int64_t first_position, const at::Tensor& rows,
                              StepResult* result) {
  ABSL_ASSERT(first_position == sink_next_);
  const int64_t n = rows.size(0);
  sink_next_ = first_position + n;
  bytes_to_sink_ += rows.numel() * static_cast<int64_t>(rows.element_size());
  result->rows_to_sink += n;
  if (sink_ != nullptr) sink_->OnContext(first_position, rows);
}

absl::StatusOr<at::Tensor> EdgeSequence::Embed(absl::Span<const int32_t> ids) const {
  if (const FastDecoder* fast = engine_.fast_decoder()) {
    at::Tensor out = at::empty({static_cast<int64_t>(ids.size()), fast->config().hidden_size},
                               at::kFloat);
    TANDEM_RETURN_IF_ERROR(fast->Embed(ids, out.data_ptr<float>()));
    return out;
  }
  at::Tensor t = at::empty({static_cast<int64_t>(ids.size())}, at::kLong);
  int64_t* data = t.data_ptr<int64_t>();
  for (size_t i = 0; i < ids.size(); ++i) data[i] = ids[i];
  return engine_.model().Embed(t);
}

absl::StatusOr<at::Tensor> EdgeSequence::Forward(int64_t begin, int64_t end, const at::Tensor& x,
                                                 int64_t first_position) {
  if (const FastDecoder* fast = engine_.fast_decoder()) {
    return fast->ForwardLayersTensor(begin, end, x, first_position, cache_.get(),
                                     workspace_.get());
  }
  return engine_.model().ForwardLayers(
      begin, end, x, at::arange(first_position, first_position + x.size(0), at::kLong),
      cache_.get());
}

absl::StatusOr<at::Tensor> EdgeSequence::ExitLogits(int64_t layer, const at::Tensor& row) {
  if (const FastDecoder* fast = engine_.fast_decoder()) {
    auto it = engine_.fast_heads_.find(layer);
    if (it == engine_.fast_heads_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("no exit head at layer ", layer));
    }
    return fast->LogitsTensor(row, workspace_.get(), &it->second);
  }
  return engine_.heads().Logits(engine_.model(), layer, row);
}

absl::Status EdgeSequence::Advance(const at::Tensor& fresh, bool decide, bool may_defer,
                                   StepResult* result) {
  const std::vector<int64_t>& exits = engine_.exit_layers();
  const int64_t split = engine_.split();
  const int64_t fresh_rows = fresh.defined() ? fresh.size(0) : 0;
  if (position_ + fresh_rows > cache_->capacity()) {
    return absl::OutOfRangeError("the context is full");
  }

  // The batch: rows at consecutive positions [first, first + rows), all at the
  // same layer. It starts as the fresh rows at layer 0; pending groups join it
  // at the exit layer where they wait (their positions come just before).
  at::Tensor x = fresh;
  int64_t first = position_;
  auto rows = [&x] { return x.defined() ? x.size(0) : int64_t{0}; };
  bool carries_fresh = fresh_rows > 0;  // the last row of x is the token deciding
  bool passed = false;
  std::vector<Candidate> candidates;
  std::optional<PendingGroup> deferred;  // this step's token, if it stops early
  result->position = position_ + fresh_rows;

  int64_t layer = 0;
  for (size_t i = 0; i < exits.size(); ++i) {
    const int64_t e = exits[i];
    if (rows() > 0) {
      TANDEM_ASSIGN_OR_RETURN(x, Forward(layer, e, x, first));
    }
    layer = e;
    if (!pending_.empty() && pending_.back().layer == e) {
      PendingGroup group = std::move(pending_.back());
      pending_.pop_back();
      const int64_t group_rows = group.rows.size(0);
      if (rows() > 0 && group.first_position + group_rows != first) {
        return absl::InternalError("deferred rows are not contiguous with the batch");
      }
      x = rows() > 0 ? at::cat({group.rows, x}, 0) : group.rows;
      first = group.first_position;
    }
    if (!carries_fresh || !decide || passed) continue;
    at::Tensor last = x.narrow(0, rows() - 1, 1);
    TANDEM_ASSIGN_OR_RETURN(at::Tensor logits, ExitLogits(e, last));
    const float confidence =
        Confidence(logits, engine_.policy().measure).first.item<float>();
    candidates.push_back({e, confidence, logits});
    passed = confidence >= thresholds_[i];
    if (passed && may_defer && e < split) {
      // Decided early: the token's row waits here for the next step; the rows
      // that came with it (deferred from earlier) still go on to S.
      deferred = PendingGroup{e, first + rows() - 1, last.clone()};
      x = rows() > 1 ? x.narrow(0, 0, rows() - 1) : at::Tensor();
      carries_fresh = false;
    }
  }
  if (!pending_.empty()) return absl::InternalError("a deferred row was left behind");
  at::Tensor row_at_split;
  if (rows() > 0) {
    HandToSink(first, x, result);
    if (carries_fresh) row_at_split = x.narrow(0, rows() - 1, 1);
  }
  if (deferred) pending_.push_back(std::move(*deferred));
  position_ += fresh_rows;
  if (!decide) return absl::OkStatus();
  return Decide(candidates, passed, row_at_split, result);
}

absl::Status EdgeSequence::Decide(const std::vector<Candidate>& candidates, bool passed,
                                  const at::Tensor& row_at_split, StepResult* result) {
  if (candidates.empty()) return absl::InternalError("no exit was evaluated");
  const Candidate* chosen = &candidates.back();
  result->source = TokenSource::kExit;
  result->provisional = false;
  if (!passed) {
    result->source = TokenSource::kFallback;
    if (engine_.policy().fallback == StandaloneFallback::kMostConfident) {
      chosen = &candidates.front();
      for (const Candidate& c : candidates) {
        if (c.confidence >= chosen->confidence) chosen = &c;  // ties: the deeper
      }
    }
  }
  result->exit_layer = chosen->layer;
  result->confidence = chosen->confidence;
  if (passed || cloud_ == nullptr || !row_at_split.defined()) {
    float probability = 0.0f;
    TANDEM_ASSIGN_OR_RETURN(result->token, sampler_->Sample(chosen->logits, &probability));
    result->probability = probability;
    return absl::OkStatus();
  }
  // Collaborative mode: draft from the fallback exit and submit it. Under
  // sampling the draft comes from that exit's distribution cut to its
  // draft_top_k_ most likely tokens (any draft distribution keeps the
  // speculative sampling rule exact; a short one is cheap to send).
  ContinueRequest request;
  request.position = result->position - 1;
  request.hidden_at_split = row_at_split;
  request.sampling = sampling_;
  if (sampling_.temperature > 0.0f) {
    TANDEM_ASSIGN_OR_RETURN(TokenDistribution q, sampler_->Distribution(chosen->logits));
    request.draft = TruncateDistribution(q, draft_top_k_);
    request.draft_token = sampler_->SampleFrom(request.draft);
    for (size_t i = 0; i < request.draft.ids.size(); ++i) {
      if (request.draft.ids[i] == request.draft_token) result->probability = request.draft.probs[i];
    }
  } else {  // greedy: the draft is the argmax; an empty distribution says so
    float probability = 0.0f;
    TANDEM_ASSIGN_OR_RETURN(request.draft_token, sampler_->Sample(chosen->logits, &probability));
    result->probability = probability;
  }
  result->token = request.draft_token;
  result->provisional = cloud_->Submit(request, absl::Now() + cloud_timeout_).ok();
  return absl::OkStatus();
}

absl::StatusOr<StepResult> EdgeSequence::AwaitVerdict(const StepResult& step) {
  if (!step.provisional || cloud_ == nullptr) return step;
  StepResult r = step;
  r.provisional = false;
  const absl::Time give_up = absl::Now() + cloud_timeout_ + absl::Milliseconds(100);
  while (true) {
    for (const CloudVerdict& v : cloud_->TakeVerdicts(give_up)) {
      if (v.position != step.position - 1) continue;
      if (v.status.ok()) {
        r.source = TokenSource::kCloud;
        r.token = v.token;
        r.exit_layer = kCloudLayer;
        r.confidence = std::numeric_limits<float>::quiet_NaN();
        r.probability = std::numeric_limits<float>::quiet_NaN();
        // A rejection: the link resumes uploading once the edge has rolled
        // back to the draft's position, which it already stands at.
        if (!v.accepted) TANDEM_RETURN_IF_ERROR(Truncate(position_));
      }
      return r;
    }
    if (absl::Now() >= give_up) return r;  // no verdict: the draft stands
  }
}

absl::Status EdgeSequence::Truncate(int64_t position) {
  if (!started_) return absl::FailedPreconditionError("EdgeSequence::Truncate before Start");
  if (position <= 0 || position > position_) {
    return absl::InvalidArgumentError(absl::StrCat("Truncate(", position, "): the sequence holds ",
                                                   position_, " positions"));
  }
  try {
    at::InferenceMode guard;
    std::vector<PendingGroup> kept;
    for (PendingGroup& g : pending_) {
      if (g.first_position >= position) continue;
      const int64_t n = g.rows.size(0);
      if (g.first_position + n > position) {
        g.rows = g.rows.narrow(0, 0, position - g.first_position).clone();
      }
      kept.push_back(std::move(g));
    }
    pending_ = std::move(kept);
    cache_->Truncate(position);
    position_ = position;
    if (sink_next_ > position) sink_next_ = position;
    if (sink_ != nullptr) sink_->OnTruncate(position);
    return absl::OkStatus();
  } catch (const c10::Error& e) {
    started_ = false;
    return absl::InternalError(absl::StrCat("EdgeSequence::Truncate: ", e.what_without_backtrace()));
  }
}

}  // namespace tandem::edge
