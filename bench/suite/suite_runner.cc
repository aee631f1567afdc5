#include "suite/suite_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>
#include <utility>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "tandem/calibration.h"
#include "tandem/cloud/cloud_model.h"
#include "tandem/cloud/server.h"
#include "tandem/edge/cloud_link.h"
#include "tandem/edge/cloud_only_session.h"
#include "tandem/edge/edge_engine.h"
#include "tandem/edge/edge_session.h"
#include "tandem/exit_heads.h"
#include "tandem/fingerprint.h"
#include "tandem/flops.h"
#include "tandem/generate.h"
#include "tandem/model.h"
#include "tandem/status_macros.h"
#include "tandem/threads.h"
#include "tandem/tokenizer.h"

namespace tandem::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The q-quantile (0 = min) by the nearest rank below.
double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

// Profile name -> link profile ("drop" = 4G with a black-hole cut per run).
absl::StatusOr<LinkProfile> ProfileFor(const std::string& profile) {
  return LinkProfile::Named(profile == "drop" ? "4g" : profile);
}

// False, with the failure written into `r`, unless `status` is OK.
bool Succeeded(const absl::Status& status, GenerationRecord* r) {
  if (status.ok()) return true;
  r->ok = false;
  r->error = std::string(status.message());
  return false;
}

}  // namespace

const std::vector<std::string>& AllModes() {
  static const std::vector<std::string> modes = {"cloud-only",  "edge-full",       "naive-split",
                                                 "standalone", "collab-blocking", "collab-pipelined"};
  return modes;
}

bool ModeUsesNetwork(const std::string& mode) {
  return mode != "edge-full" && mode != "standalone";
}

struct SuiteRunner::Impl {
  SuiteOptions options;
  std::unique_ptr<Tokenizer> tokenizer;
  std::vector<int32_t> text_ids;
  std::shared_ptr<const Model> full;
  std::shared_ptr<const cloud::CloudModel> cloud_model;
  std::unique_ptr<cloud::CloudServer> server;
  std::unique_ptr<LinkEmulator> link;
  std::map<std::string, std::unique_ptr<edge::EdgeSession>> sessions;
  std::unique_ptr<edge::CloudOnlySession> cloud_only;
  int64_t split = 0;
  std::vector<int64_t> exits;
  std::map<int64_t, double> calibrated;  // the standalone engine's thresholds

  edge::EdgeOptions EdgeOptionsFor(const std::string& mode, const std::string& codec) const {
    edge::EdgeOptions o;
    o.model_dir = options.model_dir;
    o.split = split;
    o.max_context = 0;  // the model's context
    o.compute_threads = options.threads;
    if (options.fresh_heads) {
      o.allow_fresh_heads = true;
      o.exit_layers = options.exit_layers;
      for (int64_t e : options.exit_layers) o.thresholds[e] = options.fresh_threshold;
      o.thresholds[split] = options.fresh_threshold;
    }
    if (mode == "naive-split") {
      // Every token's hidden state goes to the cloud: no exit may pass.
      const double inf = std::numeric_limits<double>::infinity();
      for (int64_t e : exits) o.thresholds[e] = inf;
    }
    if (mode != "standalone") {
      o.cloud.address = link->address();
      o.cloud.codec = codec;
      o.cloud.request_timeout = options.request_timeout;
      o.cloud.reconnect_initial_backoff = absl::Milliseconds(50);
      o.cloud.reconnect_max_backoff = absl::Milliseconds(400);
      // collab-pipelined keeps CloudOptions' default window (max_in_flight
      // 32, adaptive); naive-split and collab-blocking wait for every answer.
      if (mode != "collab-pipelined") o.cloud.max_in_flight = 0;
    }
    return o;
  }

