#include "token_input.h"

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "tandem/tokenizer.h"
#include "tandem/train.h"

namespace tandem::cli {

absl::StatusOr<std::vector<int32_t>> ReadTokens(const std::string& path,
                                                const std::string& model_dir) {
  if (absl::EndsWith(path, ".bin")) {
    auto data = ReadTokenFile(path);
    if (!data.ok()) return data.status();
    return std::vector<int32_t>(data->begin(), data->end());
  }
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot open " + path);
  std::stringstream text;
  text << in.rdbuf();
  auto tokenizer = Tokenizer::Load(model_dir);
  if (!tokenizer.ok()) return tokenizer.status();
  return (*tokenizer)->Encode(text.str(), /*add_special_tokens=*/false);
}

}  // namespace tandem::cli
