#include "tandem/edge/edge_session.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <utility>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "encode_prompt.h"
#include "tandem/fingerprint.h"
#include "tandem/generation_config.h"
#include "speculation_window.h"
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
    session->cloud_options_ = options.cloud;
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
      session->sequence_->set_cloud(session->link_.get(), options.cloud.request_timeout,
                                    options.cloud.draft_top_k);
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
    const std::function<bool(const TokenInfo&)>& on_token,
    const std::function<void(const Rollback&)>& on_rollback) {
  TANDEM_ASSIGN_OR_RETURN(const std::vector<int32_t> ids,
                          EncodePrompt(*tokenizer_, prompt, options));
  return Run(ids, options, /*with_text=*/true, on_token, on_rollback);
}

absl::StatusOr<GenerationSummary> EdgeSession::GenerateIds(
    const std::vector<int32_t>& prompt_ids, const GenerateOptions& options,
    const std::function<bool(const TokenInfo&)>& on_token,
    const std::function<void(const Rollback&)>& on_rollback) {
  return Run(prompt_ids, options, /*with_text=*/false, on_token, on_rollback);
}

namespace {

// Streams decided tokens to the app: text (stop strings held back), stop
// conditions, and the summary's token records. In eager delivery it can be
// saved before a provisional token and restored when that token is rolled back.
class Releaser {
 public:
  struct Snapshot {
    std::optional<StreamDecoder> decoder;
    std::optional<StopFilter> filter;
    size_t text_size = 0;
    size_t ids_size = 0;
    ExitCounts counts;
    std::map<int64_t, double> confidence_sum;
    double decode_seconds = 0.0;
    int64_t decode_steps = 0;
  };

  Releaser(const Tokenizer* tokenizer, const GenerateOptions& options,
           const TokenRules& rules,
           const std::function<bool(const TokenInfo&)>& on_token, GenerationSummary* summary)
      : options_(options), rules_(rules), on_token_(on_token), summary_(summary) {
    if (tokenizer != nullptr) decoder_.emplace(*tokenizer);
    filter_.emplace(options_.stop_strings);
  }

  bool IsEos(int32_t token) const {
    return options_.stop_at_eos && rules_.IsStop(token);
  }
  int64_t released() const { return summary_->generated_tokens; }

  // Streams one token; true when generation stops here (summary's stop_reason).
  absl::StatusOr<bool> Release(const StepResult& r, double seconds, bool provisional,
                               bool draft_accepted) {
    if (IsEos(r.token)) {
      summary_->stop_reason = StopReason::kEos;
      return true;
    }
    TokenInfo info;
    info.id = r.token;
    info.position = r.position;
    info.source = r.source;
    info.exit_layer = r.exit_layer;
    info.confidence = r.confidence;
    info.probability = r.probability;
    info.seconds = seconds;
    info.provisional = provisional;
    info.draft_accepted = draft_accepted;
    bool hit = false;
    if (decoder_) {
      absl::StatusOr<std::string> piece = decoder_->Push(r.token);
      if (!piece.ok()) return piece.status();
      info.text = filter_->Add(*piece, &hit);
    }
    summary_->ids.push_back(r.token);
    summary_->text += info.text;
    ++summary_->generated_tokens;
    Count(r, &summary_->counts);
    if (r.source != TokenSource::kCloud) confidence_sum_[r.exit_layer] += r.confidence;
    if (summary_->generated_tokens > 1) {
      summary_->decode_seconds += seconds;
      ++decode_steps_;
    }
    const bool keep_going = on_token_ ? on_token_(info) : true;
    if (hit) {
      summary_->stop_reason = StopReason::kStopString;
      stop_string_hit_ = true;
      return true;
    }
    if (!keep_going) {
      summary_->stop_reason = StopReason::kCallback;
      return true;
    }
    return false;
  }

  std::shared_ptr<const Snapshot> Save() const {
    auto s = std::make_shared<Snapshot>();
    if (decoder_) s->decoder.emplace(*decoder_);
    s->filter.emplace(*filter_);
    s->text_size = summary_->text.size();
    s->ids_size = summary_->ids.size();
    s->counts = summary_->counts;
    s->confidence_sum = confidence_sum_;
    s->decode_seconds = summary_->decode_seconds;
    s->decode_steps = decode_steps_;
    return s;
  }

  // Returns the bytes of streamed text taken back.
  int64_t Restore(const Snapshot& s) {
    const int64_t bytes = static_cast<int64_t>(summary_->text.size() - s.text_size);
    decoder_.reset();
    if (s.decoder) decoder_.emplace(*s.decoder);
    filter_.reset();
    filter_.emplace(*s.filter);
    summary_->text.resize(s.text_size);
    summary_->ids.resize(s.ids_size);
    summary_->generated_tokens = static_cast<int64_t>(s.ids_size);
    summary_->counts = s.counts;
    confidence_sum_ = s.confidence_sum;
    summary_->decode_seconds = s.decode_seconds;
    decode_steps_ = s.decode_steps;
    return bytes;
  }

