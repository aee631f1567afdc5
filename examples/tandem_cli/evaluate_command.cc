// tandem evaluate: perplexity of the full model and of each exit head on
// held-out text, against an add-one unigram baseline.
#include <cmath>
#include <cstdio>

#include "commands.h"
#include "tandem/flags.h"
#include "tandem/calibration.h"
#include "tandem/threads.h"
#include "token_input.h"

namespace {

constexpr char kHelp[] =
    "usage: tandem evaluate --model DIR --data FILE [--unigram-from FILE.bin]\n"
    "  [--seq-len 256] [--max-tokens N] [--json] [--threads N]\n"
    "  [--precision fp32|bf16|auto] (default fp32, as the runtime computes; bf16 autocast is\n"
    "      several times faster on CPUs with AVX512_BF16/AMX and slightly changes the numbers)\n";

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "tandem evaluate: %s\n", std::string(s.message()).c_str());
  return 1;
}

}  // namespace

int RunEvaluateCommand(int argc, char** argv) {
  auto flags = tandem::flags::Flags::Parse(
      argc - 1, argv + 1, {"model", "data", "unigram-from", "seq-len", "max-tokens", "threads", "precision"},
      {"help", "json"});
  if (!flags.ok() || flags->Has("help") || !flags->Has("model") || !flags->Has("data")) {
    if (!flags.ok()) std::fprintf(stderr, "%s\n", std::string(flags.status().message()).c_str());
    std::fputs(kHelp, stderr);
    return flags.ok() && flags->Has("help") ? 0 : 2;
  }
  auto seq_len = flags->GetInt<int64_t>("seq-len", 256, 2, int64_t{1} << 20);
  auto max_tokens = flags->GetInt<int64_t>("max-tokens", 0, 0, int64_t{1} << 40);
  auto threads = flags->GetInt<int>("threads", 0, 0, 4096);
  for (const absl::Status& s : {seq_len.status(), max_tokens.status(), threads.status()}) {
    if (!s.ok()) return Fail(s);
  }
  auto precision = tandem::ParseComputePrecision(flags->Get("precision", "fp32"));
  if (!precision.ok()) return Fail(precision.status());
  tandem::SetComputeThreads(*threads);
  const std::string dir = flags->Get("model");
  auto model = tandem::Model::Load(dir);
  if (!model.ok()) return Fail(model.status());
  auto heads = tandem::ExitHeads::Load(dir, **model);
  if (!heads.ok() && heads.status().code() != absl::StatusCode::kNotFound) {
    return Fail(heads.status());
  }
  auto tokens = tandem::cli::ReadTokens(flags->Get("data"), dir);
  if (!tokens.ok()) return Fail(tokens.status());
  std::vector<int32_t> unigram;
  if (flags->Has("unigram-from")) {
    auto u = tandem::cli::ReadTokens(flags->Get("unigram-from"), dir);
    if (!u.ok()) return Fail(u.status());
    unigram = std::move(*u);
  }
  auto r = tandem::EvaluatePerplexity(**model, heads.ok() ? heads->get() : nullptr, *tokens,
                                      unigram, *seq_len, *max_tokens, nullptr, *precision);
  if (!r.ok()) return Fail(r.status());
  if (flags->Has("json")) {
    std::printf("{\"tokens\": %lld, \"full_ppl\": %.4f", static_cast<long long>(r->tokens),
                std::exp(r->full_nll));
    for (const auto& [layer, nll] : r->exit_nll) {
      std::printf(", \"exit_%lld_ppl\": %.4f", static_cast<long long>(layer), std::exp(nll));
    }
    if (!unigram.empty()) std::printf(", \"unigram_ppl\": %.4f", std::exp(r->unigram_nll));
    std::printf("}\n");
    return 0;
  }
  std::printf("%lld tokens\nfull model perplexity %.2f\n", static_cast<long long>(r->tokens),
              std::exp(r->full_nll));
  for (const auto& [layer, nll] : r->exit_nll) {
    std::printf("exit %lld perplexity %.2f\n", static_cast<long long>(layer), std::exp(nll));
  }
  if (!unigram.empty()) std::printf("unigram perplexity %.2f\n", std::exp(r->unigram_nll));
  return 0;
}
