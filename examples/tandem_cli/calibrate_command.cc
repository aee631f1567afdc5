// tandem calibrate: chooses exit thresholds on held-out text so that the
// overall agreement with the full model meets a target; prints the
// agreement/coverage table and writes the thresholds into exits.json.
#include <cstdio>

#include "commands.h"
#include "tandem/flags.h"
#include "tandem/calibration.h"
#include "tandem/threads.h"
#include "token_input.h"

namespace {

constexpr char kHelp[] =
    "usage: tandem calibrate --model DIR --data FILE [--target-agreement 0.99]\n"
    "  [--split S] [--seq-len 256] [--max-tokens N] [--dry-run] [--threads N]\n"
    "  [--precision fp32|bf16|auto] (default fp32: thresholds hold for the fp32 runtime;\n"
    "      bf16 autocast is faster on CPUs with AVX512_BF16/AMX, for quick sweeps)\n"
    "  --apply: do not calibrate; measure the thresholds already in exits.json\n"
    "           (edge share and overall agreement), with --json for tools\n"
    "FILE is a .bin of uint16 ids or a text file (tokenized with the model's tokenizer).\n";

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "tandem calibrate: %s\n", std::string(s.message()).c_str());
  return 1;
}

}  // namespace

int RunCalibrateCommand(int argc, char** argv) {
  auto flags = tandem::flags::Flags::Parse(
      argc - 1, argv + 1,
      {"model", "data", "target-agreement", "split", "seq-len", "max-tokens", "threads",
       "precision"},
      {"help", "dry-run", "apply", "json"});
  if (!flags.ok() || flags->Has("help") || !flags->Has("model") || !flags->Has("data")) {
    if (!flags.ok()) std::fprintf(stderr, "%s\n", std::string(flags.status().message()).c_str());
    std::fputs(kHelp, stderr);
    return flags.ok() && flags->Has("help") ? 0 : 2;
  }
  tandem::CalibrationOptions o;
  auto target = flags->GetDouble("target-agreement", 0.99, 0.0, 1.0);
  auto split = flags->GetInt<int64_t>("split", -1, 1, 4096);
  auto seq_len = flags->GetInt<int64_t>("seq-len", 256, 2, int64_t{1} << 20);
  auto max_tokens = flags->GetInt<int64_t>("max-tokens", 0, 0, int64_t{1} << 40);
  auto threads = flags->GetInt<int>("threads", 0, 0, 4096);
  for (const absl::Status& s : {target.status(), split.status(), seq_len.status(),
                                max_tokens.status(), threads.status()}) {
    if (!s.ok()) return Fail(s);
  }
  o.target_agreement = *target;
  o.max_layer = *split;
  o.seq_len = *seq_len;
  o.max_tokens = *max_tokens;
  auto precision = tandem::ParseComputePrecision(flags->Get("precision", "fp32"));
  if (!precision.ok()) return Fail(precision.status());
  o.precision = *precision;
  tandem::SetComputeThreads(*threads);
  const std::string dir = flags->Get("model");
  auto model = tandem::Model::Load(dir);
  if (!model.ok()) return Fail(model.status());
  auto heads = tandem::ExitHeads::Load(dir, **model);
  if (!heads.ok()) return Fail(heads.status());
  auto tokens = tandem::cli::ReadTokens(flags->Get("data"), dir);
  if (!tokens.ok()) return Fail(tokens.status());
  if (flags->Has("apply")) {
    auto r = tandem::EvaluateThresholds(**model, **heads, (*heads)->thresholds(), *tokens,
                                        o.seq_len, o.max_tokens, nullptr, o.precision);
    if (!r.ok()) return Fail(r.status());
    if (flags->Has("json")) {
      std::printf("{\"tokens\": %lld, \"edge_share\": %.6f, \"agreement\": %.6f",
                  static_cast<long long>(r->tokens), r->coverage, r->agreement);
      for (const auto& [layer, share] : r->exit_share) {
        std::printf(", \"exit_%lld_share\": %.6f", static_cast<long long>(layer), share);
      }
      std::printf("}\n");
    } else {
      std::printf("%lld tokens: edge share %.2f%%, overall agreement %.4f\n",
                  static_cast<long long>(r->tokens), 100.0 * r->coverage, r->agreement);
      for (const auto& [layer, share] : r->exit_share) {
        std::printf("  exit %lld decides %.2f%%\n", static_cast<long long>(layer), 100.0 * share);
      }
    }
    return 0;
  }
  auto result = tandem::Calibrate(**model, **heads, *tokens, o);
  if (!result.ok()) return Fail(result.status());
  std::fputs(tandem::FormatCalibration(*result).c_str(), stdout);
  if (!flags->Has("dry-run")) {
    (*heads)->set_thresholds(result->Chosen());
    if (absl::Status s = (*heads)->Save(dir); !s.ok()) return Fail(s);
    std::printf("wrote thresholds to %s/exits.json\n", dir.c_str());
  }
  return 0;
}
