#include "tandem/edge/edge_session.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "tandem/fingerprint.h"
#include "tandem/generation_config.h"
#include "tandem/status_macros.h"

namespace tandem::edge {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Streams text while watching for stop strings: releases only text that cannot
// be the beginning of a stop string, and cuts at the first one that appears.
class StopFilter {
 public:
  explicit StopFilter(const std::vector<std::string>& stops) : stops_(stops) {}

  // Appends `piece`; returns the text now safe to show. Sets *hit when a stop
  // string appeared (the returned text is then everything before it).
  std::string Add(const std::string& piece, bool* hit) {
    held_ += piece;
    size_t cut = std::string::npos;
    for (const std::string& s : stops_) cut = std::min(cut, held_.find(s));
    if (cut != std::string::npos) {
      *hit = true;
      std::string out = held_.substr(0, cut);
      held_.clear();
      return out;
    }
    // Keep the longest suffix that is a proper prefix of some stop string.
    size_t keep = 0;
    for (const std::string& s : stops_) {
      for (size_t k = std::min(s.size() - 1, held_.size()); k > keep; --k) {
        if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
          keep = k;
          break;
        }
      }
    }
    std::string out = held_.substr(0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
    return out;
  }
  std::string Release() { return std::exchange(held_, std::string()); }

 private:
  const std::vector<std::string>& stops_;
  std::string held_;
};

void Count(const StepResult& r, ExitCounts* counts) {
  switch (r.source) {
    case TokenSource::kExit: ++counts->exited[r.exit_layer]; break;
    case TokenSource::kFallback: ++counts->fallback[r.exit_layer]; break;
    case TokenSource::kCloud: ++counts->cloud; break;
  }
}

CloudLinkStats Difference(const CloudLinkStats& a, const CloudLinkStats& b) {
  CloudLinkStats d;
  d.bytes_up = a.bytes_up - b.bytes_up;
  d.bytes_down = a.bytes_down - b.bytes_down;
  d.context_bytes = a.context_bytes - b.context_bytes;
  d.continue_bytes = a.continue_bytes - b.continue_bytes;
  d.context_rows = a.context_rows - b.context_rows;
  d.requests = a.requests - b.requests;
  d.cloud_tokens = a.cloud_tokens - b.cloud_tokens;
  d.failed_requests = a.failed_requests - b.failed_requests;
  d.connects = a.connects - b.connects;
  d.connect_failures = a.connect_failures - b.connect_failures;
  d.resyncs = a.resyncs - b.resyncs;
  d.resync_token_positions = a.resync_token_positions - b.resync_token_positions;
  d.resync_hidden_positions = a.resync_hidden_positions - b.resync_hidden_positions;
  d.request_seconds = a.request_seconds - b.request_seconds;
  d.cloud_compute_seconds = a.cloud_compute_seconds - b.cloud_compute_seconds;
  d.last_error = a.last_error == b.last_error ? "" : a.last_error;
  return d;
}

}  // namespace

const char* StopReasonName(StopReason r) {
  switch (r) {
    case StopReason::kMaxTokens: return "max_tokens";
    case StopReason::kEos: return "eos";
    case StopReason::kStopString: return "stop_string";
    case StopReason::kCallback: return "callback";
    case StopReason::kCancelled: return "cancelled";
    case StopReason::kContextFull: return "context_full";
  }
  return "?";
}

int64_t ExitCounts::total() const {
  int64_t n = cloud;
  for (const auto& [layer, count] : exited) n += count;
  for (const auto& [layer, count] : fallback) n += count;
  return n;
}

