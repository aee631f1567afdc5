// tandem-bench-suite: the end-to-end measurements of the benchmark suite in one
// process (bench/suite/run_suite.py drives it and writes the report). Writes
// one JSON object per line to --out; progress and ETA on stderr.
//
//   tandem-bench-suite --model models/tandem-tiny --text tests/data/corpus/test_slice.txt
//       --out results.jsonl [--profiles lan,wifi,4g,poor,drop] [--prompts 6 --tokens 32]
//
// Stages (each can be turned off): the mode x profile matrix at the headline
// codec; the compute-ratio emulation; the codec sweep of collab-blocking on one
// profile; teacher-forced agreement per mode and codec; the threshold sweep.
// Modes alternate (rotated per prompt) so slow drifts of a shared machine hit
// every mode alike.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "tandem/flags.h"
#include "suite/suite_runner.h"
#include "tandem/status_macros.h"

namespace {

using tandem::bench::ComputeCalibration;
using tandem::bench::GenerationRecord;
using tandem::bench::SuiteRunner;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr char kUsage[] = R"(tandem-bench-suite: end-to-end benchmark measurements (JSON lines).

  --model DIR            checkpoint (required)
  --text FILE            held-out text for prompts and teacher-forced windows (required)
  --out FILE             JSON lines output (required)
  --modes LIST           default cloud-only,edge-full,naive-split,standalone,collab-blocking,
                         collab-pipelined
  --profiles LIST        default lan,wifi,4g,poor,drop
  --prompts N            prompts per profile (default 6)
  --prompt-tokens N      prompt length (default 32)
  --tokens N             tokens generated per run (default 32)
  --headline-codec C     codec of the collaborative modes in the matrix (default int8)
  --codecs LIST          codec sweep (default fp32,fp16,int8,int8+zstd,int4,int4+zstd,int4-g64; "" = skip)
  --codec-profile P      profile of the codec sweep (default 4g)
  --codec-prompts N      prompts per codec (default 3)
  --ratio R              compute-ratio emulation factor (default 10; 1 = skip)
  --ratio-profile P      profile of the compute-ratio runs (default 4g)
  --ratio-prompts N      prompts of the compute-ratio runs (default 3)
  --tf-windows N         teacher-forced windows (default 4; 0 = skip)
  --tf-length N          teacher-forced window length (default 128)
  --sweep-tokens N       held-out tokens of the threshold sweep (default 2048; 0 = skip)
  --threads N            compute threads (default 1)
  --split S              split layer (default: exits.json)
  --fresh-heads          untrained exit heads at --exit-layers (random checkpoints)
  --exit-layers LIST     with --fresh-heads
  --fresh-threshold X    with --fresh-heads (max-prob; default 0.5)
)";

std::vector<std::string> List(const std::string& text) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) out.emplace_back(part);
  return out;
}

Json ToJson(const GenerationRecord& r) {
  return Json{{"type", "generation"},
              {"mode", r.mode},
              {"profile", r.profile},
              {"codec", r.codec},
              {"compute_ratio", r.compute_ratio},
              {"prompt_index", r.prompt_index},
              {"prompt_tokens", r.prompt_tokens},
              {"generated_tokens", r.generated_tokens},
              {"ok", r.ok},
              {"error", r.error},
              {"ttft_s", r.ttft_s},
              {"itl_s", r.itl_s},
              {"total_s", r.total_s},
              {"wire_bytes_up", r.wire_bytes_up},
              {"wire_bytes_down", r.wire_bytes_down},
              {"message_bytes_up", r.message_bytes_up},
              {"message_bytes_down", r.message_bytes_down},
              {"round_trips", r.round_trips},
              {"failed_requests", r.failed_requests},
              {"resyncs", r.resyncs},
              {"cloud_busy_s", r.cloud_busy_s},
              {"cloud_flops", r.cloud_flops},
              {"cloud_rows", r.cloud_rows},
              {"edge_tokens", r.edge_tokens},
              {"cloud_tokens", r.cloud_tokens},
              {"fallback_tokens", r.fallback_tokens},
              {"nll_sum", r.nll_sum},
              {"agree_along_output", r.agree_along_output},
              {"speculation",
               {{"drafts", r.drafts},
                {"accepted", r.drafts_accepted},
                {"rejected", r.drafts_rejected},
                {"unverified", r.drafts_unverified},
                {"rolled_back", r.rolled_back},
                {"wasted_steps", r.wasted_steps},
                {"wait_s", r.speculation_wait_s},
                {"mean_in_flight", r.mean_in_flight},
                {"final_window", r.final_window}}},
              {"ids", r.ids}};
}

