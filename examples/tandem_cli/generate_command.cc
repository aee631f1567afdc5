// tandem generate: full-model generation on a checkpoint, streaming tokens.
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "sampling_flags.h"
#include "tandem/flags.h"
#include "tandem/generation_config.h"
#include "tandem/fast_decoder.h"
#include "tandem/generate.h"
#include "tandem/model.h"
#include "tandem/thread_pool.h"
#include "tandem/threads.h"
#include "tandem/weight_format.h"
#include "tandem/tokenizer.h"

namespace {

constexpr char kHelp[] =
    "usage: tandem generate --model DIR --prompt TEXT [flags]\n"
    "  --max-new-tokens N   tokens to generate (default 64)\n"
    "  --weights F          run the edge decode path (SIMD kernels, no libtorch per op)\n"
    "                       with weights in F: fp32, fp16, bf16, int8 (block 32, as\n"
    "                       Q8_0) or int4 (block 32, as Q4_0). Without it: libtorch.\n"
    "  --dtype D            libtorch path only: float32 (default) or bfloat16\n"
    "  --threads N          threads (default: $OMP_NUM_THREADS or all cores)\n"
    "  --no-eos             do not stop at EOS\n"
    "Stops at config.json's and generation_config.json's eos_token_id ids and the\n"
    "tokenizer's EOS.\n";

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "tandem generate: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace

int RunGenerateCommand(int argc, char** argv) {
  auto flags = tandem::flags::Flags::Parse(
      argc - 1, argv + 1,
      {"model", "prompt", "max-new-tokens", "temperature", "top-k", "top-p", "seed", "dtype",
       "threads", "weights"},
      {"help", "no-eos"});
  if (!flags.ok()) {
    std::fprintf(stderr, "tandem generate: %s\n%s%s", std::string(flags.status().message()).c_str(),
                 kHelp, tandem::cli::kSamplingHelp);
    return 2;
  }
  if (flags->Has("help") || !flags->Has("model") || !flags->Has("prompt")) {
    std::fputs(kHelp, stderr);
    std::fputs(tandem::cli::kSamplingHelp, stderr);
    return flags->Has("help") ? 0 : 2;
  }
  tandem::GenerateParams params;
  auto max_new = flags->GetInt<int32_t>("max-new-tokens", 64, 0, 1 << 24);
  auto threads = flags->GetInt<int>("threads", 0, 0, 4096);
  for (const absl::Status& s : {max_new.status(), threads.status()}) {
    if (!s.ok()) return Fail(s);
  }
  params.max_new_tokens = *max_new;
  params.stop_at_eos = !flags->Has("no-eos");

  tandem::ModelOptions options;
  const std::string dtype = flags->Get("dtype", "float32");
  if (dtype == "bfloat16") {
    options.dtype = at::kBFloat16;
  } else if (dtype != "float32") {
    return Fail(absl::InvalidArgumentError("--dtype must be float32 or bfloat16"));
  }
  // Sizes libtorch's and OpenBLAS's pools (libtorch path) and tells the
  // decode path's pool how many threads to start.
  const int thread_count = tandem::SetComputeThreads(*threads);

  const std::string dir = flags->Get("model");
  // Flags are checked before the (slow) model load.
  auto generation = tandem::GenerationConfig::LoadDir(dir);
  if (!generation.ok()) return Fail(generation.status());
  std::string sampling_text;
  auto sampling = tandem::cli::SamplingFromFlags(*flags, *generation, &sampling_text);
  if (!sampling.ok()) return Fail(sampling.status());
  params.sampling = *sampling;
  auto tokenizer = tandem::Tokenizer::Load(dir);
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  // Said once the model's size is known: head rows the tokenizer cannot decode.
  auto note = [&](const tandem::ModelConfig& config) {
    const tandem::TokenRules rules = tandem::ResolveTokenRules(config, *generation, tokenizer->get());
    if (!rules.note.empty()) std::fprintf(stderr, "tandem generate: note: %s\n", rules.note.c_str());
    std::fprintf(stderr, "[sampling: %s]\n", sampling_text.c_str());
  };
  const std::string prompt = flags->Get("prompt");
  auto print = [](const tandem::GeneratedToken& t) {
    std::cout << t.text << std::flush;
    return true;
  };
  absl::StatusOr<tandem::GenerateStats> stats;
  if (flags->Has("weights")) {
    auto format = tandem::ParseWeightFormat(flags->Get("weights"));
    if (!format.ok()) return Fail(format.status());
    tandem::FastDecoderOptions fast_options;
    fast_options.format = *format;
    auto decoder = tandem::FastDecoder::Load(dir, fast_options);
    if (!decoder.ok()) return Fail(decoder.status());
    tandem::SetComputeThreads(1);  // libtorch only converts and samples now
    tandem::ThreadPool pool(thread_count);
    note((*decoder)->config());
    std::cout << prompt << std::flush;
    stats = tandem::GenerateFull(**decoder, **tokenizer, prompt, params, &pool, print);
  } else {
    auto model = tandem::Model::Load(dir, options);
    if (!model.ok()) return Fail(model.status());
    note((*model)->config());
    std::cout << prompt << std::flush;
    stats = tandem::GenerateFull(**model, **tokenizer, prompt, params, print);
  }
  std::cout << "\n";
  if (!stats.ok()) return Fail(stats.status());
  const double decode_rate =
      stats->generated_tokens > 1 && stats->decode_seconds > 0
          ? (stats->generated_tokens - 1) / stats->decode_seconds
          : 0.0;
  std::fprintf(stderr,
               "[%lld prompt tokens, %lld generated; prefill+first token %.1f ms; "
               "decode %.1f tokens/s]\n",
               static_cast<long long>(stats->prompt_tokens),
               static_cast<long long>(stats->generated_tokens), stats->prefill_seconds * 1e3,
               decode_rate);
  return 0;
}
