// tandem_pipelined_bench: time per output token of collaborative mode with
// pipelined verification (confirmed delivery) vs the blocking policy vs the
// standalone edge, at several round-trip times, on the shipped model and
// held-out prompts (issue 9). An in-process tandem-cloud sits behind the link
// emulator (bench/link); modes alternate within each repeat (rotated order)
// and the table reports medians over repeats and median paired ratios.
// Not a test: run it by hand (`make bench-pipelined`), on a quiet machine.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tandem/bench/link_emulator.h"
#include "tandem/cloud/server.h"
#include "tandem/edge/edge_session.h"
#include "tandem/flags.h"
#include "tandem/thread_pool.h"
#include "tandem/threads.h"
#include "tandem/weight_format.h"
#include "tandem/tokenizer.h"

namespace {

struct Args {
  std::string model = std::string(TANDEM_SOURCE_DIR) + "/models/tandem-tiny";
  std::string prompts = std::string(TANDEM_SOURCE_DIR) + "/tests/data/corpus/test_slice.txt";
  int n = 12;          // prompts
  int prompt_tokens = 24;
  int tokens = 32;     // new tokens per prompt
  int repeats = 3;
  std::vector<int> rtts = {0, 20, 60, 150};
  std::string codec = "int8";
  int threads = 1;
  std::string weights;  // empty: libtorch fp32; else the decode path's format
  int max_in_flight = 32;
  bool adaptive = true;
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

absl::Status ParseArgs(int argc, char** argv, Args* a) {
  using tandem::flags::Flags;
  absl::StatusOr<Flags> flags = Flags::Parse(
      argc - 1, argv + 1,
      {"model", "prompts", "codec", "weights", "rtts", "n", "tokens", "repeats", "threads", "prompt-tokens",
       "max-in-flight"},
      {"fixed-window"});
  if (!flags.ok()) return flags.status();
  a->adaptive = !flags->Has("fixed-window");
  a->model = flags->Get("model", a->model);
  a->prompts = flags->Get("prompts", a->prompts);
  a->codec = flags->Get("codec", a->codec);
  a->weights = flags->Get("weights", "");
  if (flags->Has("rtts")) {
    absl::StatusOr<std::vector<int64_t>> rtts = flags->GetIntList("rtts", 0, 10000);
    if (!rtts.ok()) return rtts.status();
    a->rtts.assign(rtts->begin(), rtts->end());
  }
  for (auto [name, target, max] :
       {std::tuple{"n", &a->n, 10000}, std::tuple{"tokens", &a->tokens, 100000},
        std::tuple{"repeats", &a->repeats, 1000}, std::tuple{"threads", &a->threads, 256},
        std::tuple{"prompt-tokens", &a->prompt_tokens, 100000}}) {
    absl::StatusOr<int> v = flags->GetInt<int>(name, *target, 1, max);
    if (!v.ok()) return v.status();
    *target = *v;
  }
  absl::StatusOr<int> depth = flags->GetInt<int>("max-in-flight", a->max_in_flight, 0, 4096);
  if (!depth.ok()) return depth.status();
  a->max_in_flight = *depth;
  return absl::OkStatus();
}

struct ModeResult {
  double seconds = 0;      // wall time over all prompts
  int64_t tokens = 0;
  int64_t drafts = 0, rejected = 0, unverified = 0, wasted = 0;
  double wait = 0;
  std::vector<std::vector<int32_t>> ids;
};

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (absl::Status parsed = ParseArgs(argc, argv, &args); !parsed.ok()) {
    std::fprintf(stderr, "%s\n", std::string(parsed.message()).c_str());
    std::fprintf(stderr,
                 "usage: tandem_pipelined_bench [--model DIR] [--prompts FILE] [--n 12] "
                 "[--prompt-tokens 24] [--tokens 32] [--repeats 3] [--rtts 0,20,60,150] "
                 "[--codec int8] [--weights fp32|fp16|bf16|int8|int4] [--threads 1] [--max-in-flight 32] [--fixed-window]\n");
    return 2;
  }
  tandem::SetComputeThreads(args.threads);
  // The decode path's threads belong to the binary (EdgeOptions::thread_pool);
  // the sessions run one at a time, so they share one pool.
  std::optional<tandem::WeightFormat> weights;
  std::unique_ptr<tandem::ThreadPool> pool;
  if (!args.weights.empty()) {
    auto format = tandem::ParseWeightFormat(args.weights);
    if (!format.ok()) {
      std::fprintf(stderr, "%s\n", format.status().ToString().c_str());
      return 2;
    }
    weights = *format;
    pool = std::make_unique<tandem::ThreadPool>(args.threads);
    tandem::SetComputeThreads(1);  // libtorch only loads, samples and scores
  }
  auto tokenizer = tandem::Tokenizer::Load(args.model);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", tokenizer.status().ToString().c_str());
    return 1;
  }
  std::ifstream in(args.prompts);
  std::stringstream text;
  text << in.rdbuf();
  auto all = (*tokenizer)->Encode(text.str(), false);
  if (!all.ok() || static_cast<int64_t>(all->size()) < int64_t{args.n} * 200) {
    std::fprintf(stderr, "cannot read prompts from %s\n", args.prompts.c_str());
    return 1;
  }
  std::vector<std::vector<int32_t>> prompts;
  const size_t stride = all->size() / args.n;
  for (int i = 0; i < args.n; ++i) {
    prompts.emplace_back(all->begin() + i * stride, all->begin() + i * stride + args.prompt_tokens);
  }

