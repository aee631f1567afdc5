// The prompt's token ids for EdgeSession::Generate and CloudOnlySession::Generate.
#ifndef TANDEM_EDGE_SRC_ENCODE_PROMPT_H_
#define TANDEM_EDGE_SRC_ENCODE_PROMPT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tandem/edge/edge_session.h"
#include "tandem/tokenizer.h"

namespace tandem::edge {

// The tokenizer's ids for `prompt` (with special tokens as `options` asks), or
// its error; an exception from it becomes InternalError("Generate: ...").
absl::StatusOr<std::vector<int32_t>> EncodePrompt(const Tokenizer& tokenizer,
                                                  const std::string& prompt,
                                                  const GenerateOptions& options);

}  // namespace tandem::edge

#endif  // TANDEM_EDGE_SRC_ENCODE_PROMPT_H_
