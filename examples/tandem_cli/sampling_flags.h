// The sampling flags `tandem generate` and `tandem edge` share, and the
// checkpoint's own defaults (generation_config.json) when none is given.
#ifndef TANDEM_EXAMPLES_TANDEM_CLI_SAMPLING_FLAGS_H_
#define TANDEM_EXAMPLES_TANDEM_CLI_SAMPLING_FLAGS_H_

#include <string>

#include "absl/status/statusor.h"
#include "tandem/flags.h"
#include "tandem/generation_config.h"
#include "tandem/sampling.h"

namespace tandem::cli {

// Help text for --temperature, --top-k, --top-p, --seed.
extern const char kSamplingHelp[];

// --temperature T (0 = greedy), --top-k K, --top-p P, --seed S, range-checked.
// When none of temperature / top-k / top-p is given, the checkpoint's
// generation_config.json sampling applies (as in transformers' generate);
// otherwise greedy. `*description` receives one line saying which was used.
absl::StatusOr<SamplingParams> SamplingFromFlags(const flags::Flags& flags,
                                                 const GenerationConfig& generation,
                                                 std::string* description);

}  // namespace tandem::cli

#endif  // TANDEM_EXAMPLES_TANDEM_CLI_SAMPLING_FLAGS_H_