  // End of generation: whatever text is still held back.
  void Finish(int64_t position) {
    if (!decoder_ || stop_string_hit_) return;
    std::string tail = decoder_->Flush();
    bool hit = false;
    std::string rest = filter_->Add(tail, &hit);
    if (hit) {
      summary_->stop_reason = StopReason::kStopString;
    } else {
      rest += filter_->Release();
    }
    if (rest.empty()) return;
    summary_->text += rest;
    TokenInfo info;
    info.id = -1;
    info.text = rest;
    info.position = position;
    if (on_token_) on_token_(info);
  }

  const std::map<int64_t, double>& confidence_sum() const { return confidence_sum_; }
  int64_t decode_steps() const { return decode_steps_; }

 private:
  const GenerateOptions& options_;
  const TokenRules& rules_;
  const std::function<bool(const TokenInfo&)>& on_token_;
  GenerationSummary* summary_;
  std::optional<StreamDecoder> decoder_;
  std::optional<StopFilter> filter_;
  std::map<int64_t, double> confidence_sum_;
  int64_t decode_steps_ = 0;
  bool stop_string_hit_ = false;
};

// A decided token not yet released (or, in eager delivery, released but still
// awaiting its verdict), in position order.
struct Ahead {
  StepResult r;
  double seconds = 0.0;
  bool waiting = false;         // a draft awaiting its verdict
  bool draft_accepted = false;
  bool released = false;        // eager: streamed already
  absl::Time deadline;          // waiting: when the link gives up on it
  std::shared_ptr<const Releaser::Snapshot> before;  // eager: state before it was streamed
};

}  // namespace

