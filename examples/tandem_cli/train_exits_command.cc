// tandem train-exits: trains early-exit heads on a frozen checkpoint by
// distillation (KL to the final layer) plus cross-entropy; writes
// tandem_exits.safetensors + exits.json into the model directory (or --out).
#include <cstdio>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "commands.h"
#include "tandem/cpu_features.h"
#include "tandem/flags.h"
#include "tandem/exit_training.h"
#include "tandem/threads.h"

namespace {

constexpr char kHelp[] =
    "usage: tandem train-exits --model DIR --exits 2,4 --train FILE.bin [flags]\n"
    "  --adapter-rank R (0)  --steps N (1000)  --batch B (8)  --seq-len T (256)\n"
    "  --lr 1e-3  --kl-weight 1.0  --ce-weight 0.2  --max-minutes 0\n"
    "  --precision auto|fp32|bf16 (auto: bf16 autocast where the CPU has AVX512_BF16 or AMX-BF16;\n"
    "      --bf16 = --precision bf16)\n"
    "  --out DIR (default: the model directory)  --log-every 20  --threads N\n";

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "tandem train-exits: %s\n", std::string(s.message()).c_str());
  return 1;
}

}  // namespace

int RunTrainExitsCommand(int argc, char** argv) {
  auto flags = tandem::flags::Flags::Parse(
      argc - 1, argv + 1,
      {"model", "exits", "train", "adapter-rank", "steps", "batch", "seq-len", "lr", "kl-weight",
       "ce-weight", "max-minutes", "out", "log-every", "threads", "seed", "precision"},
      {"help", "bf16"});
  if (!flags.ok() || flags->Has("help") || !flags->Has("model") || !flags->Has("exits") ||
      !flags->Has("train")) {
    if (!flags.ok()) std::fprintf(stderr, "%s\n", std::string(flags.status().message()).c_str());
    std::fputs(kHelp, stderr);
    return flags.ok() && flags->Has("help") ? 0 : 2;
  }
  absl::Status status;
  constexpr int64_t kMaxCount = int64_t{1} << 40;
  // Every numeric flag with its allowed range; the first bad one is reported.
  auto integer = [&](const char* name, int64_t fallback, int64_t min, int64_t max) {
    auto v = flags->GetInt<int64_t>(name, fallback, min, max);
    if (!v.ok() && status.ok()) status = v.status();
    return v.ok() ? *v : fallback;
  };
  auto real = [&](const char* name, double fallback, double min, double max) {
    auto v = flags->GetDouble(name, fallback, min, max);
    if (!v.ok() && status.ok()) status = v.status();
    return v.ok() ? *v : fallback;
  };
  tandem::ExitTrainOptions o;
  o.train_data = flags->Get("train");
  o.max_steps = integer("steps", 1000, 0, kMaxCount);
  o.batch_size = integer("batch", 8, 1, 1 << 20);
  o.seq_len = integer("seq-len", 256, 2, 1 << 24);
  o.learning_rate = real("lr", 1e-3, 0.0, 10.0);
  o.kl_weight = real("kl-weight", 1.0, 0.0, 1e3);
  o.ce_weight = real("ce-weight", 0.2, 0.0, 1e3);
  o.max_minutes = real("max-minutes", 0.0, 0.0, 1e7);
  auto precision =
      tandem::ParseComputePrecision(flags->Has("bf16") ? "bf16" : flags->Get("precision", "auto"));
  if (!precision.ok()) return Fail(precision.status());
  std::string compute_path;
  o.bf16_autocast = tandem::UseBf16Autocast(*precision, tandem::HostCpuFeatures(), &compute_path);
  auto seed = flags->GetInt<uint64_t>("seed", 1, 0, std::numeric_limits<uint64_t>::max());
  if (!seed.ok() && status.ok()) status = seed.status();
  o.seed = seed.ok() ? *seed : 1;
  const int64_t rank = integer("adapter-rank", 0, 0, 1 << 20);
  const int64_t log_every = integer("log-every", 20, 1, kMaxCount);
  tandem::SetComputeThreads(static_cast<int>(integer("threads", 0, 0, 4096)));
  if (!status.ok()) return Fail(status);
  auto exit_list = flags->GetIntList("exits", 1, 4096);
  if (!exit_list.ok()) return Fail(exit_list.status());
  const std::vector<int64_t> exits = *exit_list;
  const std::string dir = flags->Get("model");
  auto model = tandem::Model::Load(dir);
  if (!model.ok()) return Fail(model.status());
  auto heads = tandem::ExitHeads::Create(**model, exits, rank, o.seed);
  if (!heads.ok()) return Fail(heads.status());
  std::fprintf(stderr, "compute: %s\n", compute_path.c_str());
  auto steps = tandem::TrainExitHeads(**model, **heads, o, [&](const tandem::ExitTrainProgress& p) {
    if (p.step % log_every != 0 && p.step != p.max_steps) return;
    std::fprintf(stderr, "step %lld/%lld  %.0fs", static_cast<long long>(p.step),
                 static_cast<long long>(p.max_steps), p.elapsed_seconds);
    for (size_t i = 0; i < p.kl.size(); ++i) {
      std::fprintf(stderr, "  exit@%lld KL %.4f CE %.4f", static_cast<long long>(exits[i]), p.kl[i],
                   p.ce[i]);
    }
    std::fprintf(stderr, "\n");
  });
  if (!steps.ok()) return Fail(steps.status());
  const std::string out = flags->Get("out", dir);
  if (absl::Status s = (*heads)->Save(out); !s.ok()) return Fail(s);
  std::printf("trained exit heads at layers %s for %lld steps; wrote %s; compute %s\n",
              flags->Get("exits").c_str(), static_cast<long long>(*steps), out.c_str(),
              compute_path.c_str());
  return 0;
}