absl::StatusOr<std::unique_ptr<EdgeSession>> EdgeSession::Create(const EdgeOptions& options) {
  try {
    auto session = std::unique_ptr<EdgeSession>(new EdgeSession());
    TANDEM_ASSIGN_OR_RETURN(session->engine_, EdgeEngine::Create(options));
    TANDEM_ASSIGN_OR_RETURN(session->tokenizer_, Tokenizer::Load(options.model_dir));
    ContextSink* sink = options.context_sink;
    if (!options.cloud.address.empty()) {
      const EdgeEngine& engine = *session->engine_;
      TANDEM_ASSIGN_OR_RETURN(uint64_t fingerprint,
                              SplitFingerprint(engine.model(), engine.split()));
      TANDEM_ASSIGN_OR_RETURN(
          session->link_,
          CloudLink::Create(options.cloud, fingerprint, engine.split(), engine.exit_layers(),
                            engine.model().config().hidden_size));
      session->link_->set_forward(options.context_sink);
      sink = session->link_.get();
    }
    TANDEM_ASSIGN_OR_RETURN(session->sequence_, session->engine_->NewSequence(0, sink));
    if (session->link_ != nullptr) {
      session->sequence_->set_cloud(session->link_.get(), options.cloud.request_timeout);
    }
    return session;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("EdgeSession::Create: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("EdgeSession::Create: ", e.what()));
  }
}

EdgeSession::~EdgeSession() {
  // The sequence borrows the link: drop it first.
  sequence_.reset();
  link_.reset();
}

void EdgeSession::Cancel() { cancel_.store(true, std::memory_order_relaxed); }

SessionStats EdgeSession::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::StatusOr<GenerationSummary> EdgeSession::Generate(
    const std::string& prompt, const GenerateOptions& options,
    const std::function<bool(const TokenInfo&)>& on_token) {
  absl::StatusOr<std::vector<int32_t>> ids;
  try {
    ids = tokenizer_->Encode(prompt, options.add_special_tokens);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("Generate: ", e.what()));
  }
  if (!ids.ok()) return ids.status();
  return Run(*ids, options, /*with_text=*/true, on_token);
}

absl::StatusOr<GenerationSummary> EdgeSession::GenerateIds(
    const std::vector<int32_t>& prompt_ids, const GenerateOptions& options,
    const std::function<bool(const TokenInfo&)>& on_token) {
  return Run(prompt_ids, options, /*with_text=*/false, on_token);
}