  absl::StatusOr<edge::EdgeSession*> Session(const std::string& mode, const std::string& codec) {
    const std::string key = mode == "standalone" ? mode : absl::StrCat(mode, "|", codec);
    auto it = sessions.find(key);
    if (it != sessions.end()) return it->second.get();
    TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<edge::EdgeSession> session,
                            edge::EdgeSession::Create(EdgeOptionsFor(mode, codec)));
    edge::EdgeSession* raw = session.get();
    sessions[key] = std::move(session);
    return raw;
  }

  // NLL (nats) and greedy agreement of `generated` under the full model given
  // `prompt` + the generated prefix. One pass, no cache.
  void Score(const std::vector<int32_t>& prompt, const std::vector<int32_t>& generated,
             GenerationRecord* r) const {
    if (generated.empty()) return;
    at::InferenceMode guard;
    std::vector<int64_t> all(prompt.begin(), prompt.end());
    all.insert(all.end(), generated.begin(), generated.end());
    const int64_t n = static_cast<int64_t>(all.size());
    auto hidden = full->Embed(at::tensor(all, at::kLong));
    if (!hidden.ok()) return;
    auto out = full->ForwardLayers(0, full->config().num_hidden_layers, *hidden,
                                   at::arange(n, at::kLong), nullptr);
    if (!out.ok()) return;
    const int64_t p = static_cast<int64_t>(prompt.size());
    auto logits = full->Logits(out->slice(0, p - 1, n - 1));
    if (!logits.ok()) return;
    at::Tensor logp = at::log_softmax(logits->to(at::kFloat), -1);
    at::Tensor argmax = logp.argmax(-1);
    for (size_t i = 0; i < generated.size(); ++i) {
      r->nll_sum -= logp[static_cast<int64_t>(i)][generated[i]].item<double>();
      r->agree_along_output += argmax[static_cast<int64_t>(i)].item<int64_t>() == generated[i];
    }
  }
};

SuiteRunner::~SuiteRunner() = default;
LinkEmulator& SuiteRunner::link() { return *impl_->link; }

absl::StatusOr<std::unique_ptr<SuiteRunner>> SuiteRunner::Create(const SuiteOptions& options) {
  auto runner = std::unique_ptr<SuiteRunner>(new SuiteRunner());
  runner->impl_ = std::make_unique<Impl>();
  Impl& impl = *runner->impl_;
  impl.options = options;
  SetComputeThreads(options.threads);
  TANDEM_ASSIGN_OR_RETURN(impl.tokenizer, Tokenizer::Load(options.model_dir));
  std::ifstream in(options.text_file);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", options.text_file));
  std::stringstream text;
  text << in.rdbuf();
  TANDEM_ASSIGN_OR_RETURN(impl.text_ids, impl.tokenizer->Encode(text.str(), false));
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Model> full, Model::Load(options.model_dir));
  impl.full = std::shared_ptr<const Model>(std::move(full));

  // The edge's split and exits as the engine resolves them (exits.json).
  {
    edge::EdgeOptions probe;
    probe.model_dir = options.model_dir;
    probe.split = options.split;
    probe.max_context = 64;
    if (options.fresh_heads) {
      probe.allow_fresh_heads = true;
      probe.exit_layers = options.exit_layers;
      for (int64_t e : options.exit_layers) probe.thresholds[e] = options.fresh_threshold;
      if (options.split > 0) probe.thresholds[options.split] = options.fresh_threshold;
    }
    TANDEM_ASSIGN_OR_RETURN(auto engine, edge::EdgeEngine::Create(probe));
    impl.split = engine->split();
    impl.exits = engine->exit_layers();
    impl.calibrated = engine->policy().thresholds;
  }
  TANDEM_ASSIGN_OR_RETURN(auto cloud_model, cloud::CloudModel::FromModel(impl.full, impl.split));
  impl.cloud_model = std::shared_ptr<const cloud::CloudModel>(std::move(cloud_model));
  cloud::ServerOptions server_options;
  server_options.listen_address = "127.0.0.1:0";
  TANDEM_ASSIGN_OR_RETURN(impl.server, cloud::CloudServer::Start(server_options, impl.cloud_model));
  LinkEmulatorOptions link_options;
  link_options.target_port = impl.server->port();
  TANDEM_ASSIGN_OR_RETURN(impl.link, LinkEmulator::Start(link_options));
  edge::CloudOnlyOptions cloud_only;
  cloud_only.model_dir = options.model_dir;
  cloud_only.cloud.address = impl.link->address();
  cloud_only.expected_fingerprint = impl.cloud_model->fingerprint();
  TANDEM_ASSIGN_OR_RETURN(impl.cloud_only, edge::CloudOnlySession::Create(cloud_only));
  return runner;
}

