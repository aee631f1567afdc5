// Tokenizer: text <-> token ids, producing the same ids as the Hugging Face
// `tokenizers` library for the formats real checkpoints ship:
//   - tokenizer.json with a BPE model, either byte-level (GPT-2 / Llama 3 / Qwen:
//     Split pre-tokenizer regex + ByteLevel) or SentencePiece-style (Llama 2 /
//     Mistral / TinyLlama: Metaspace or Prepend+Replace normalizer, byte_fallback);
//     added / special tokens are matched inside text as HF does;
//   - SentencePiece `tokenizer.model` (through libsentencepiece).
//
// tokenizer.json components understood (anything else is refused at Load with
// an error naming it, never approximated):
//   normalizer:     NFC, Prepend, Replace, Strip, Sequence, null
//   pre_tokenizer:  Split (String or Regex pattern; all behaviors, invert),
//                   ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit,
//                   Sequence, null. Regexes run on a built-in engine that
//                   supports the constructs of the GPT-2, cl100k/o200k, Llama 3,
//                   Qwen and DeepSeek patterns (\p{..} general categories,
//                   lookahead, (?i:...), counted repeats); other constructs
//                   (backreferences, lookbehind, \p{Script}) are refused.
//   model:          BPE (string or pair merges, byte_fallback, unk/fuse_unk,
//                   ignore_merges); no dropout or subword prefix/suffix.
//   post_processor: TemplateProcessing (single), Bert/RobertaProcessing,
//                   ByteLevel, Sequence, null.
//   decoder:        ByteLevel, Metaspace, Replace (string), ByteFallback, Fuse,
//                   Strip, Sequence, null.
// BOS/EOS come from a tokenizer_config.json next to tokenizer.json when there is
// one, else from the post-processor template and the usual token names.
// Unicode tables (categories, NFC) are generated from Python's unicodedata by
// tools/gen_unicode_tables.py; characters newer than that Unicode version may
// be classified differently from HF's Oniguruma.
//
// For a tokenizer.model, encoding is SentencePiece's own (special-token strings
// in text are not matched), with add_special_tokens prepending BOS as
// LlamaTokenizer does; special ids are the control and unknown pieces.
//
// Thread-safety: immutable after Load (apart from an internal, mutex-guarded
// word cache); Encode/Decode may be called concurrently.
#ifndef TANDEM_TOKENIZER_H_
#define TANDEM_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tandem {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // `path` is a tokenizer.json, a tokenizer.model, or a model directory holding
  // one of them (tokenizer.json preferred). Unsupported models/normalizers/
  // pre-tokenizers are refused with an error naming them. For tokenizer.json the
  // post-processor (e.g. Llama's BOS) is honoured when add_special_tokens is true.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& path);

  // Encodes UTF-8 text. Invalid UTF-8 gives InvalidArgument. With
  // add_special_tokens the post-processor's tokens (e.g. Llama's BOS) are added;
  // special-token strings inside `text` are always matched as those tokens.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                                      bool add_special_tokens = true) const = 0;
  // Decodes ids to UTF-8 text (ids out of range give InvalidArgument). Byte
  // sequences that are not valid UTF-8 decode to U+FFFD, as HF does.
  virtual absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                             bool skip_special_tokens = false) const = 0;

  virtual int32_t vocab_size() const = 0;  // including added tokens
  // -1 when the tokenizer defines none.
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  // True for added tokens marked special (BOS, EOS, <|im_end|>, ...).
  virtual bool IsSpecial(int32_t id) const = 0;
  // Id of an exact token string, or -1.
  virtual int32_t TokenToId(std::string_view token) const = 0;
};

// Incremental detokenizer for streaming: feed ids one at a time, get the text
// that became final. Holds back bytes of an incomplete UTF-8 character and
// handles SentencePiece's leading-space rule, so the concatenation of all
// returned pieces plus Flush() equals Decode(all ids, skip_special_tokens).
// Works like HF's DecodeStream: each Push decodes only a short window (the
// previous token plus the pending ones), so streaming costs O(n) overall.
// Single-threaded; borrows `tokenizer`, which must outlive it.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = true);
  // Text that became final with this id (possibly empty).
  absl::StatusOr<std::string> Push(int32_t id);
  // Whatever is still held back (at end of generation; an incomplete character
  // comes out as U+FFFD as in Decode). Resets the decoder for a new stream.
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;  // the decode window
  std::string prefix_;        // Decode of ids_[0, prefix_index_)
  size_t prefix_index_ = 0;   // ids_ before this were already emitted
};

}  // namespace tandem

#endif  // TANDEM_TOKENIZER_H_