absl::StatusOr<GenerationSummary> EdgeSession::Run(
    const std::vector<int32_t>& prompt_ids, const GenerateOptions& options, bool with_text,
    const std::function<bool(const TokenInfo&)>& on_token) {
  if (running_.exchange(true)) {
    return absl::FailedPreconditionError("another Generate is running on this session");
  }
  // Clears running_ however we leave (including an exception from on_token).
  struct Running {
    std::atomic<bool>* flag;
    ~Running() { flag->store(false); }
  } running{&running_};
  cancel_.store(false, std::memory_order_relaxed);

  if (prompt_ids.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  if (options.max_new_tokens < 0) {
    return absl::InvalidArgumentError("max_new_tokens must be >= 0");
  }
  TANDEM_RETURN_IF_ERROR(options.sampling.Validate());
  for (const std::string& s : options.stop_strings) {
    if (s.empty()) return absl::InvalidArgumentError("a stop string is empty");
  }
  const int64_t capacity = sequence_->capacity();
  if (static_cast<int64_t>(prompt_ids.size()) > capacity) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the prompt has ", prompt_ids.size(), " tokens, longer than the context of ", capacity,
        " positions (EdgeOptions::max_context, at most max_position_embeddings)"));
  }
  const TokenRules rules = ResolveTokenRules(engine_->model().config(),
                                             engine_->model().generation_config(), tokenizer_.get());
  SamplingParams sampling = options.sampling;
  if (sampling.vocab_limit == 0) sampling.vocab_limit = rules.vocab_limit;

  GenerationSummary summary;
  summary.prompt_tokens = static_cast<int64_t>(prompt_ids.size());
  if (options.max_new_tokens == 0) return summary;

  const Clock::time_point start = Clock::now();
  const CloudLinkStats link_before = link_ ? link_->stats() : CloudLinkStats();
  std::optional<StreamDecoder> decoder;
  if (with_text) decoder.emplace(*tokenizer_);
  StopFilter filter(options.stop_strings);
  bool stop_string_hit = false;

  try {
    absl::StatusOr<StepResult> step = sequence_->Start(prompt_ids, sampling);
    if (!step.ok()) {
      sequence_->Finish();
      if (step.status().code() == absl::StatusCode::kOutOfRange) {
        return absl::InvalidArgumentError(step.status().message());
      }
      return step.status();
    }
    summary.prefill_seconds = SecondsSince(start);
    double step_seconds = summary.prefill_seconds;
    bool first = true;
    while (true) {
      const StepResult& r = *step;
      if (options.stop_at_eos && rules.IsStop(r.token)) {
        summary.stop_reason = StopReason::kEos;
        break;
      }
      TokenInfo info;
      info.id = r.token;
      info.position = r.position;
      info.source = r.source;
      info.exit_layer = r.exit_layer;
      info.confidence = r.confidence;
      info.probability = r.probability;
      info.seconds = step_seconds;
      if (decoder) {
        TANDEM_ASSIGN_OR_RETURN(std::string piece, decoder->Push(r.token));
        info.text = filter.Add(piece, &stop_string_hit);
      }
      summary.ids.push_back(r.token);
      summary.text += info.text;
      ++summary.generated_tokens;
      Count(r, &summary.counts);
      {
        absl::MutexLock lock(&mu_);
        Count(r, &stats_.counts);
        ++stats_.generated_tokens;
        if (r.source != TokenSource::kCloud) stats_.confidence_sum[r.exit_layer] += r.confidence;
        if (!first) {
          stats_.decode_seconds += step_seconds;
          ++stats_.decode_steps;
        }
      }
      if (!first) summary.decode_seconds += step_seconds;
      first = false;
      const bool keep_going = on_token ? on_token(info) : true;
      if (stop_string_hit) {
        summary.stop_reason = StopReason::kStopString;
        break;
      }
      if (!keep_going) {
        summary.stop_reason = StopReason::kCallback;
        break;
      }
      if (summary.generated_tokens >= options.max_new_tokens) {
        summary.stop_reason = StopReason::kMaxTokens;
        break;
      }
      if (cancel_.load(std::memory_order_relaxed)) {
        summary.stop_reason = StopReason::kCancelled;
        break;
      }
      if (sequence_->position() >= capacity) {
        summary.stop_reason = StopReason::kContextFull;
        break;
      }
      const Clock::time_point step_start = Clock::now();
      step = sequence_->Step(r.token);
      if (!step.ok()) {
        sequence_->Finish();
        return step.status();
      }
      step_seconds = SecondsSince(step_start);
    }
  } catch (const c10::Error& e) {
    sequence_->Finish();
    return absl::InternalError(absl::StrCat("Generate: ", e.what_without_backtrace()));
  }
  sequence_->Finish();

  if (decoder && !stop_string_hit) {
    std::string tail = decoder->Flush();
    bool hit = false;
    std::string rest = filter.Add(tail, &hit);
    if (hit) {
      summary.stop_reason = StopReason::kStopString;
    } else {
      rest += filter.Release();
    }
    if (!rest.empty()) {
      summary.text += rest;
      TokenInfo info;
      info.id = -1;
      info.text = rest;
      info.position = sequence_->position();
      if (on_token) on_token(info);
    }
  }
  summary.bytes_to_sink = sequence_->bytes_to_sink();
  if (link_ != nullptr) summary.cloud = Difference(link_->stats(), link_before);
  summary.total_seconds = SecondsSince(start);
  {
    absl::MutexLock lock(&mu_);
    ++stats_.generations;
    stats_.prompt_tokens += summary.prompt_tokens;
    stats_.prefill_seconds += summary.prefill_seconds;
    stats_.bytes_to_sink += summary.bytes_to_sink;
  }
  return summary;
}

}  // namespace tandem::edge