  tandem::cloud::ServerOptions server_options;
  server_options.model.model_dir = args.model;
  auto server = tandem::cloud::CloudServer::Start(server_options);
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
    return 1;
  }
  const std::vector<std::string> modes = {"standalone", "blocking", "confirmed"};
  std::printf("| RTT (ms) | standalone ms/token | blocking ms/token | confirmed ms/token | "
              "confirmed/blocking | confirmed/standalone | drafts | rollback rate | "
              "wasted steps | text identical |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (int rtt : args.rtts) {
    tandem::bench::LinkEmulatorOptions link_options;
    link_options.target_port = (*server)->port();
    link_options.profile = tandem::bench::LinkProfile::Symmetric(absl::Milliseconds(rtt), 0);
    auto link = tandem::bench::LinkEmulator::Start(link_options);
    if (!link.ok()) {
      std::fprintf(stderr, "%s\n", link.status().ToString().c_str());
      return 1;
    }
    std::map<std::string, std::unique_ptr<tandem::edge::EdgeSession>> sessions;
    for (const std::string& mode : modes) {
      tandem::edge::EdgeOptions options;
      options.model_dir = args.model;
      options.max_context = 512;
      options.weights = weights;
      options.thread_pool = pool.get();
      if (mode != "standalone") {
        options.cloud.address = (*link)->address();
        options.cloud.codec = args.codec;
        options.cloud.request_timeout = absl::Seconds(10);
        options.cloud.max_in_flight = mode == "blocking" ? 0 : args.max_in_flight;
        options.cloud.adaptive_depth = args.adaptive;
      }
      auto session = tandem::edge::EdgeSession::Create(options);
      if (!session.ok()) {
        std::fprintf(stderr, "%s\n", session.status().ToString().c_str());
        return 1;
      }
      sessions[mode] = *std::move(session);
    }
    tandem::edge::GenerateOptions request;
    request.max_new_tokens = args.tokens;
    request.stop_at_eos = false;
    std::map<std::string, std::vector<double>> per_token;
    std::vector<double> ratio_blocking, ratio_standalone;
    std::map<std::string, ModeResult> last;
    int64_t drafts = 0, rejected = 0, wasted = 0;
    bool identical = true;
    for (int r = 0; r < args.repeats; ++r) {
      std::map<std::string, ModeResult> results;
      for (size_t k = 0; k < modes.size(); ++k) {
        const std::string& mode = modes[(k + r) % modes.size()];
        ModeResult& m = results[mode];
        for (const auto& prompt : prompts) {
          auto s = sessions[mode]->GenerateIds(prompt, request);
          if (!s.ok()) {
            std::fprintf(stderr, "%s: %s\n", mode.c_str(), s.status().ToString().c_str());
            return 1;
          }
          m.seconds += s->total_seconds;
          m.tokens += s->generated_tokens;
          m.drafts += s->speculation.drafts;
          m.rejected += s->speculation.rejected;
          m.unverified += s->speculation.unverified;
          m.wasted += s->speculation.wasted_steps;
          m.ids.push_back(s->ids);
        }
      }
      for (auto& [mode, m] : results) per_token[mode].push_back(1e3 * m.seconds / m.tokens);
      const double c = per_token["confirmed"].back();
      ratio_blocking.push_back(c / per_token["blocking"].back());
      ratio_standalone.push_back(c / per_token["standalone"].back());
      drafts += results["confirmed"].drafts;
      rejected += results["confirmed"].rejected;
      wasted += results["confirmed"].wasted;
      identical = identical && results["confirmed"].ids == results["blocking"].ids &&
                  results["confirmed"].unverified == 0 && results["blocking"].unverified == 0;
      std::fprintf(stderr, "[rtt %d ms, repeat %d/%d: standalone %.2f, blocking %.2f, "
                   "confirmed %.2f ms/token]\n", rtt, r + 1, args.repeats,
                   per_token["standalone"].back(), per_token["blocking"].back(), c);
    }
    std::printf("| %d | %.2f | %.2f | %.2f | %.3f | %.2f | %lld | %.1f%% | %lld | %s |\n", rtt,
                Median(per_token["standalone"]), Median(per_token["blocking"]),
                Median(per_token["confirmed"]), Median(ratio_blocking), Median(ratio_standalone),
                static_cast<long long>(drafts / args.repeats),
                drafts ? 100.0 * rejected / drafts : 0.0,
                static_cast<long long>(wasted / args.repeats), identical ? "yes" : "NO");
    std::fflush(stdout);
  }
  std::printf("\n%d prompts x %d new tokens (prompts of %d tokens from %s), codec %s, "
              "edge weights %s, max_in_flight %d%s, %d compute thread(s), %d repeats, medians; time per token = "
              "wall time of Generate / tokens generated (time to first token included).\n",
              args.n, args.tokens, args.prompt_tokens, args.prompts.c_str(), args.codec.c_str(),
              args.weights.empty() ? "libtorch fp32" : args.weights.c_str(), args.max_in_flight, args.adaptive ? " (adaptive)" : " (fixed)", args.threads,
              args.repeats);
  return 0;
}
