// Builds a random model through the installed headers and checks that a cached
// decode step agrees with a full forward; then, as an edge app would, writes the
// model (with fresh exit heads and the tokenizer given as argv[2]) to argv[1]
// and streams a few tokens through an EdgeSession. Exit code 0 on success.
#include <cstdio>
#include <filesystem>

#include <ATen/ATen.h>

#include "tandem/edge/edge_session.h"
#include "tandem/exit_heads.h"
#include "tandem/model.h"
#include "tandem/tokenizer.h"

namespace {

int EdgeSessionCheck(const std::string& dir, const std::string& tokenizer_json) {
  auto tokenizer = tandem::Tokenizer::Load(tokenizer_json);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", tokenizer.status().ToString().c_str());
    return 1;
  }
  tandem::ModelConfig c;
  c.vocab_size = (*tokenizer)->vocab_size();
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  c.max_position_embeddings = 64;
  auto model = tandem::Model::CreateRandom(c, {}, 2);
  if (!model.ok() || !(*model)->Save(dir).ok()) return 1;
  std::filesystem::copy_file(tokenizer_json, dir + "/tokenizer.json",
                             std::filesystem::copy_options::overwrite_existing);
  auto heads = tandem::ExitHeads::Create(**model, {1, 2}, 0, 1);
  if (!heads.ok() || !(*heads)->Save(dir).ok()) return 1;

  tandem::edge::EdgeOptions options;
  options.model_dir = dir;
  options.split = 1;
  options.thresholds = {{1, 0.0}};
  auto session = tandem::edge::EdgeSession::Create(options);
  if (!session.ok()) {
    std::fprintf(stderr, "%s\n", session.status().ToString().c_str());
    return 1;
  }
  tandem::edge::GenerateOptions request;
  request.max_new_tokens = 4;
  request.stop_at_eos = false;
  auto summary = (*session)->Generate("hello", request);
  if (!summary.ok()) {
    std::fprintf(stderr, "%s\n", summary.status().ToString().c_str());
    return 1;
  }
  std::printf("consumer: EdgeSession generated %lld tokens at split 1\n",
              static_cast<long long>(summary->generated_tokens));
  return summary->generated_tokens == 4 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  tandem::ModelConfig c;
  c.vocab_size = 50;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  auto model = tandem::Model::CreateRandom(c, {}, 1);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  at::InferenceMode guard;
  at::Tensor ids = at::arange(6, at::kLong);
  auto h = (*model)->Embed(ids).value();
  auto full = (*model)->Logits((*model)->ForwardLayers(0, 2, h, ids, nullptr).value()).value();
  auto cache = (*model)->NewCache(8).value();
  (void)(*model)->ForwardLayers(0, 2, h.narrow(0, 0, 5), ids.narrow(0, 0, 5), cache.get()).value();
  auto step = (*model)->Logits(
      (*model)->ForwardLayers(0, 2, h.narrow(0, 5, 1), ids.narrow(0, 5, 1), cache.get()).value())
                  .value();
  const float err = (step[0] - full[5]).abs().max().item<float>();
  std::printf("consumer: cached vs full max |diff| = %g\n", err);
  if (err >= 1e-5f) return 1;
  if (argc < 3) {
    std::fprintf(stderr, "usage: tandem_consumer MODEL_DIR TOKENIZER_JSON\n");
    return 1;
  }
  return EdgeSessionCheck(argv[1], argv[2]);
}
