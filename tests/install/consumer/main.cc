// Builds a random model through the installed headers and checks that a cached
// decode step agrees with a full forward. Exit code 0 on success.
#include <cstdio>

#include <ATen/ATen.h>

#include "tandem/model.h"

int main() {
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
  return err < 1e-5f ? 0 : 1;
}