std::vector<std::vector<int32_t>> SuiteRunner::Prompts(int count, int length) const {
  // Prompts start at evenly spaced offsets in the first half of the text.
  std::vector<std::vector<int32_t>> out;
  const int64_t n = static_cast<int64_t>(impl_->text_ids.size()) / 2;
  for (int i = 0; i < count; ++i) {
    const int64_t start = std::min<int64_t>(n * i / std::max(1, count), n - length);
    out.emplace_back(impl_->text_ids.begin() + start, impl_->text_ids.begin() + start + length);
  }
  return out;
}

std::vector<std::vector<int32_t>> SuiteRunner::Windows(int count, int length) const {
  // From the second half, consecutive and non-overlapping.
  std::vector<std::vector<int32_t>> out;
  const int64_t total = static_cast<int64_t>(impl_->text_ids.size());
  for (int i = 0; i < count; ++i) {
    const int64_t start = total / 2 + static_cast<int64_t>(i) * length;
    if (start + length > total) break;
    out.emplace_back(impl_->text_ids.begin() + start, impl_->text_ids.begin() + start + length);
  }
  return out;
}

std::map<std::string, double> SuiteRunner::ModelFacts() const {
  const ModelConfig& c = impl_->full->config();
  std::map<std::string, double> facts = {
      {"layers", static_cast<double>(c.num_hidden_layers)},
      {"hidden_size", static_cast<double>(c.hidden_size)},
      {"intermediate_size", static_cast<double>(c.intermediate_size)},
      {"vocab_size", static_cast<double>(c.vocab_size)},
      {"heads", static_cast<double>(c.num_attention_heads)},
      {"kv_heads", static_cast<double>(c.num_key_value_heads)},
      {"split", static_cast<double>(impl_->split)},
      {"weight_bytes", static_cast<double>(impl_->full->weight_bytes())},
      {"lm_head_flops", LmHeadFlops(c)},
      {"layer_flops_at_0", LayerFlops(c, 0, 1, 0)},
  };
  for (size_t i = 0; i < impl_->exits.size(); ++i) {
    facts[absl::StrCat("exit_", i)] = static_cast<double>(impl_->exits[i]);
    auto t = impl_->calibrated.find(impl_->exits[i]);
    if (t != impl_->calibrated.end()) facts[absl::StrCat("threshold_", impl_->exits[i])] = t->second;
  }
  return facts;
}

absl::StatusOr<ComputeCalibration> SuiteRunner::Calibrate(
    const std::vector<std::vector<int32_t>>& prompts, int tokens) {
  ComputeCalibration cal;
  std::vector<double> edge_steps, edge_prefills, full_steps, full_prefills;
  TANDEM_ASSIGN_OR_RETURN(edge::EdgeSession * standalone, impl_->Session("standalone", ""));
  edge::GenerateOptions go;
  go.max_new_tokens = tokens;
  go.stop_at_eos = false;
  go.add_special_tokens = false;
  GenerateParams params;
  params.max_new_tokens = tokens;
  params.stop_at_eos = false;
  // The first token of each run carries the prefill: steps are the rest.
  for (const auto& prompt : prompts) {
    bool first = true;
    TANDEM_ASSIGN_OR_RETURN(auto s, standalone->GenerateIds(prompt, go, [&](const edge::TokenInfo& t) {
      if (t.id >= 0 && !first) edge_steps.push_back(t.seconds);
      first = first && t.id < 0;
      return true;
    }));
    edge_prefills.push_back(s.prefill_seconds);
    first = true;
    Clock::time_point last = Clock::now();
    TANDEM_ASSIGN_OR_RETURN(auto f, GenerateFullIds(*impl_->full, prompt, params, -1,
                                                    [&](const GeneratedToken&) {
                                                      if (!first) full_steps.push_back(Since(last));
                                                      first = false;
                                                      last = Clock::now();
                                                      return true;
                                                    }));
    full_prefills.push_back(f.prefill_seconds);
  }
  // The lower decile / the fastest prefill: on a shared machine the median
  // includes other people's work, and the emulation should stretch compute.
  cal.edge_step_s = Quantile(edge_steps, 0.1);
  cal.edge_prefill_s = Quantile(edge_prefills, 0.0);
  cal.full_step_s = Quantile(full_steps, 0.1);
  cal.full_prefill_s = Quantile(full_prefills, 0.0);
  return cal;
}

