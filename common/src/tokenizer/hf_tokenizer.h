// Tokenizer backed by a Hugging Face tokenizer.json (BPE model). See
// tokenizer.h for the contract; this header exists so tests can build one from
// an in-memory JSON string.
#ifndef TANDEM_COMMON_SRC_TOKENIZER_HF_TOKENIZER_H_
#define TANDEM_COMMON_SRC_TOKENIZER_HF_TOKENIZER_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "tandem/tokenizer.h"

namespace tandem {
namespace tokenizer_internal {

// `json` is the content of tokenizer.json. `config_json`, optional (may be
// empty), is tokenizer_config.json; its bos_token / eos_token name BOS/EOS.
absl::StatusOr<std::unique_ptr<Tokenizer>> CreateHfTokenizer(std::string_view json,
                                                             std::string_view config_json);

// Loads a SentencePiece tokenizer.model through libsentencepiece.
absl::StatusOr<std::unique_ptr<Tokenizer>> CreateSentencePieceTokenizer(const std::string& path);

}  // namespace tokenizer_internal
}  // namespace tandem

#endif  // TANDEM_COMMON_SRC_TOKENIZER_HF_TOKENIZER_H_
