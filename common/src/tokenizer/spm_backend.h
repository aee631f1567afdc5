// Thin wrapper over sentencepiece::SentencePieceProcessor with std-only types.
// Debian's <sentencepiece_processor.h> declares `absl::string_view` as an alias
// of std::string_view, which clashes with Debian's Abseil (its own
// absl::string_view class), so the SentencePiece header is included only in
// spm_backend.cc, which includes no Abseil header.
//
// Thread-safety: immutable after Load; the const methods may run concurrently.
#ifndef TANDEM_COMMON_SRC_TOKENIZER_SPM_BACKEND_H_
#define TANDEM_COMMON_SRC_TOKENIZER_SPM_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

namespace tandem {
namespace tokenizer_internal {

class SpmBackend {
 public:
  SpmBackend();
  ~SpmBackend();
  // Returns an empty string on success, else the error message.
  std::string Load(const std::string& path);
  std::string Encode(const std::string& text, std::vector<int>* ids) const;
  std::string Decode(const std::vector<int>& ids, std::string* text) const;
  int PieceSize() const;
  int BosId() const;
  int EosId() const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  int PieceToId(const std::string& piece) const;
  std::string IdToPiece(int id) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tokenizer_internal
}  // namespace tandem

#endif  // TANDEM_COMMON_SRC_TOKENIZER_SPM_BACKEND_H_
