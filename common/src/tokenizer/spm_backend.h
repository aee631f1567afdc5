// Native reader and encoder for SentencePiece `tokenizer.model` files.
//
// Why not libsentencepiece: Debian's libsentencepiece.so.0 exports its own
// bundled protobuf-lite 3.14, which collides with the system libprotobuf 3.21
// that libtorch loads (a crash in protobuf's static initialisers, or a fatal
// version check, depending on load order). The model format is small, so it is
// parsed here directly (protobuf wire format) and encoded as SentencePiece does:
//   - BPE models: repeatedly merge the adjacent pair whose concatenation is a
//     piece with the highest score (leftmost on ties);
//   - Unigram models: Viterbi best segmentation by piece scores;
//   - user-defined pieces are matched atomically, unknown characters go to
//     <0xNN> byte pieces with byte_fallback, else to the unk piece.
// Normalization: only models without a precompiled charsmap (the "identity"
// rule Llama / Mistral / TinyLlama use) are accepted; add_dummy_prefix,
// remove_extra_whitespaces and escape_whitespaces are honoured.
//
// Thread-safety: immutable after Load; the const methods may run concurrently.
#ifndef TANDEM_COMMON_SRC_TOKENIZER_SPM_BACKEND_H_
#define TANDEM_COMMON_SRC_TOKENIZER_SPM_BACKEND_H_

#include <string>
#include <unordered_map>
#include <vector>

namespace tandem {
namespace tokenizer_internal {

class SpmBackend {
 public:
  // Returns an empty string on success, else the error message.
  std::string Load(const std::string& path);
  std::string LoadFromSerialized(const std::string& bytes);
  std::string Encode(const std::string& text, std::vector<int>* ids) const;
  std::string Decode(const std::vector<int>& ids, std::string* text) const;
  int PieceSize() const { return static_cast<int>(pieces_.size()); }
  int BosId() const { return bos_id_; }
  int EosId() const { return eos_id_; }
  bool IsControl(int id) const { return Type(id) == kControl; }
  bool IsUnknown(int id) const { return Type(id) == kUnknown; }
  int PieceToId(const std::string& piece) const;
  std::string IdToPiece(int id) const;

 private:
  enum PieceType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5,
                   kByte = 6 };
  struct Piece {
    std::string text;
    float score = 0;
    int type = kNormal;
  };
  int Type(int id) const {
    return id >= 0 && id < PieceSize() ? pieces_[id].type : 0;
  }
  std::string Normalize(const std::string& text) const;
  void EncodeBpe(const std::vector<std::string>& symbols, const std::vector<bool>& frozen,
                 std::vector<int>* ids) const;
  void EncodeUnigram(const std::string& text, std::vector<int>* ids) const;
  void EmitPiece(const std::string& piece, std::vector<int>* ids) const;
  // Id of a piece usable by the model (normal / user-defined), or -1.
  int Lookup(const std::string& piece) const;

  std::vector<Piece> pieces_;
  std::unordered_map<std::string, int> index_;
  std::vector<std::string> user_defined_;  // matched atomically, longest first
  int model_type_ = 1;                     // 1 unigram, 2 BPE
  bool byte_fallback_ = false;
  bool add_dummy_prefix_ = true;
  bool remove_extra_whitespaces_ = true;
  bool escape_whitespaces_ = true;
  int unk_id_ = 0, bos_id_ = 1, eos_id_ = 2;
  int byte_ids_[256];
  size_t max_piece_bytes_ = 0;
  float min_score_ = 0;
};

}  // namespace tokenizer_internal
}  // namespace tandem

#endif  // TANDEM_COMMON_SRC_TOKENIZER_SPM_BACKEND_H_
