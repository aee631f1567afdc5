// tandem edge: standalone edge generation (layers [0, S) + exit heads), streaming
// tokens, then per-exit statistics.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "commands.h"
#include "flags.h"
#include "tandem/edge/edge_session.h"
#include "tandem/threads.h"

namespace {

constexpr char kHelp[] =
    "usage: tandem edge --model DIR --prompt TEXT [flags]\n"
    "  --split S            edge holds layers [0, S) (default: from exits.json)\n"
    "  --exits 2,4          exit layers <= S (default: exits.json's; S is always one)\n"
    "  --threshold T        one threshold for every exit, or per exit: 2:0.9,4:0.6\n"
    "                       (default: exits.json's calibrated thresholds)\n"
    "  --measure M          max_prob | margin | neg_entropy (default: exits.json's)\n"
    "  --fallback F         deepest (default) | most-confident: token when no exit passes\n"
    "  --max-new-tokens N   tokens to generate (default 64)\n"
    "  --max-context N      KV cache positions (default: max_position_embeddings)\n"
    "  --temperature T --top-k K --top-p P --seed S   sampling (default greedy)\n"
    "  --stop TEXT          stop string (may be given once)\n"
    "  --threads N          intra-op threads (default: $OMP_NUM_THREADS or all cores)\n"
    "  --fresh-heads        no trained heads: start them from the final norm + LM head\n"
    "  --show-exits         print each token as [layer|text] (c = confident, f = fallback)\n"
    "  --no-eos             do not stop at EOS\n"
    "collaborative mode (a tandem-cloud server; without --cloud: standalone):\n"
    "  --cloud HOST:PORT    verify undecided tokens with the cloud\n"
    "  --codec C            hidden states on the wire: fp32 fp16 bf16 int8 int4 int4-g64,\n"
    "                       +zstd optional (default int8)\n"
    "  --delivery D         confirmed (default: only verified tokens) | eager\n"
    "  --max-in-flight N    drafts awaiting the cloud at once (default 32; 0 = wait for each)\n"
    "  --fixed-window       do not adapt the window to the rollback rate\n"
    "  --request-timeout-ms N  a draft stands if the cloud has not answered by then (1000)\n"
    "  --api-key KEY        sent as authorization: Bearer KEY\n"
    "  --tls-ca FILE        PEM of the CAs to trust (enables TLS)\n"
    "  --tls-server-name N  name expected in the server certificate\n";

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "tandem edge: %s\n", std::string(status.message()).c_str());
  return 1;
}

absl::StatusOr<std::vector<int64_t>> ParseLayers(const std::string& text) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int64_t v;
    if (!absl::SimpleAtoi(part, &v)) {
      return absl::InvalidArgumentError(absl::StrCat("--exits: '", part, "' is not a layer"));
    }
    out.push_back(v);
  }
  return out;
}

// "0.8" (one value for every exit, returned in *all) or "2:0.9,4:0.6".
absl::Status ParseThresholds(const std::string& text, std::map<int64_t, double>* by_layer,
                             double* all) {
  if (text.find(':') == std::string::npos) {
    if (!absl::SimpleAtod(text, all)) {
      return absl::InvalidArgumentError("--threshold must be a number or layer:value pairs");
    }
    return absl::OkStatus();
  }
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> kv = absl::StrSplit(part, ':');
    int64_t layer;
    double value;
    if (kv.size() != 2 || !absl::SimpleAtoi(kv[0], &layer) || !absl::SimpleAtod(kv[1], &value)) {
      return absl::InvalidArgumentError(absl::StrCat("--threshold: bad entry '", part, "'"));
    }
    (*by_layer)[layer] = value;
  }
  return absl::OkStatus();
}

}  // namespace

