// tandem train: trains a Llama-family model from scratch (or resumes) on a
// tokenized corpus. See docs/training.md for the shipped model's recipe.
#include <cmath>
#include <cstdio>
#include <limits>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "commands.h"
#include "tandem/cpu_features.h"
#include "tandem/flags.h"
#include "tandem/threads.h"
#include "tandem/tokenizer.h"
#include "tandem/train.h"

namespace {

constexpr char kHelp[] =
    "usage: tandem train --train FILE.bin --valid FILE.bin --tokenizer tokenizer.json --out DIR\n"
    "  architecture (fresh runs): --layers 8 --hidden 256 --heads 8 --kv-heads 4\n"
    "      --intermediate 688 --context 512 --rope-theta 10000\n"
    "  schedule: --steps 8000 --batch 16 --seq-len 256 --lr 2e-3 --warmup 200\n"
    "      --min-lr-ratio 0.1 --weight-decay 0.1 --grad-clip 1.0 --max-minutes 0\n"
    "  early-exit loss: --exit-layers 2,4 --exit-weight 0.3 --exit-stride 4\n"
    "  --precision auto|fp32|bf16 (auto: bf16 autocast where the CPU has AVX512_BF16 or AMX-BF16;\n"
    "      --bf16 = --precision bf16)  --no-resume  --eval-every 250  --save-every 500\n"
    "  --log-every 10  --seed 1  --threads N\n";

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "tandem train: %s\n", std::string(s.message()).c_str());
  return 1;
}

std::string Duration(double seconds) {
  const int m = static_cast<int>(seconds / 60);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%dh%02dm", m / 60, m % 60);
  return buf;
}

}  // namespace

