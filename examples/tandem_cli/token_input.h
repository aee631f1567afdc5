// Reads evaluation/training text for CLI commands: a `.bin` file of uint16 ids,
// or any other file as UTF-8 text, tokenized with the model directory's
// tokenizer (one document per blank-line-separated block, EOS between).
#ifndef TANDEM_EXAMPLES_TANDEM_CLI_TOKEN_INPUT_H_
#define TANDEM_EXAMPLES_TANDEM_CLI_TOKEN_INPUT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::cli {

absl::StatusOr<std::vector<int32_t>> ReadTokens(const std::string& path,
                                                const std::string& model_dir);

}  // namespace tandem::cli

#endif  // TANDEM_EXAMPLES_TANDEM_CLI_TOKEN_INPUT_H_
