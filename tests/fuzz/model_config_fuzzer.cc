// config.json and generation_config.json parsers: any text gets a config or an
// error; an accepted config.json survives its own serializer.
#include <string>

#include "fuzz_target.h"
#include "tandem/generation_config.h"
#include "tandem/model_config.h"

TANDEM_FUZZ_TARGET(model_config) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<tandem::ModelConfig> config = tandem::ModelConfig::FromJson(text);
  if (config.ok()) {
    absl::StatusOr<tandem::ModelConfig> again = tandem::ModelConfig::FromJson(config->ToJson());
    if (!again.ok()) __builtin_trap();
    (void)config->Fingerprint();
  }
  (void)tandem::GenerationConfig::FromJson(text);
  return 0;
}