GenerationRecord SuiteRunner::Generate(const std::string& mode, const std::string& profile,
                                       const std::string& codec, double compute_ratio,
                                       int prompt_index, const std::vector<int32_t>& prompt,
                                       int tokens, const ComputeCalibration& cal) {
  Impl& impl = *impl_;
  GenerationRecord r;
  r.mode = mode;
  r.profile = profile;
  r.codec = ModeUsesNetwork(mode) && mode != "cloud-only" ? codec : "";
  r.compute_ratio = compute_ratio;
  r.prompt_index = prompt_index;
  r.prompt_tokens = static_cast<int64_t>(prompt.size());

  if (ModeUsesNetwork(mode)) {
    absl::StatusOr<LinkProfile> link_profile = ProfileFor(profile);
    if (!Succeeded(link_profile.status(), &r)) return r;
    impl.link->SetProfile(*link_profile);
  }
  // Emulated slower edge compute (compute_ratio > 1): extra sleep per token.
  double extra_prefill = 0, extra_step = 0;
  if (compute_ratio > 1) {
    if (mode == "edge-full") {
      extra_prefill = (compute_ratio - 1) * cal.full_prefill_s;
      extra_step = (compute_ratio - 1) * cal.full_step_s;
    } else if (mode != "cloud-only") {
      extra_prefill = (compute_ratio - 1) * cal.edge_prefill_s;
      extra_step = (compute_ratio - 1) * cal.edge_step_s;
    }
  }
  const LinkStats link_before = impl.link->stats();
  const cloud::ServerStats server_before = impl.server->stats();
  Clock::time_point start;
  Clock::time_point last;
  bool first = true;
  auto on_token = [&](int32_t id) {
    if (id < 0) return;  // a text-only tail record
    if (first && extra_prefill > 0) absl::SleepFor(absl::Seconds(extra_prefill));
    if (!first && extra_step > 0) absl::SleepFor(absl::Seconds(extra_step));
    const Clock::time_point now = Clock::now();
    if (first) {
      r.ttft_s = std::chrono::duration<double>(now - start).count();
    } else {
      r.itl_s.push_back(std::chrono::duration<double>(now - last).count());
    }
    first = false;
    last = now;
  };
  auto on_edge_token = [&](const edge::TokenInfo& t) {
    on_token(t.id);
    return true;
  };

  edge::GenerateOptions go;
  go.max_new_tokens = tokens;
  go.stop_at_eos = false;
  go.add_special_tokens = false;
  go.delivery = edge::GenerateOptions::Delivery::kConfirmed;  // only verified tokens count
  if (profile == "drop" && ModeUsesNetwork(mode)) {
    impl.link->ScheduleCut(impl.options.drop_after, impl.options.drop_length, CutMode::kBlackHole);
  }
  start = Clock::now();
  try {
    if (mode == "edge-full") {
      GenerateParams params;
      params.max_new_tokens = tokens;
      params.stop_at_eos = false;
      auto s = GenerateFullIds(*impl.full, prompt, params, -1, [&](const GeneratedToken& t) {
        on_token(t.id);
        return true;
      });
      r.total_s = Since(start);
      if (Succeeded(s.status(), &r)) {
        r.ids = s->ids;
        r.edge_tokens = static_cast<int64_t>(s->ids.size());
      }
    } else if (mode == "cloud-only") {
      auto s = impl.cloud_only->GenerateIds(prompt, go, on_edge_token);
      r.total_s = Since(start);
      if (Succeeded(s.status(), &r)) {
        r.ids = s->ids;
        r.cloud_tokens = s->generated_tokens;
        r.message_bytes_up = s->cloud.bytes_up;
        r.message_bytes_down = s->cloud.bytes_down;
        r.round_trips = 1;
        r.cloud_busy_s = s->cloud.cloud_compute_seconds;
        r.cloud_flops =
            GenerationFlops(impl.full->config(), r.prompt_tokens, s->generated_tokens);
        r.cloud_rows = r.prompt_tokens + s->generated_tokens - 1;
      }
    } else {
      absl::StatusOr<edge::EdgeSession*> session = impl.Session(mode, codec);
      if (!Succeeded(session.status(), &r)) return r;
      auto s = (*session)->GenerateIds(prompt, go, on_edge_token);
      r.total_s = Since(start);
      if (Succeeded(s.status(), &r)) {
        r.ids = s->ids;
        for (const auto& [layer, n] : s->counts.exited) r.edge_tokens += n;
        for (const auto& [layer, n] : s->counts.fallback) r.fallback_tokens += n;
        r.cloud_tokens = s->counts.cloud;
        r.message_bytes_up = s->cloud.bytes_up;
        r.message_bytes_down = s->cloud.bytes_down;
        r.round_trips = s->cloud.requests;
        r.failed_requests = s->cloud.failed_requests;
        r.resyncs = s->cloud.resyncs;
        const edge::SpeculationStats& spec = s->speculation;
        r.drafts = spec.drafts;
        r.drafts_accepted = spec.accepted;
        r.drafts_rejected = spec.rejected;
        r.drafts_unverified = spec.unverified;
        r.rolled_back = spec.rolled_back;
        r.wasted_steps = spec.wasted_steps;
        r.speculation_wait_s = spec.wait_seconds;
        r.mean_in_flight = spec.mean_in_flight;
        r.final_window = spec.final_window;
        const cloud::ServerStats after = impl.server->stats();
        r.cloud_busy_s = after.context.compute_seconds - server_before.context.compute_seconds;
        r.cloud_rows = after.context.rows_run - server_before.context.rows_run;
        const ModelConfig& c = impl.full->config();
        const int64_t layers = c.num_hidden_layers;
        r.cloud_flops =
            LayerFlopsRange(c, impl.split, layers, 0, r.cloud_rows) +
            static_cast<double>(after.context.tokens_served - server_before.context.tokens_served) *
                LmHeadFlops(c) +
            LayerFlopsRange(c, 0, impl.split, 0, s->cloud.resync_token_positions);
      }
    }
  } catch (const std::exception& e) {
    r.ok = false;
    r.error = e.what();
  }
  r.generated_tokens = static_cast<int64_t>(r.ids.size());
  const LinkStats link_after = impl.link->stats();
  r.wire_bytes_up = link_after.bytes_up - link_before.bytes_up;
  r.wire_bytes_down = link_after.bytes_down - link_before.bytes_down;
  if (profile == "drop" && ModeUsesNetwork(mode)) {
    // Leave the link restored for the next run (the cut may outlast a short run).
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(30);
    while ((impl.link->is_cut() || impl.link->stats().cuts == link_before.cuts) &&
           Clock::now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
  }
  impl.Score(prompt, r.ids, &r);
  return r;
}

absl::StatusOr<TeacherForcedRecord> SuiteRunner::TeacherForced(
    const std::string& mode, const std::string& codec,
    const std::vector<std::vector<int32_t>>& windows) {
  Impl& impl = *impl_;
  TeacherForcedRecord r;
  r.mode = mode;
  r.codec = mode == "standalone" ? "" : codec;
  impl.link->SetProfile(LinkProfile{});
  const edge::EdgeOptions options = impl.EdgeOptionsFor(mode, codec);
  TANDEM_ASSIGN_OR_RETURN(auto engine, edge::EdgeEngine::Create(options));
  std::unique_ptr<edge::CloudLink> link;
  if (!options.cloud.address.empty()) {
    TANDEM_ASSIGN_OR_RETURN(uint64_t fingerprint,
                            SplitFingerprint(engine->model(), engine->split()));
    TANDEM_ASSIGN_OR_RETURN(link, edge::CloudLink::Create(options.cloud, fingerprint,
                                                          engine->split(), engine->exit_layers(),
                                                          engine->model().config().hidden_size));
  }
  int64_t longest = 0;
  for (const auto& w : windows) longest = std::max<int64_t>(longest, w.size());
  TANDEM_ASSIGN_OR_RETURN(auto sequence, engine->NewSequence(longest, link.get()));
  if (link) sequence->set_cloud(link.get(), absl::Seconds(20));
  const int64_t layers = impl.full->config().num_hidden_layers;
  const Clock::time_point start = Clock::now();
  for (const auto& window : windows) {
    std::vector<int64_t> argmax;
    {
      at::InferenceMode guard;
      std::vector<int64_t> all(window.begin(), window.end());
      TANDEM_ASSIGN_OR_RETURN(at::Tensor hidden, impl.full->Embed(at::tensor(all, at::kLong)));
      TANDEM_ASSIGN_OR_RETURN(
          hidden, impl.full->ForwardLayers(0, layers, hidden,
                                           at::arange(static_cast<int64_t>(all.size()), at::kLong),
                                           nullptr));
      TANDEM_ASSIGN_OR_RETURN(at::Tensor logits, impl.full->Logits(hidden));
      at::Tensor a = logits.argmax(-1).contiguous();
      argmax.assign(a.data_ptr<int64_t>(), a.data_ptr<int64_t>() + a.numel());
    }
    // A step the exits did not decide returns a provisional draft; the
    // blocking policy's decision is the cloud's verdict on it (AwaitVerdict).
    auto decide = [&sequence](absl::StatusOr<edge::StepResult> s) {
      return s.ok() ? sequence->AwaitVerdict(*s) : s;
    };
    absl::StatusOr<edge::StepResult> step =
        decide(sequence->Start(absl::MakeConstSpan(window.data(), 1)));
    for (size_t p = 1; p < window.size() && step.ok(); ++p) {
      const bool agrees = argmax[p - 1] == step->token;
      ++r.positions;
      r.agreed += agrees;
      r.promised_agreed += step->source == edge::TokenSource::kExit ? agrees : 1;
      r.at_edge += step->source == edge::TokenSource::kExit;
      r.cloud += step->source == edge::TokenSource::kCloud;
      r.fallback += step->source == edge::TokenSource::kFallback;
      step = decide(sequence->Step(window[p]));  // teacher forcing: feed the text, not the choice
    }
    if (!step.ok()) return step.status();
    sequence->Finish();
  }
  r.seconds = Since(start);
  if (link) r.message_bytes_up = link->stats().bytes_up;
  return r;
}

absl::StatusOr<std::vector<SweepPoint>> SuiteRunner::Sweep(const std::vector<double>& scales,
                                                           int64_t tokens) {
  Impl& impl = *impl_;
  if (impl.options.fresh_heads) return std::vector<SweepPoint>{};
  TANDEM_ASSIGN_OR_RETURN(edge::EdgeSession * standalone, impl.Session("standalone", ""));
  const ExitHeads& heads = standalone->engine().heads();
  const std::vector<int32_t> held_out(impl.text_ids.begin() + impl.text_ids.size() / 2,
                                      impl.text_ids.end());
  std::vector<SweepPoint> points;
  const ConfidenceMeasure measure = standalone->engine().policy().measure;
  if (measure == ConfidenceMeasure::kEntropy) return points;  // scaling needs a [0, 1] measure
  for (double scale : scales) {
    ExitThresholds t;
    t.measure = measure;
    for (const auto& [layer, value] : impl.calibrated) t.by_layer[layer] = value * scale;
    TANDEM_ASSIGN_OR_RETURN(ThresholdEvaluation e,
                            EvaluateThresholds(*impl.full, heads, t, held_out, 128, tokens));
    points.push_back({scale, e.coverage, e.agreement});
  }
  return points;
}

}  // namespace tandem::bench
