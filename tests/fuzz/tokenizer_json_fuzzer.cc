// tokenizer.json loader (byte-level BPE, SentencePiece-style BPE, added tokens,
// normalizers, pre-tokenizers, decoders): an arbitrary file loads or fails with
// a status, and a loaded tokenizer encodes and decodes without crashing.
// Input: 2 bytes (text length n), n bytes of text to encode, then the file.
#include <vector>

#include "fuzz_target.h"
#include "tandem/tokenizer.h"

TANDEM_FUZZ_TARGET(tokenizer_json) {
  tandem::fuzz::ByteReader in(data, size);
  const size_t n = in.U8() | (size_t{in.U8()} << 8);
  const std::string text = in.Bytes(n);
  const std::string json = in.Bytes(in.remaining());
  tandem::fuzz::ScratchFile file(".json", reinterpret_cast<const uint8_t*>(json.data()),
                                 json.size());
  absl::StatusOr<std::unique_ptr<tandem::Tokenizer>> tok = tandem::Tokenizer::Load(file.path());
  if (!tok.ok()) return 0;
  const tandem::Tokenizer& t = **tok;
  for (bool special : {false, true}) {
    absl::StatusOr<std::vector<int32_t>> ids = t.Encode(text, special);
    if (!ids.ok()) continue;
    for (int32_t id : *ids) {
      if (id < 0 || id >= t.vocab_size()) __builtin_trap();
    }
    (void)t.Decode(*ids, special);
  }
  std::vector<int32_t> every;
  for (int32_t id = 0; id < t.vocab_size() && id < 512; ++id) every.push_back(id);
  (void)t.Decode(every, false);
  return 0;
}