int RunEdgeCommand(int argc, char** argv) {
  auto flags = tandem::cli::Flags::Parse(
      argc - 1, argv + 1,
      {"model", "prompt", "split", "exits", "threshold", "measure", "fallback", "max-new-tokens",
       "max-context", "temperature", "top-k", "top-p", "seed", "stop", "threads", "cloud", "codec",
       "delivery", "max-in-flight", "request-timeout-ms", "api-key", "tls-ca", "tls-server-name"},
      {"help", "fresh-heads", "show-exits", "no-eos", "fixed-window"});
  if (!flags.ok()) {
    std::fprintf(stderr, "tandem edge: %s\n%s", std::string(flags.status().message()).c_str(),
                 kHelp);
    return 2;
  }
  if (flags->Has("help") || !flags->Has("model") || !flags->Has("prompt")) {
    std::fputs(kHelp, stderr);
    return flags->Has("help") ? 0 : 2;
  }
  auto split = flags->GetInt("split", 0);
  auto max_new = flags->GetInt("max-new-tokens", 64);
  auto max_context = flags->GetInt("max-context", 0);
  auto temperature = flags->GetDouble("temperature", 0.0);
  auto top_k = flags->GetInt("top-k", 0);
  auto top_p = flags->GetDouble("top-p", 1.0);
  auto seed = flags->GetInt("seed", 0);
  auto threads = flags->GetInt("threads", 0);
  auto max_in_flight = flags->GetInt("max-in-flight", 32);
  auto request_timeout_ms = flags->GetInt("request-timeout-ms", 1000);
  for (const absl::Status& s :
       {split.status(), max_new.status(), max_context.status(), temperature.status(),
        top_k.status(), top_p.status(), seed.status(), threads.status(), max_in_flight.status(),
        request_timeout_ms.status()}) {
    if (!s.ok()) return Fail(s);
  }
  if (*max_in_flight < 0 || *max_in_flight > 4096) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--max-in-flight must be in [0, 4096], got ", *max_in_flight)));
  }
  if (*request_timeout_ms < 1 || *request_timeout_ms > 600000) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--request-timeout-ms must be in [1, 600000], got ", *request_timeout_ms)));
  }

  tandem::edge::EdgeOptions options;
  options.model_dir = flags->Get("model");
  options.split = *split;
  options.max_context = *max_context;
  options.compute_threads = *threads > 0 ? static_cast<int>(*threads) : 0;
  options.allow_fresh_heads = flags->Has("fresh-heads");
  if (flags->Has("exits")) {
    auto exits = ParseLayers(flags->Get("exits"));
    if (!exits.ok()) return Fail(exits.status());
    options.exit_layers = *exits;
  }
  if (flags->Has("measure")) {
    auto m = tandem::ParseConfidenceMeasure(flags->Get("measure"));
    if (!m.ok()) return Fail(m.status());
    options.measure = *m;
  }
  const std::string fallback = flags->Get("fallback", "deepest");
  if (fallback == "most-confident") {
    options.fallback = tandem::edge::StandaloneFallback::kMostConfident;
  } else if (fallback != "deepest") {
    return Fail(absl::InvalidArgumentError("--fallback must be deepest or most-confident"));
  }
  double all = std::nan("");
  if (flags->Has("threshold")) {
    absl::Status s = ParseThresholds(flags->Get("threshold"), &options.thresholds, &all);
    if (!s.ok()) return Fail(s);
  }
  if (options.compute_threads == 0) tandem::SetComputeThreads(0);
  if (flags->Has("cloud")) {
    options.cloud.address = flags->Get("cloud");
    options.cloud.codec = flags->Get("codec", "int8");
    options.cloud.max_in_flight = static_cast<int32_t>(*max_in_flight);
    options.cloud.adaptive_depth = !flags->Has("fixed-window");
    options.cloud.request_timeout = absl::Milliseconds(*request_timeout_ms);
    options.cloud.api_key = flags->Get("api-key", "");
    options.cloud.tls_root_certs_file = flags->Get("tls-ca", "");
    options.cloud.tls_server_name = flags->Get("tls-server-name", "");
  } else {
    for (const char* name : {"codec", "delivery", "max-in-flight", "request-timeout-ms",
                             "api-key", "tls-ca", "tls-server-name", "fixed-window"}) {
      if (flags->Has(name)) {
        return Fail(absl::InvalidArgumentError(absl::StrCat("--", name, " needs --cloud")));
      }
    }
  }

  auto session = tandem::edge::EdgeSession::Create(options);
  if (session.ok() && !std::isnan(all)) {
    // One value for every exit: the exits are known only once resolved.
    for (int64_t e : (*session)->engine().exit_layers()) options.thresholds[e] = all;
    session = tandem::edge::EdgeSession::Create(options);
  }
  if (!session.ok()) return Fail(session.status());
  const tandem::edge::EdgeEngine& engine = (*session)->engine();
  std::fprintf(stderr, "[edge: layers [0, %lld) of %lld, exits", static_cast<long long>(engine.split()),
               static_cast<long long>(engine.model().config().num_hidden_layers));
  for (int64_t e : engine.exit_layers()) {
    std::fprintf(stderr, " %lld@%g", static_cast<long long>(e), engine.policy().thresholds.at(e));
  }
  std::fprintf(stderr, " (%s), fallback %s, %.1f MB of weights]\n",
               tandem::ConfidenceMeasureName(engine.policy().measure),
               tandem::edge::StandaloneFallbackName(engine.policy().fallback),
               engine.model().weight_bytes() / 1e6);

  tandem::edge::GenerateOptions request;
  request.max_new_tokens = static_cast<int32_t>(*max_new);
  request.sampling.temperature = static_cast<float>(*temperature);
  request.sampling.top_k = static_cast<int32_t>(*top_k);
  request.sampling.top_p = static_cast<float>(*top_p);
  request.sampling.seed = static_cast<uint64_t>(*seed);
  request.stop_at_eos = !flags->Has("no-eos");
  if (flags->Has("stop")) request.stop_strings.push_back(flags->Get("stop"));
  const std::string delivery = flags->Get("delivery", "confirmed");
  if (delivery == "eager") {
    request.delivery = tandem::edge::GenerateOptions::Delivery::kEager;
  } else if (delivery != "confirmed") {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--delivery must be confirmed or eager, got '", delivery, "'")));
  }
  const bool show_exits = flags->Has("show-exits");

  const std::string prompt = flags->Get("prompt");
  std::cout << prompt << std::flush;
  auto on_token = [&](const tandem::edge::TokenInfo& t) {
    if (show_exits && t.id >= 0) {
      using tandem::edge::TokenSource;
      if (t.source == TokenSource::kCloud) {
        std::cout << "[C" << (t.draft_accepted ? "=" : "!") << "|" << t.text << "]";
      } else {
        const char kind = t.source == TokenSource::kExit ? 'c' : 'f';
        std::cout << "[" << t.exit_layer << kind << (t.provisional ? "?" : "") << "|" << t.text
                  << "]";
      }
    } else {
      std::cout << t.text;
    }
    std::cout << std::flush;
    return true;
  };
  auto on_rollback = [&](const tandem::edge::Rollback& r) {
    // A terminal cannot redraw: mark the rollback instead of erasing text.
    std::cout << "<-" << r.tokens << ">" << std::flush;
  };
  auto summary = (*session)->Generate(prompt, request, on_token, on_rollback);
  std::cout << std::endl;  // flushed before the statistics on stderr
  if (!summary.ok()) return Fail(summary.status());

  const tandem::edge::SessionStats stats = (*session)->stats();
  const double n = static_cast<double>(summary->generated_tokens);
  std::fprintf(stderr, "[%lld prompt tokens, %lld generated, stop: %s; prefill+first %.1f ms; "
                       "%.2f ms/token = %.1f tokens/s; %lld bytes of context at S]\n",
               static_cast<long long>(summary->prompt_tokens),
               static_cast<long long>(summary->generated_tokens),
               tandem::edge::StopReasonName(summary->stop_reason),
               summary->prefill_seconds * 1e3, stats.seconds_per_token() * 1e3,
               stats.seconds_per_token() > 0 ? 1.0 / stats.seconds_per_token() : 0.0,
               static_cast<long long>(summary->bytes_to_sink));
  if (summary->cloud.requests > 0 || (*session)->cloud_link() != nullptr) {
    const tandem::edge::CloudLinkStats& c = summary->cloud;
    const tandem::edge::SpeculationStats& sp = summary->speculation;
    std::fprintf(stderr,
                 "[cloud: %lld tokens decided by the cloud (%lld drafts: %lld accepted, %lld "
                 "replaced, %lld unverified); %lld rolled back, %lld edge steps wasted; "
                 "%.1f ms waiting; window %d, mean in flight %.1f; bytes up %lld (context %lld, "
                 "requests %lld), down %lld; %.1f ms per verdict%s%s]\n",
                 static_cast<long long>(summary->counts.cloud), static_cast<long long>(sp.drafts),
                 static_cast<long long>(sp.accepted), static_cast<long long>(sp.rejected),
                 static_cast<long long>(sp.unverified), static_cast<long long>(sp.rolled_back),
                 static_cast<long long>(sp.wasted_steps), sp.wait_seconds * 1e3, sp.final_window,
                 sp.mean_in_flight, static_cast<long long>(c.bytes_up),
                 static_cast<long long>(c.context_bytes), static_cast<long long>(c.continue_bytes),
                 static_cast<long long>(c.bytes_down),
                 c.cloud_tokens ? 1e3 * c.request_seconds / c.cloud_tokens : 0.0,
                 c.last_error.empty() ? "" : "; last error: ", c.last_error.c_str());
  }
  std::fprintf(stderr, "  exit  threshold   confident   fallback   share   mean conf\n");
  for (int64_t e : engine.exit_layers()) {
    auto count = [](const std::map<int64_t, int64_t>& m, int64_t k) {
      auto it = m.find(k);
      return it == m.end() ? int64_t{0} : it->second;
    };
    const int64_t exited = count(summary->counts.exited, e);
    const int64_t fell = count(summary->counts.fallback, e);
    auto sum = stats.confidence_sum.find(e);
    const double mean = exited + fell > 0 && sum != stats.confidence_sum.end()
                            ? sum->second / (exited + fell)
                            : 0.0;
    std::fprintf(stderr, "  %4lld  %9.4g   %9lld   %8lld   %5.1f%%  %9.4f\n",
                 static_cast<long long>(e), engine.policy().thresholds.at(e),
                 static_cast<long long>(exited), static_cast<long long>(fell),
                 n > 0 ? 100.0 * (exited + fell) / n : 0.0, mean);
  }
  return 0;
}
