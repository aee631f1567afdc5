#include "tokenizer/bpe.h"

#include <queue>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tokenizer/unicode.h"

namespace tandem {
namespace tokenizer_internal {
namespace {

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct Symbol {
  int32_t id;
  int prev, next;
  bool alive;
};

struct Candidate {
  int32_t rank;
  int pos;
  int32_t new_id;
  // std::priority_queue is a max-heap: invert to pop the lowest rank, then the
  // leftmost position (HF's Merge ordering).
  bool operator<(const Candidate& o) const {
    return rank != o.rank ? rank > o.rank : pos > o.pos;
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    absl::flat_hash_map<std::string, int32_t> vocab,
    const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options) {
  std::unique_ptr<BpeModel> m(new BpeModel());
  m->vocab_ = std::move(vocab);
  m->options_ = std::move(options);
  for (const auto& [tok, id] : m->vocab_) {
    if (id < 0) return absl::InvalidArgumentError(absl::StrCat("negative id for token ", tok));
    m->max_id_ = std::max(m->max_id_, id);
  }
  m->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = m->vocab_.find(a);
    auto ib = m->vocab_.find(b);
    auto ic = m->vocab_.find(absl::StrCat(a, b));
    if (ia == m->vocab_.end() || ib == m->vocab_.end() || ic == m->vocab_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("BPE merge #", rank, " \"", a, " ", b,
                                                     "\" references a token missing from the vocab"));
    }
    // The first occurrence of a pair wins (HF keeps the lowest rank as well).
    m->merges_.try_emplace(PairKey(ia->second, ib->second),
                           static_cast<int32_t>(rank), ic->second);
  }
  if (!m->options_.unk_token.empty()) {
    auto it = m->vocab_.find(m->options_.unk_token);
    if (it == m->vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unk_token ", m->options_.unk_token, " is not in the vocab"));
    }
    m->unk_id_ = it->second;
  }
  m->have_all_bytes_ = true;
  for (int b = 0; b < 256; ++b) {
    auto it = m->vocab_.find(absl::StrFormat("<0x%02X>", b));
    m->byte_ids_[b] = it == m->vocab_.end() ? -1 : it->second;
  }
  return m;
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    auto it = vocab_.find(AsAbsl(word));
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  bool cacheable = options_.cache_capacity > 0 && word.size() <= options_.cache_max_word_bytes;
  if (cacheable) {
    absl::ReaderMutexLock lock(&mu_);
    auto it = cache_.find(AsAbsl(word));
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t start = out->size();
  TokenizeUncached(word, out);
  if (cacheable) {
    absl::MutexLock lock(&mu_);
    if (cache_.size() < options_.cache_capacity) {
      cache_.try_emplace(std::string(word), out->begin() + start, out->end());
    }
  }
}

void BpeModel::TokenizeUncached(std::string_view word, std::vector<int32_t>* out) const {
  std::vector<Symbol> syms;
  syms.reserve(word.size());
  auto add = [&syms](int32_t id) {
    int n = static_cast<int>(syms.size());
    syms.push_back(Symbol{id, n - 1, -1, true});
    if (n > 0) syms[n - 1].next = n;
  };
  bool pending_unk = false;
  for (size_t i = 0; i < word.size();) {
    size_t len = std::min<size_t>(Utf8SeqLen(static_cast<unsigned char>(word[i])),
                                  word.size() - i);
    std::string_view ch = word.substr(i, len);
    i += len;
    auto it = vocab_.find(AsAbsl(ch));
    if (it != vocab_.end()) {
      if (pending_unk) add(unk_id_), pending_unk = false;
      add(it->second);
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (unsigned char b : ch) all = all && byte_ids_[b] >= 0;
      if (all) {
        for (unsigned char b : ch) add(byte_ids_[b]);
        continue;
      }
    }
    if (unk_id_ >= 0) {
      if (pending_unk && !options_.fuse_unk) add(unk_id_);
      pending_unk = true;
    }
  }
  if (pending_unk) add(unk_id_);

  std::priority_queue<Candidate> queue;
  for (size_t i = 0; i + 1 < syms.size(); ++i) {
    auto it = merges_.find(PairKey(syms[i].id, syms[i + 1].id));
    if (it != merges_.end()) {
      queue.push(Candidate{it->second.first, static_cast<int>(i), it->second.second});
    }
  }
  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol& left = syms[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = syms[left.next];
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.second != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = top.pos;
    if (left.prev >= 0) {
      auto p = merges_.find(PairKey(syms[left.prev].id, left.id));
      if (p != merges_.end()) queue.push(Candidate{p->second.first, left.prev, p->second.second});
    }
    if (left.next >= 0) {
      auto n = merges_.find(PairKey(left.id, syms[left.next].id));
      if (n != merges_.end()) queue.push(Candidate{n->second.first, top.pos, n->second.second});
    }
  }
  for (int i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) out->push_back(syms[i].id);
}

}  // namespace tokenizer_internal
}  // namespace tandem
