// Byte-pair-encoding model as in Hugging Face `tokenizers` (models/bpe): the
// word is split into characters (unknown ones go to <0xNN> byte tokens when
// byte_fallback is set, else to the unk token), then the lowest-ranked merge is
// applied repeatedly, leftmost first, exactly like HF's priority-queue merge.
//
// Thread-safety: immutable after Create except for an internal word cache
// guarded by a mutex; Tokenize may be called concurrently.
#ifndef TANDEM_COMMON_SRC_TOKENIZER_BPE_H_
#define TANDEM_COMMON_SRC_TOKENIZER_BPE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace tandem {
namespace tokenizer_internal {

struct BpeOptions {
  std::string unk_token;  // empty: none (unknown characters are dropped, as HF does)
  bool fuse_unk = false;
  bool byte_fallback = false;
  // Llama 3: a word that is already a vocabulary entry is emitted as is.
  bool ignore_merges = false;
  // Words up to this many bytes are cached (0 disables the cache).
  size_t cache_max_word_bytes = 256;
  size_t cache_capacity = 100000;
};

class BpeModel {
 public:
  // `merges` are pairs of token strings in rank order; each pair and its
  // concatenation must be in `vocab`.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      absl::flat_hash_map<std::string, int32_t> vocab,
      const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options);

  // Appends the ids of `word` (one pre-token) to `out`.
  void Tokenize(std::string_view word, std::vector<int32_t>* out) const;

  const absl::flat_hash_map<std::string, int32_t>& vocab() const { return vocab_; }
  int32_t max_id() const { return max_id_; }

 private:
  BpeModel() = default;
  void TokenizeUncached(std::string_view word, std::vector<int32_t>* out) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  // (left id << 32 | right id) -> (rank, merged id).
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  BpeOptions options_;
  int32_t unk_id_ = -1;
  int32_t byte_ids_[256];
  bool have_all_bytes_ = false;
  int32_t max_id_ = -1;

  mutable absl::Mutex mu_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tokenizer_internal
}  // namespace tandem

#endif  // TANDEM_COMMON_SRC_TOKENIZER_BPE_H_