std::string Clockish(double seconds) {
  const int s = static_cast<int>(seconds + 0.5);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

// Progress with an ETA from the work done so far (weighted by expected cost).
class Progress {
 public:
  explicit Progress(double total_weight) : total_(total_weight), start_(Clock::now()) {}
  void Done(double weight, const std::string& what) {
    done_ += weight;
    ++count_;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    const double eta = done_ > 0 ? elapsed / done_ * std::max(0.0, total_ - done_) : 0;
    std::fprintf(stderr, "[%5.1f%%] %s (elapsed %s, ETA %s)\n", 100.0 * done_ / total_,
                 what.c_str(), Clockish(elapsed).c_str(), Clockish(eta).c_str());
  }

 private:
  double total_, done_ = 0;
  int count_ = 0;
  Clock::time_point start_;
};

// Expected seconds of one generation, for the ETA only.
double Cost(const std::string& mode, const std::string& profile, int tokens) {
  double rtt = profile == "lan" ? 0.001 : profile == "wifi" ? 0.02 : profile == "poor" ? 0.16 : 0.06;
  if (profile == "drop") rtt = 0.1;
  if (mode == "edge-full" || mode == "standalone") return 0.005 * tokens;
  // A drop run lasts at least until the link is restored (0.25 s + 1.5 s).
  if (profile == "drop") return 1.75 + Cost(mode, "4g", tokens) / 2;
  if (mode == "cloud-only") return rtt + 0.006 * tokens;
  // Pipelined: a round trip per rejected draft (~3 per 32 tokens) plus two.
  if (mode == "collab-pipelined") return 0.008 * tokens + rtt * (2.0 + tokens / 10.0);
  return (0.005 + rtt * (mode == "naive-split" ? 1.0 : 0.7)) * tokens;
}

absl::Status Run(int argc, char** argv) {
  using tandem::flags::Flags;
  TANDEM_ASSIGN_OR_RETURN(
      Flags flags,
      Flags::Parse(argc - 1, argv + 1,
                   {"model", "text", "out", "modes", "profiles", "prompts", "prompt-tokens", "tokens",
                    "headline-codec", "codecs", "codec-profile", "codec-prompts", "ratio",
                    "ratio-profile", "ratio-prompts", "tf-windows", "tf-length", "sweep-tokens",
                    "threads", "split", "exit-layers", "fresh-threshold"},
                   {"fresh-heads", "help"}));
  if (flags.Has("help")) {
    std::cout << kUsage;
    return absl::OkStatus();
  }
  if (!flags.Has("model") || !flags.Has("text") || !flags.Has("out")) {
    return absl::InvalidArgumentError("--model, --text and --out are required (--help)");
  }
  tandem::bench::SuiteOptions options;
  options.model_dir = flags.Get("model");
  options.text_file = flags.Get("text");
  TANDEM_ASSIGN_OR_RETURN(int64_t threads, flags.GetInt<int64_t>("threads", 1, 1, 256));
  options.threads = static_cast<int>(threads);
  TANDEM_ASSIGN_OR_RETURN(options.split, flags.GetInt<int64_t>("split", 0, 0, 4096));
  options.fresh_heads = flags.Has("fresh-heads");
  for (const std::string& e : List(flags.Get("exit-layers"))) {
    int64_t layer;
    if (!absl::SimpleAtoi(e, &layer)) return absl::InvalidArgumentError("--exit-layers: integers");
    options.exit_layers.push_back(layer);
  }
  TANDEM_ASSIGN_OR_RETURN(options.fresh_threshold, flags.GetDouble("fresh-threshold", 0.5, 0.0, 1.0));
  options.headline_codec = flags.Get("headline-codec", "int8");
  const std::string default_modes =
      "cloud-only,edge-full,naive-split,standalone,collab-blocking,collab-pipelined";
  const std::vector<std::string> modes = List(flags.Get("modes", default_modes));
  const std::vector<std::string> profiles = List(flags.Get("profiles", "lan,wifi,4g,poor,drop"));
  const std::vector<std::string> codecs =
      List(flags.Get("codecs", "fp32,fp16,int8,int8+zstd,int4,int4+zstd,int4-g64"));
  TANDEM_ASSIGN_OR_RETURN(int64_t prompts_n, flags.GetInt<int64_t>("prompts", 6, 1, 10000));
  TANDEM_ASSIGN_OR_RETURN(int64_t prompt_tokens, flags.GetInt<int64_t>("prompt-tokens", 32, 1, 1 << 20));
  TANDEM_ASSIGN_OR_RETURN(int64_t tokens, flags.GetInt<int64_t>("tokens", 32, 1, 1 << 20));
  const std::string codec_profile = flags.Get("codec-profile", "4g");
  TANDEM_ASSIGN_OR_RETURN(int64_t codec_prompts, flags.GetInt<int64_t>("codec-prompts", 3, 0, 10000));
  TANDEM_ASSIGN_OR_RETURN(double ratio, flags.GetDouble("ratio", 10, 0.01, 1e6));
  const std::string ratio_profile = flags.Get("ratio-profile", "4g");
  TANDEM_ASSIGN_OR_RETURN(int64_t ratio_prompts, flags.GetInt<int64_t>("ratio-prompts", 3, 0, 10000));
  TANDEM_ASSIGN_OR_RETURN(int64_t tf_windows, flags.GetInt<int64_t>("tf-windows", 4, 0, 1 << 20));
  TANDEM_ASSIGN_OR_RETURN(int64_t tf_length, flags.GetInt<int64_t>("tf-length", 128, 2, 1 << 20));
  TANDEM_ASSIGN_OR_RETURN(int64_t sweep_tokens, flags.GetInt<int64_t>("sweep-tokens", 2048, 0, 1 << 26));
  if (prompts_n < 1 || tokens < 1 || prompt_tokens < 1) {
    return absl::InvalidArgumentError("--prompts, --tokens and --prompt-tokens must be >= 1");
  }

  std::ofstream out(flags.Get("out"));
  if (!out) return absl::NotFoundError(absl::StrCat("cannot write ", flags.Get("out")));
  auto emit = [&out](const Json& j) { out << j.dump() << "\n" << std::flush; };

  std::fprintf(stderr, "loading %s ...\n", options.model_dir.c_str());
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<SuiteRunner> runner, SuiteRunner::Create(options));
  const auto prompts = runner->Prompts(static_cast<int>(prompts_n), static_cast<int>(prompt_tokens));
  TANDEM_ASSIGN_OR_RETURN(
      ComputeCalibration cal,
      runner->Calibrate({prompts.begin(), prompts.begin() + std::min<int64_t>(3, prompts_n)},
                        static_cast<int>(tokens)));
  emit(Json{{"type", "meta"},
            {"model", options.model_dir},
            {"text", options.text_file},
            {"threads", options.threads},
            {"modes", modes},
            {"profiles", profiles},
            {"prompts", prompts_n},
            {"prompt_tokens", prompt_tokens},
            {"tokens", tokens},
            {"headline_codec", options.headline_codec},
            {"codecs", codecs},
            {"codec_profile", codec_profile},
            {"ratio", ratio},
            {"ratio_profile", ratio_profile},
            {"drop_after_s", absl::ToDoubleSeconds(options.drop_after)},
            {"drop_length_s", absl::ToDoubleSeconds(options.drop_length)},
            {"request_timeout_s", absl::ToDoubleSeconds(options.request_timeout)},
            {"model_facts", runner->ModelFacts()},
            {"calibration",
             {{"edge_prefill_s", cal.edge_prefill_s},
              {"edge_step_s", cal.edge_step_s},
              {"full_prefill_s", cal.full_prefill_s},
              {"full_step_s", cal.full_step_s}}}});

  // The plan, with expected costs for the ETA.
  struct Item {
    std::string stage, mode, profile, codec;
    double ratio;
    int prompt;
  };
  std::vector<Item> plan;
  for (const std::string& profile : profiles) {
    for (int p = 0; p < prompts_n; ++p) {
      for (size_t k = 0; k < modes.size(); ++k) {
        const std::string& mode = modes[(k + p) % modes.size()];
        if (!tandem::bench::ModeUsesNetwork(mode) && profile != profiles.front()) continue;
        plan.push_back({"matrix", mode, profile, options.headline_codec, 1.0, p});
      }
    }
  }
  if (ratio > 1) {
    for (int p = 0; p < std::min<int64_t>(ratio_prompts, prompts_n); ++p) {
      for (size_t k = 0; k < modes.size(); ++k) {
        const std::string& mode = modes[(k + p) % modes.size()];
        plan.push_back({"ratio", mode, ratio_profile, options.headline_codec, ratio, p});
      }
    }
  }
  for (int p = 0; p < std::min<int64_t>(codec_prompts, prompts_n); ++p) {
    for (size_t k = 0; k < codecs.size(); ++k) {
      plan.push_back({"codec", "collab-blocking", codec_profile, codecs[(k + p) % codecs.size()],
                      1.0, p});
    }
  }
  double total = 0;
  for (const Item& item : plan) total += Cost(item.mode, item.profile, static_cast<int>(tokens));
  const double tf_cost = tf_windows * tf_length * 0.01;
  const bool run_tf = tf_windows > 0;
  std::vector<std::pair<std::string, std::string>> tf_cells;
  if (run_tf) {
    tf_cells.push_back({"standalone", ""});
    tf_cells.push_back({"naive-split", "fp16"});
    for (const std::string& codec : codecs.empty() ? std::vector<std::string>{options.headline_codec}
                                                   : codecs) {
      tf_cells.push_back({"collab-blocking", codec});
    }
    total += tf_cost * static_cast<double>(tf_cells.size());
  }
  if (sweep_tokens > 0) total += 0.002 * static_cast<double>(sweep_tokens) * 11;
  Progress progress(total);

  // Warm-up, not recorded: every session the plan uses connects once (TCP,
  // HTTP/2, first stream) and touches its code paths before anything is timed.
  std::set<std::pair<std::string, std::string>> warmed;
  for (const Item& item : plan) {
    const std::string codec = item.mode == "naive-split" ? "fp16" : item.codec;
    if (!warmed.insert({item.mode, codec}).second) continue;
    (void)runner->Generate(item.mode, "lan", codec, 1.0, 0, prompts[0], 2, cal);
  }
  std::fprintf(stderr, "warmed up %zu sessions\n", warmed.size());

  // Edge-only modes run once per prompt (in the first profile); they do not
  // touch the network, so they are reported for every profile.
  for (const Item& item : plan) {
    const GenerationRecord r =
        runner->Generate(item.mode, item.profile, item.mode == "naive-split" ? "fp16" : item.codec,
                         item.ratio, item.prompt, prompts[item.prompt], static_cast<int>(tokens), cal);
    Json j = ToJson(r);
    j["stage"] = item.stage;
    j["prompt"] = prompts[item.prompt];
    emit(j);
    progress.Done(Cost(item.mode, item.profile, static_cast<int>(tokens)),
                  absl::StrFormat("%-6s %-7s %-16s p%d %-9s %6.2f s%s%s", item.stage, item.profile,
                                  item.mode, item.prompt, r.codec, r.total_s,
                                  r.drafts > 0 ? absl::StrFormat("  drafts %d, rejected %d",
                                                                 r.drafts, r.drafts_rejected)
                                               : "",
                                  r.ok ? "" : absl::StrCat("  ERROR: ", r.error)));
  }
  if (run_tf) {
    const auto windows = runner->Windows(static_cast<int>(tf_windows), static_cast<int>(tf_length));
    for (const auto& [mode, codec] : tf_cells) {
      absl::StatusOr<tandem::bench::TeacherForcedRecord> r =
          runner->TeacherForced(mode, codec, windows);
      if (!r.ok()) {
        emit(Json{{"type", "teacher_forced"}, {"mode", mode}, {"codec", codec}, {"ok", false},
                  {"error", std::string(r.status().message())}});
      } else {
        emit(Json{{"type", "teacher_forced"},
                  {"mode", r->mode},
                  {"codec", r->codec},
                  {"ok", true},
                  {"positions", r->positions},
                  {"agreed", r->agreed},
                  {"promised_agreed", r->promised_agreed},
                  {"at_edge", r->at_edge},
                  {"cloud", r->cloud},
                  {"fallback", r->fallback},
                  {"message_bytes_up", r->message_bytes_up},
                  {"seconds", r->seconds}});
      }
      progress.Done(tf_cost, absl::StrFormat("teacher-forced %s %s: %s", mode, codec,
                                             r.ok() ? absl::StrFormat("agreement %.4f",
                                                                      double(r->agreed) /
                                                                          std::max<int64_t>(1, r->positions))
                                                    : std::string(r.status().message())));
    }
  }
  if (sweep_tokens > 0) {
    const std::vector<double> scales = {0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 5, 8};
    TANDEM_ASSIGN_OR_RETURN(auto points, runner->Sweep(scales, sweep_tokens));
    for (const auto& p : points) {
      emit(Json{{"type", "sweep"}, {"scale", p.scale}, {"coverage", p.coverage},
                {"agreement", p.agreement}});
    }
    progress.Done(0.002 * static_cast<double>(sweep_tokens) * 11, "threshold sweep");
  }
  const tandem::bench::LinkStats link = runner->link().stats();
  emit(Json{{"type", "link"}, {"bytes_up", link.bytes_up}, {"bytes_down", link.bytes_down},
            {"packets_stalled", link.packets_stalled}, {"cuts", link.cuts},
            {"connections_accepted", link.connections_accepted}});
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::Status status = Run(argc, argv);
  if (!status.ok()) {
    std::cerr << "tandem-bench-suite: " << status << "\n";
    return 1;
  }
  return 0;
}