int RunTrainCommand(int argc, char** argv) {
  auto flags = tandem::flags::Flags::Parse(
      argc - 1, argv + 1,
      {"train", "valid", "tokenizer", "out", "layers", "hidden", "heads", "kv-heads",
       "intermediate", "context", "rope-theta", "steps", "batch", "seq-len", "lr", "warmup",
       "min-lr-ratio", "weight-decay", "grad-clip", "max-minutes", "exit-layers", "exit-weight", "exit-stride",
       "eval-every", "save-every", "log-every", "seed", "threads", "precision"},
      {"help", "bf16", "no-resume"});
  if (!flags.ok() || flags->Has("help") || !flags->Has("train") || !flags->Has("valid") ||
      !flags->Has("tokenizer") || !flags->Has("out")) {
    if (!flags.ok()) std::fprintf(stderr, "%s\n", std::string(flags.status().message()).c_str());
    std::fputs(kHelp, stderr);
    return flags.ok() && flags->Has("help") ? 0 : 2;
  }
  auto tokenizer = tandem::Tokenizer::Load(flags->Get("tokenizer"));
  if (!tokenizer.ok()) return Fail(tokenizer.status());

  tandem::TrainOptions o;
  o.train_data = flags->Get("train");
  o.valid_data = flags->Get("valid");
  o.out_dir = flags->Get("out");
  o.resume = !flags->Has("no-resume");
  auto precision =
      tandem::ParseComputePrecision(flags->Has("bf16") ? "bf16" : flags->Get("precision", "auto"));
  if (!precision.ok()) return Fail(precision.status());
  std::string compute_path;
  o.bf16_autocast = tandem::UseBf16Autocast(*precision, tandem::HostCpuFeatures(), &compute_path);
  tandem::ModelConfig& c = o.config;
  c.model_type = "llama";
  c.vocab_size = (*tokenizer)->vocab_size();
  c.tie_word_embeddings = true;
  c.rms_norm_eps = 1e-5;
  c.bos_token_id = (*tokenizer)->bos_id();
  if ((*tokenizer)->eos_id() >= 0) c.eos_token_ids = {(*tokenizer)->eos_id()};

  absl::Status status;
  constexpr int64_t kMaxSize = int64_t{1} << 20;
  constexpr int64_t kMaxCount = int64_t{1} << 40;
  // Every numeric flag with its allowed range; the first bad one is reported.
  auto integer = [&](const char* name, int64_t fallback, int64_t min, int64_t max) -> int64_t {
    auto v = flags->GetInt<int64_t>(name, fallback, min, max);
    if (!v.ok() && status.ok()) status = v.status();
    return v.ok() ? *v : fallback;
  };
  auto real = [&](const char* name, double fallback, double min, double max) -> double {
    auto v = flags->GetDouble(name, fallback, min, max);
    if (!v.ok() && status.ok()) status = v.status();
    return v.ok() ? *v : fallback;
  };
  c.num_hidden_layers = integer("layers", 8, 1, 4096);
  c.hidden_size = integer("hidden", 256, 1, kMaxSize);
  c.num_attention_heads = integer("heads", 8, 1, 4096);
  c.num_key_value_heads = integer("kv-heads", 4, 1, 4096);
  c.head_dim = c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0;
  c.intermediate_size = integer("intermediate", 688, 1, kMaxSize);
  c.max_position_embeddings = integer("context", 512, 1, int64_t{1} << 24);
  c.rope_theta = real("rope-theta", 10000.0, 1.0, 1e12);
  o.max_steps = integer("steps", 8000, 0, kMaxCount);
  o.batch_size = integer("batch", 16, 1, 1 << 20);
  o.seq_len = integer("seq-len", 256, 2, 1 << 24);
  o.learning_rate = real("lr", 2e-3, 0.0, 10.0);
  o.warmup_steps = integer("warmup", 200, 0, kMaxCount);
  o.min_lr_ratio = real("min-lr-ratio", 0.1, 0.0, 1.0);
  o.weight_decay = real("weight-decay", 0.1, 0.0, 10.0);
  o.grad_clip = real("grad-clip", 1.0, 0.0, 1e9);
  o.max_minutes = real("max-minutes", 0.0, 0.0, 1e7);
  o.exit_loss_weight = real("exit-weight", 0.0, 0.0, 1e3);
  o.exit_loss_stride = integer("exit-stride", 4, 1, 1 << 20);
  o.eval_every = integer("eval-every", 250, 0, kMaxCount);
  o.save_every = integer("save-every", 500, 0, kMaxCount);
  auto seed = flags->GetInt<uint64_t>("seed", 1, 0, std::numeric_limits<uint64_t>::max());
  if (!seed.ok() && status.ok()) status = seed.status();
  o.seed = seed.ok() ? *seed : 1;
  const int64_t log_every = integer("log-every", 10, 1, kMaxCount);
  const int64_t threads = integer("threads", 0, 0, 4096);
  if (!status.ok()) return Fail(status);
  auto exit_layers = flags->GetIntList("exit-layers", 1, 4096);
  if (!exit_layers.ok()) return Fail(exit_layers.status());
  o.exit_layers = *exit_layers;
  auto checked = tandem::ModelConfig::FromJson(c.ToJson());
  if (!checked.ok()) return Fail(checked.status());
  o.config = *checked;
  tandem::SetComputeThreads(static_cast<int>(threads));

  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  std::filesystem::copy_file(flags->Get("tokenizer"),
                             std::filesystem::path(o.out_dir) / "tokenizer.json",
                             std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return Fail(absl::InternalError("copying the tokenizer: " + ec.message()));

  std::fprintf(stderr, "compute: %s\n", compute_path.c_str());
  auto result = tandem::TrainModel(o, [&](const tandem::TrainProgress& p) {
    if (p.step % log_every == 0 || p.valid_loss >= 0) {
      std::fprintf(stderr, "step %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  elapsed %s  ETA %s\n",
                   static_cast<long long>(p.step), static_cast<long long>(p.max_steps), p.loss,
                   p.learning_rate, p.tokens_per_second, Duration(p.elapsed_seconds).c_str(),
                   Duration(p.eta_seconds).c_str());
    }
    if (p.valid_loss >= 0) {
      std::fprintf(stderr, "  valid loss %.4f (ppl %.1f)", p.valid_loss, std::exp(p.valid_loss));
      for (size_t i = 0; i < p.valid_exit_losses.size(); ++i) {
        std::fprintf(stderr, "  exit@%lld ppl %.1f", static_cast<long long>(o.exit_layers[i]),
                     std::exp(p.valid_exit_losses[i]));
      }
      std::fprintf(stderr, "\n");
    }
  });
  if (!result.ok()) return Fail(result.status());
  std::printf("trained %lld parameters for %lld steps (%lld tokens) in %s; valid ppl %.2f; "
              "compute %s\n",
              static_cast<long long>(result->parameters), static_cast<long long>(result->steps),
              static_cast<long long>(result->tokens_seen), Duration(result->wall_seconds).c_str(),
              std::exp(result->final_valid_loss), compute_path.c_str());
  return 0;
}
