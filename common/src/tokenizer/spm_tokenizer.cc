// SentencePiece tokenizer.model support (native reader, see spm_backend.h).
// Encoding is SentencePiece's own (which the HF slow LlamaTokenizer wraps); with
// add_special_tokens the BOS id is prepended, as LlamaTokenizer does by
// default. Special-token strings in the text are not matched (SentencePiece
// treats "<s>" in text as plain characters).
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/spm_backend.h"
#include "tokenizer/unicode.h"

namespace tandem {
namespace tokenizer_internal {
namespace {

class SentencePieceTokenizer : public Tokenizer {
 public:
  absl::Status Init(const std::string& path) {
    std::string error = processor_.Load(path);
    if (!error.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot load SentencePiece model ", path, ": ", error));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens) const override {
    if (!IsValidUtf8(text)) return absl::InvalidArgumentError("Encode: text is not valid UTF-8");
    std::vector<int> pieces;
    std::string error = processor_.Encode(std::string(text), &pieces);
    if (!error.empty()) return absl::InternalError(absl::StrCat("SentencePiece Encode: ", error));
    std::vector<int32_t> ids;
    ids.reserve(pieces.size() + 1);
    if (add_special_tokens && bos_id() >= 0) ids.push_back(bos_id());
    ids.insert(ids.end(), pieces.begin(), pieces.end());
    return ids;
  }

  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special_tokens) const override {
    std::vector<int> kept;
    kept.reserve(ids.size());
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab_size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("Decode: id ", id, " is out of range [0, ", vocab_size(), ")"));
      }
      if (skip_special_tokens && IsSpecial(id)) continue;
      kept.push_back(id);
    }
    std::string text;
    std::string error = processor_.Decode(kept, &text);
    if (!error.empty()) return absl::InternalError(absl::StrCat("SentencePiece Decode: ", error));
    return IsValidUtf8(text) ? text : Utf8Lossy(text);
  }

  int32_t vocab_size() const override { return processor_.PieceSize(); }
  int32_t bos_id() const override { return processor_.BosId(); }
  int32_t eos_id() const override { return processor_.EosId(); }
  bool IsSpecial(int32_t id) const override {
    return id >= 0 && id < vocab_size() && (processor_.IsControl(id) || processor_.IsUnknown(id));
  }
  int32_t TokenToId(std::string_view token) const override {
    std::string piece(token);
    int id = processor_.PieceToId(piece);
    return id >= 0 && processor_.IdToPiece(id) == piece ? id : -1;
  }

 private:
  SpmBackend processor_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateSentencePieceTokenizer(const std::string& path) {
  auto tok = std::make_unique<SentencePieceTokenizer>();
  absl::Status s = tok->Init(path);
  if (!s.ok()) return s;
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

}  // namespace tokenizer_internal
}  // namespace tandem
