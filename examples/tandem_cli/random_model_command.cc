// tandem random-model: writes a randomly initialised checkpoint in Hugging Face
// layout, sized for a given tokenizer. Useful for smoke tests and speed
// measurements of an architecture before any training.
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "tandem/flags.h"
#include "tandem/model.h"
#include "tandem/tokenizer.h"

namespace {

constexpr char kHelp[] =
    "usage: tandem random-model --out DIR --tokenizer FILE [flags]\n"
    "  --layers N (4)  --hidden D (64)  --heads H (4)  --kv-heads K (2)\n"
    "  --intermediate F (4*D/3*2 rounded)  --context C (512)  --seed S (1)\n"
    "The tokenizer (a tokenizer.json) is copied into DIR and sets the vocabulary.\n";

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "tandem random-model: %s\n", std::string(s.message()).c_str());
  return 1;
}

}  // namespace

int RunRandomModelCommand(int argc, char** argv) {
  auto flags = tandem::flags::Flags::Parse(
      argc - 1, argv + 1,
      {"out", "tokenizer", "layers", "hidden", "heads", "kv-heads", "intermediate", "context",
       "seed"},
      {"help"});
  if (!flags.ok() || flags->Has("help") || !flags->Has("out") || !flags->Has("tokenizer")) {
    if (!flags.ok()) std::fprintf(stderr, "%s\n", std::string(flags.status().message()).c_str());
    std::fputs(kHelp, stderr);
    return flags.ok() && flags->Has("help") ? 0 : 2;
  }
  auto tokenizer = tandem::Tokenizer::Load(flags->Get("tokenizer"));
  if (!tokenizer.ok()) return Fail(tokenizer.status());

  tandem::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = (*tokenizer)->vocab_size();
  constexpr int64_t kMaxSize = int64_t{1} << 20;
  auto layers = flags->GetInt<int64_t>("layers", 4, 1, 4096);
  auto hidden = flags->GetInt<int64_t>("hidden", 64, 1, kMaxSize);
  auto heads = flags->GetInt<int64_t>("heads", 4, 1, 4096);
  auto kv_heads = flags->GetInt<int64_t>("kv-heads", 2, 1, 4096);
  auto context = flags->GetInt<int64_t>("context", 512, 1, int64_t{1} << 24);
  auto seed = flags->GetInt<uint64_t>("seed", 1, 0, std::numeric_limits<uint64_t>::max());
  for (const absl::Status& s : {layers.status(), hidden.status(), heads.status(),
                                kv_heads.status(), context.status(), seed.status()}) {
    if (!s.ok()) return Fail(s);
  }
  auto intermediate =
      flags->GetInt<int64_t>("intermediate", (*hidden * 8 / 3 + 31) / 32 * 32, 1, kMaxSize);
  if (!intermediate.ok()) return Fail(intermediate.status());
  c.num_hidden_layers = *layers;
  c.hidden_size = *hidden;
  c.num_attention_heads = *heads;
  c.num_key_value_heads = *kv_heads;
  c.head_dim = *heads > 0 ? *hidden / *heads : 0;
  c.intermediate_size = *intermediate;
  c.max_position_embeddings = *context;
  c.tie_word_embeddings = true;
  c.bos_token_id = (*tokenizer)->bos_id();
  if ((*tokenizer)->eos_id() >= 0) c.eos_token_ids = {(*tokenizer)->eos_id()};
  // Validate through the same parser a loaded checkpoint goes through.
  auto checked = tandem::ModelConfig::FromJson(c.ToJson());
  if (!checked.ok()) return Fail(checked.status());

  auto model = tandem::Model::CreateRandom(*checked, {}, *seed);
  if (!model.ok()) return Fail(model.status());
  const std::string out = flags->Get("out");
  if (absl::Status s = (*model)->Save(out); !s.ok()) return Fail(s);
  std::error_code ec;
  std::filesystem::copy_file(flags->Get("tokenizer"), std::filesystem::path(out) / "tokenizer.json",
                             std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return Fail(absl::InternalError("copying the tokenizer: " + ec.message()));
  std::printf("wrote a random %lld-layer model (%lld weights bytes) to %s\n",
              static_cast<long long>(c.num_hidden_layers),
              static_cast<long long>((*model)->weight_bytes()), out.c_str());
  return 0;
}
