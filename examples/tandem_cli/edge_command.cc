// tandem edge: standalone edge generation (layers [0, S) + exit heads), streaming
// tokens, then per-exit statistics.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "commands.h"
#include "sampling_flags.h"
#include "tandem/flags.h"
#include "tandem/generation_config.h"
#include "tandem/edge/edge_session.h"
#include "tandem/status_macros.h"
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
    "  --stop TEXT          stop string (may be given once)\n"
    "  --threads N          threads (default: $OMP_NUM_THREADS or all cores)\n"
    "  --weights F          SIMD decode path with weights in F: fp32, fp16, bf16, int8,\n"
    "                       int4 (default: libtorch fp32)\n"
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
    "  --tls-server-name N  name expected in the server certificate\n"
    "  --tls-client-cert FILE --tls-client-key FILE   mutual TLS\n";

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "tandem edge: %s\n", std::string(status.message()).c_str());
  return 1;
}

// "0.8" (one value for every exit, returned in *all) or "2:0.9,4:0.6".
absl::Status ParseThresholds(const std::string& text, std::map<int64_t, double>* by_layer,
                             double* all) {
  using tandem::flags::ParseDouble;
  using tandem::flags::ParseInt;
  constexpr double kLimit = 1e9;  // thresholds are probabilities, margins or -entropies
  if (text.find(':') == std::string::npos) {
    TANDEM_ASSIGN_OR_RETURN(*all, ParseDouble("--threshold", text, -kLimit, kLimit));
    return absl::OkStatus();
  }
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> kv = absl::StrSplit(part, ':');
    if (kv.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("--threshold: bad entry '", part, "' (expected layer:value)"));
    }
    TANDEM_ASSIGN_OR_RETURN(int64_t layer, ParseInt("a layer in --threshold", kv[0], 0, 4096));
    TANDEM_ASSIGN_OR_RETURN((*by_layer)[layer],
                            ParseDouble("a value in --threshold", kv[1], -kLimit, kLimit));
  }
  return absl::OkStatus();
}

}  // namespace

int RunEdgeCommand(int argc, char** argv) {
  auto flags = tandem::flags::Flags::Parse(
      argc - 1, argv + 1,
      {"model", "prompt", "split", "exits", "threshold", "measure", "fallback", "max-new-tokens",
       "max-context", "temperature", "top-k", "top-p", "seed", "stop", "threads",
       "weights", "cloud", "codec", "delivery", "max-in-flight", "request-timeout-ms", "api-key",
       "tls-ca", "tls-server-name", "tls-client-cert", "tls-client-key"},
      {"help", "fresh-heads", "show-exits", "no-eos", "fixed-window"});
  if (!flags.ok()) {
    std::fprintf(stderr, "tandem edge: %s\n%s", std::string(flags.status().message()).c_str(),
                 kHelp);
    return 2;
  }
  if (flags->Has("help") || !flags->Has("model") || !flags->Has("prompt")) {
    std::fputs(kHelp, stderr);
    std::fputs(tandem::cli::kSamplingHelp, stderr);
    return flags->Has("help") ? 0 : 2;
  }
  auto split = flags->GetInt<int64_t>("split", 0, 0, 4096);
  auto max_new = flags->GetInt<int32_t>("max-new-tokens", 64, 0, 1 << 24);
  auto max_context = flags->GetInt<int64_t>("max-context", 0, 0, int64_t{1} << 31);
  auto threads = flags->GetInt<int>("threads", 0, 0, 4096);
  auto exits = flags->GetIntList("exits", 1, 4096);
  auto max_in_flight = flags->GetInt<int32_t>("max-in-flight", 32, 0, 4096);
  auto request_timeout_ms = flags->GetInt<int64_t>("request-timeout-ms", 1000, 1, 600000);
  for (const absl::Status& s : {split.status(), max_new.status(), max_context.status(),
                                threads.status(), exits.status(), max_in_flight.status(),
                                request_timeout_ms.status()}) {
    if (!s.ok()) return Fail(s);
  }
  auto generation = tandem::GenerationConfig::LoadDir(flags->Get("model"));
  if (!generation.ok()) return Fail(generation.status());
  std::string sampling_text;
  auto sampling = tandem::cli::SamplingFromFlags(*flags, *generation, &sampling_text);
  if (!sampling.ok()) return Fail(sampling.status());

  tandem::edge::EdgeOptions options;
  options.model_dir = flags->Get("model");
  options.split = *split;
  options.max_context = *max_context;
  options.compute_threads = *threads;
  options.allow_fresh_heads = flags->Has("fresh-heads");
  options.exit_layers = *exits;
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
  // The decode path's threads belong to this binary, not to the library.
  std::unique_ptr<tandem::ThreadPool> pool;
  if (flags->Has("weights")) {
    auto format = tandem::ParseWeightFormat(flags->Get("weights"));
    if (!format.ok()) return Fail(format.status());
    options.weights = *format;
    const int pool_threads = tandem::SetComputeThreads(options.compute_threads);
    options.compute_threads = 0;
    tandem::SetComputeThreads(1);  // libtorch only loads, samples and scores now
    pool = std::make_unique<tandem::ThreadPool>(pool_threads);
    options.thread_pool = pool.get();
  }
  if (flags->Has("cloud")) {
    options.cloud.address = flags->Get("cloud");
    options.cloud.codec = flags->Get("codec", "int8");
    options.cloud.max_in_flight = *max_in_flight;
    options.cloud.adaptive_depth = !flags->Has("fixed-window");
    options.cloud.request_timeout = absl::Milliseconds(*request_timeout_ms);
    options.cloud.api_key = flags->Get("api-key", "");
    options.cloud.tls_root_certs_file = flags->Get("tls-ca", "");
    options.cloud.tls_server_name = flags->Get("tls-server-name", "");
    options.cloud.tls_client_cert_file = flags->Get("tls-client-cert", "");
    options.cloud.tls_client_key_file = flags->Get("tls-client-key", "");
  } else {
    for (const char* name : {"codec", "delivery", "max-in-flight", "request-timeout-ms", "api-key",
                             "tls-ca", "tls-server-name", "tls-client-cert", "tls-client-key",
                             "fixed-window"}) {
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
  std::fprintf(stderr, " (%s), fallback %s, %.1f MB of weights (%s)]\n",
               tandem::ConfidenceMeasureName(engine.policy().measure),
               tandem::edge::StandaloneFallbackName(engine.policy().fallback),
               (engine.fast_decoder() != nullptr ? engine.fast_decoder()->weight_bytes()
                                                 : engine.model().weight_bytes()) /
                   1e6,
               engine.fast_decoder() != nullptr
                   ? tandem::WeightFormatName(engine.fast_decoder()->options().format)
                   : "libtorch fp32");

  const tandem::TokenRules rules = tandem::ResolveTokenRules(
      engine.model().config(), engine.model().generation_config(), &(*session)->tokenizer());
  if (!rules.note.empty()) std::fprintf(stderr, "tandem edge: note: %s\n", rules.note.c_str());
  std::fprintf(stderr, "[sampling: %s]\n", sampling_text.c_str());

  tandem::edge::GenerateOptions request;
  request.max_new_tokens = *max_new;
  request.sampling = *sampling;
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