absl::StatusOr<GenerationSummary> EdgeSession::Run(
    const std::vector<int32_t>& prompt_ids, const GenerateOptions& options, bool with_text,
    const std::function<bool(const TokenInfo&)>& on_token,
    const std::function<void(const Rollback&)>& on_rollback) {
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
  const bool eager = options.delivery == GenerateOptions::Delivery::kEager;
  SpeculationWindow window(cloud_options_);
  SpeculationStats& spec = summary.speculation;
  Releaser releaser(with_text ? tokenizer_.get() : nullptr, options, rules, on_token, &summary);
  std::deque<Ahead> ahead;
  int32_t last_released = 0;

  auto push = [&](const StepResult& r, double seconds) {
    Ahead a;
    a.r = r;
    a.seconds = seconds;
    a.waiting = r.provisional;
    a.deadline = absl::Now() + cloud_options_.request_timeout;
    if (r.provisional) ++spec.drafts;
    ahead.push_back(std::move(a));
  };
  // Applies the cloud's verdicts: a confirmed draft becomes final; a replaced
  // one rolls the sequence back to it and takes the cloud's token.
  auto apply = [&](const std::vector<CloudVerdict>& verdicts) -> absl::Status {
    for (const CloudVerdict& v : verdicts) {
      auto it = std::find_if(ahead.begin(), ahead.end(), [&v](const Ahead& a) {
        return a.waiting && a.r.position == v.position + 1;
      });
      if (it == ahead.end()) continue;  // rolled back already
      it->waiting = false;
      if (!v.status.ok()) {
        ++spec.unverified;
        continue;
      }
      it->r.source = TokenSource::kCloud;
      it->r.exit_layer = kCloudLayer;
      it->r.confidence = std::numeric_limits<float>::quiet_NaN();
      it->r.probability = std::numeric_limits<float>::quiet_NaN();
      if (v.accepted) {
        ++spec.accepted;
        it->draft_accepted = true;
        window.OnAccepted();
        continue;
      }
      ++spec.rejected;
      window.OnRejected();
      const int64_t later = static_cast<int64_t>(ahead.end() - it) - 1;
      spec.rolled_back += later + 1;
      spec.wasted_steps += later;
      if (eager) {
        auto first_released = std::find_if(it, ahead.end(), [](const Ahead& a) { return a.released; });
        if (first_released != ahead.end()) {
          Rollback rb;
          rb.position = it->r.position;
          rb.tokens = std::count_if(it, ahead.end(), [](const Ahead& a) { return a.released; });
          rb.bytes = releaser.Restore(*first_released->before);
          if (on_rollback) on_rollback(rb);
        }
      }
      ahead.erase(it + 1, ahead.end());
      Ahead& a = ahead.back();
      // Always, even when nothing was fed on top of the draft (blocking): the
      // link holds uploads past the rejection until the edge rolls back.
      TANDEM_RETURN_IF_ERROR(sequence_->Truncate(a.r.position));
      a.r.token = v.token;
      a.r.provisional = false;
      a.released = false;
      a.before.reset();
    }
    return absl::OkStatus();
  };
  auto in_flight = [&ahead] {
    return std::count_if(ahead.begin(), ahead.end(), [](const Ahead& a) { return a.waiting; });
  };

  absl::Status failure;
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
    push(*step, summary.prefill_seconds);
    bool stop = false;
    while (!stop && failure.ok()) {
      if (link_ != nullptr && in_flight() > 0) {
        failure = apply(link_->TakeVerdicts(absl::InfinitePast()));
        if (!failure.ok()) break;
      }
      // Release what is final, in order (eager: everything releasable).
      while (!stop && !ahead.empty() && !ahead.front().waiting) {
        Ahead& a = ahead.front();
        if (!a.released) {
          TANDEM_ASSIGN_OR_RETURN(stop, releaser.Release(a.r, a.seconds, false, a.draft_accepted));
        }
        last_released = a.r.token;
        ahead.pop_front();
      }
      if (stop) break;
      if (eager) {
        for (Ahead& a : ahead) {
          if (a.released) continue;
          // EOS stops generation only once everything before it is final
          // (the in-order release above handles that).
          if (releaser.IsEos(a.r.token)) break;
          a.before = releaser.Save();
          a.released = true;
          TANDEM_ASSIGN_OR_RETURN(stop, releaser.Release(a.r, a.seconds, a.waiting, a.draft_accepted));
          if (stop) break;
        }
        if (stop) break;
      }
      // (Eager: streamed drafts count, but generation ends only once they are final.)
      if (releaser.released() >= options.max_new_tokens && in_flight() == 0) {
        summary.stop_reason = StopReason::kMaxTokens;
        break;
      }
      if (cancel_.load(std::memory_order_relaxed)) {
        summary.stop_reason = StopReason::kCancelled;
        break;
      }
      const int64_t waiting = in_flight();
      int64_t unreleased = 0;
      for (const Ahead& a : ahead) unreleased += a.released ? 0 : 1;
      const int32_t newest = ahead.empty() ? last_released : ahead.back().r.token;
      const bool can_step = releaser.released() + unreleased < options.max_new_tokens &&
                            sequence_->position() < capacity && !releaser.IsEos(newest);
      if (!can_step && waiting == 0) {
        // Everything decided is released; nothing more can be decoded.
        summary.stop_reason = releaser.IsEos(newest) ? StopReason::kEos
                              : sequence_->position() >= capacity ? StopReason::kContextFull
                                                                  : StopReason::kMaxTokens;
        break;
      }
      if (waiting > 0 && (!can_step || window.full(waiting))) {
        // Wait for the oldest draft's verdict (the link answers by its deadline).
        const Ahead& oldest = *std::find_if(ahead.begin(), ahead.end(),
                                            [](const Ahead& a) { return a.waiting; });
        const absl::Time give_up = oldest.deadline + absl::Milliseconds(100);
        const Clock::time_point t0 = Clock::now();
        std::vector<CloudVerdict> verdicts = link_->TakeVerdicts(give_up);
        spec.wait_seconds += SecondsSince(t0);
        if (verdicts.empty() && absl::Now() >= give_up) {
          CloudVerdict lost;  // the link never answered: the draft stands
          lost.position = oldest.r.position - 1;
          lost.status = absl::DeadlineExceededError("no verdict from the cloud link");
          verdicts.push_back(lost);
        }
        failure = apply(verdicts);
        continue;
      }
      window.OnStep(waiting);
      const Clock::time_point step_start = Clock::now();
      step = sequence_->Step(newest);
      if (!step.ok()) {
        failure = step.status();
        break;
      }
      push(*step, SecondsSince(step_start));
    }
  } catch (const c10::Error& e) {
    failure = absl::InternalError(absl::StrCat("Generate: ", e.what_without_backtrace()));
  }
  sequence_->Finish();
  if (!failure.ok()) return failure;

  releaser.Finish(sequence_->position());
  spec.mean_in_flight = window.mean_in_flight();
  spec.final_window = window.limit();
  summary.bytes_to_sink = sequence_->bytes_to_sink();
  if (link_ != nullptr) summary.cloud = link_->stats() - link_before;
  summary.total_seconds = SecondsSince(start);
  {
    absl::MutexLock lock(&mu_);
    ++stats_.generations;
    stats_.prompt_tokens += summary.prompt_tokens;
    stats_.generated_tokens += summary.generated_tokens;
    for (const auto& [layer, n] : summary.counts.exited) stats_.counts.exited[layer] += n;
    for (const auto& [layer, n] : summary.counts.fallback) stats_.counts.fallback[layer] += n;
    stats_.counts.cloud += summary.counts.cloud;
    for (const auto& [layer, c] : releaser.confidence_sum()) stats_.confidence_sum[layer] += c;
    stats_.prefill_seconds += summary.prefill_seconds;
    stats_.decode_seconds += summary.decode_seconds;
    stats_.decode_steps += releaser.decode_steps();
    stats_.bytes_to_sink += summary.bytes_to_sink;
  }
  return summary;
}


}  // namespace tandem::edge
