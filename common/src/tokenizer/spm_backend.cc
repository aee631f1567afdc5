#include "tokenizer/spm_backend.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <queue>
#include <sstream>
#include <string_view>

#include "tokenizer/unicode.h"

namespace tandem {
namespace tokenizer_internal {
namespace {

constexpr char kSpaceSymbol[] = "\xE2\x96\x81";  // U+2581
constexpr char kUnkSurface[] = " \xE2\x81\x87 ";  // " ⁇ ", SentencePiece's default

// Minimal protobuf wire-format reader.
class Wire {
 public:
  explicit Wire(std::string_view data) : data_(data) {}
  bool done() const { return pos_ >= data_.size(); }
  bool ok() const { return ok_; }

  // Reads the next field header; false at end or on error.
  bool Next(uint32_t* field, uint32_t* wire_type) {
    if (done() || !ok_) return false;
    uint64_t tag;
    if (!Varint(&tag)) return false;
    *field = static_cast<uint32_t>(tag >> 3);
    *wire_type = static_cast<uint32_t>(tag & 7);
    return true;
  }
  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) return ok_ = false;
      uint8_t b = static_cast<uint8_t>(data_[pos_++]);
      *v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return true;
    }
    return ok_ = false;
  }
  bool Bytes(std::string_view* out) {
    uint64_t len;
    if (!Varint(&len) || len > data_.size() - pos_) return ok_ = false;
    *out = data_.substr(pos_, len);
    pos_ += len;
    return true;
  }
  bool Fixed32(uint32_t* v) {
    if (data_.size() - pos_ < 4) return ok_ = false;
    std::memcpy(v, data_.data() + pos_, 4);  // little-endian host assumed (x86/ARM)
    pos_ += 4;
    return true;
  }
  bool Skip(uint32_t wire_type) {
    uint64_t v;
    std::string_view s;
    uint32_t f;
    switch (wire_type) {
      case 0: return Varint(&v);
      case 1:
        if (data_.size() - pos_ < 8) return ok_ = false;
        pos_ += 8;
        return true;
      case 2: return Bytes(&s);
      case 5: return Fixed32(&f);
      default: return ok_ = false;
    }
  }

 private:
  std::string_view data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace

std::string SpmBackend::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "cannot open " + path;
  std::stringstream ss;
  ss << in.rdbuf();
  return LoadFromSerialized(ss.str());
}

std::string SpmBackend::LoadFromSerialized(const std::string& bytes) {
  Wire model(bytes);
  uint32_t field, wt;
  bool has_charsmap = false;
  while (model.Next(&field, &wt)) {
    if (field == 1 && wt == 2) {  // SentencePiece pieces
      std::string_view sub;
      if (!model.Bytes(&sub)) break;
      Wire p(sub);
      Piece piece;
      while (p.Next(&field, &wt)) {
        std::string_view s;
        uint64_t v;
        uint32_t f;
        if (field == 1 && wt == 2 && p.Bytes(&s)) {
          piece.text = std::string(s);
        } else if (field == 2 && wt == 5 && p.Fixed32(&f)) {
          std::memcpy(&piece.score, &f, 4);
        } else if (field == 3 && wt == 0 && p.Varint(&v)) {
          piece.type = static_cast<int>(v);
        } else if (!p.Skip(wt)) {
          break;
        }
      }
      if (!p.ok()) return "malformed SentencePiece piece";
      pieces_.push_back(std::move(piece));
    } else if (field == 2 && wt == 2) {  // TrainerSpec
      std::string_view sub;
      if (!model.Bytes(&sub)) break;
      Wire t(sub);
      while (t.Next(&field, &wt)) {
        uint64_t v;
        if (wt == 0 && (field == 3 || field == 35 || (field >= 40 && field <= 42))) {
          if (!t.Varint(&v)) break;
          int iv = static_cast<int>(static_cast<int32_t>(v));
          if (field == 3) model_type_ = iv;
          if (field == 35) byte_fallback_ = v != 0;
          if (field == 40) unk_id_ = iv;
          if (field == 41) bos_id_ = iv;
          if (field == 42) eos_id_ = iv;
        } else if (field == 24 && wt == 0) {
          if (!t.Varint(&v)) break;
          if (v) return "treat_whitespace_as_suffix models are not supported";
        } else if (!t.Skip(wt)) {
          break;
        }
      }
      if (!t.ok()) return "malformed SentencePiece trainer_spec";
    } else if (field == 3 && wt == 2) {  // NormalizerSpec
      std::string_view sub;
      if (!model.Bytes(&sub)) break;
      Wire n(sub);
      while (n.Next(&field, &wt)) {
        uint64_t v;
        std::string_view s;
        if (field == 2 && wt == 2) {
          if (!n.Bytes(&s)) break;
          has_charsmap = !s.empty();
        } else if (field >= 3 && field <= 5 && wt == 0) {
          if (!n.Varint(&v)) break;
          if (field == 3) add_dummy_prefix_ = v != 0;
          if (field == 4) remove_extra_whitespaces_ = v != 0;
          if (field == 5) escape_whitespaces_ = v != 0;
        } else if (!n.Skip(wt)) {
          break;
        }
      }
      if (!n.ok()) return "malformed SentencePiece normalizer_spec";
    } else if (!model.Skip(wt)) {
      break;
    }
  }
  if (!model.ok()) return "not a SentencePiece model (malformed protobuf)";
  if (pieces_.empty()) return "not a SentencePiece model (no pieces)";
  if (has_charsmap) {
    return "SentencePiece models with a precompiled normalization charsmap (e.g. nmt_nfkc) "
           "are not supported; only the identity normalizer is";
  }
  if (model_type_ != 1 && model_type_ != 2) {
    return "unsupported SentencePiece model_type " + std::to_string(model_type_) +
           " (only unigram and BPE)";
  }
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  min_score_ = std::numeric_limits<float>::max();
  for (int i = 0; i < PieceSize(); ++i) {
    const Piece& p = pieces_[i];
    index_.emplace(p.text, i);
    if (p.type == kByte && p.text.size() == 6 && p.text.compare(0, 3, "<0x") == 0) {
      byte_ids_[std::stoi(p.text.substr(3, 2), nullptr, 16) & 0xFF] = i;
    }
    if (p.type == kNormal) min_score_ = std::min(min_score_, p.score);
    if (p.type == kUserDefined) user_defined_.push_back(p.text);
    if (p.type == kNormal || p.type == kUserDefined || p.type == kUnused) {
      max_piece_bytes_ = std::max(max_piece_bytes_, p.text.size());
    }
  }
  std::sort(user_defined_.begin(), user_defined_.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  auto valid = [this](int id) { return id >= 0 && id < PieceSize() ? id : -1; };
  unk_id_ = valid(unk_id_);
  bos_id_ = valid(bos_id_);
  eos_id_ = valid(eos_id_);
  if (unk_id_ < 0) return "SentencePiece model has no unk piece";
  return "";
}

int SpmBackend::PieceToId(const std::string& piece) const {
  auto it = index_.find(piece);
  return it == index_.end() ? -1 : it->second;
}

std::string SpmBackend::IdToPiece(int id) const {
  return id >= 0 && id < PieceSize() ? pieces_[id].text : std::string();
}

int SpmBackend::Lookup(const std::string& piece) const {
  auto it = index_.find(piece);
  if (it == index_.end()) return -1;
  int type = pieces_[it->second].type;
  return type == kNormal || type == kUserDefined ? it->second : -1;
}

// SentencePiece's normalizer with the identity charsmap.
std::string SpmBackend::Normalize(const std::string& text) const {
  std::string_view in(text);
  if (remove_extra_whitespaces_) {
    while (!in.empty() && in[0] == ' ') in.remove_prefix(1);
  }
  std::string out;
  if (in.empty()) return out;
  const std::string ws = escape_whitespaces_ ? kSpaceSymbol : " ";
  if (add_dummy_prefix_) out += ws;
  bool prev_space = remove_extra_whitespaces_;
  for (char c : in) {
    if (c == ' ') {
      if (prev_space) continue;
      out += ws;
      prev_space = remove_extra_whitespaces_;
    } else {
      out += c;
      prev_space = false;
    }
  }
  if (remove_extra_whitespaces_) {
    while (out.size() >= ws.size() && out.compare(out.size() - ws.size(), ws.size(), ws) == 0) {
      out.resize(out.size() - ws.size());
    }
  }
  return out;
}

void SpmBackend::EmitPiece(const std::string& piece, std::vector<int>* ids) const {
  int id = PieceToId(piece);
  if (id >= 0 && pieces_[id].type != kUnused && pieces_[id].type != kByte &&
      pieces_[id].type != kControl) {
    ids->push_back(id);
    return;
  }
  if (byte_fallback_) {
    bool all = true;
    for (unsigned char b : piece) all = all && byte_ids_[b] >= 0;
    if (all) {
      for (unsigned char b : piece) ids->push_back(byte_ids_[b]);
      return;
    }
  }
  ids->push_back(unk_id_);
}

void SpmBackend::EncodeBpe(const std::vector<std::string>& symbols,
                           const std::vector<bool>& frozen, std::vector<int>* ids) const {
  struct Sym {
    std::string text;
    int prev, next;
    bool freeze;  // user-defined symbols are never merged
  };
  struct Pair {
    float score;
    int left, right;
    size_t size;
    bool operator<(const Pair& o) const {
      return score != o.score ? score < o.score : left > o.left;  // max score, then leftmost
    }
  };
  std::vector<Sym> syms;
  syms.reserve(symbols.size());
  for (size_t i = 0; i < symbols.size(); ++i) {
    syms.push_back({symbols[i], static_cast<int>(i) - 1,
                    i + 1 < symbols.size() ? static_cast<int>(i) + 1 : -1, frozen[i]});
  }
  std::priority_queue<Pair> agenda;
  auto maybe_add = [&](int left, int right) {
    if (left < 0 || right < 0 || syms[left].freeze || syms[right].freeze) return;
    std::string merged = syms[left].text + syms[right].text;
    auto it = index_.find(merged);
    if (it == index_.end()) return;
    int type = pieces_[it->second].type;
    if (type != kNormal && type != kUserDefined && type != kUnused) return;
    agenda.push({pieces_[it->second].score, left, right, merged.size()});
  };
  for (size_t i = 0; i + 1 < syms.size(); ++i) maybe_add(i, i + 1);
  while (!agenda.empty()) {
    Pair top = agenda.top();
    agenda.pop();
    Sym& l = syms[top.left];
    Sym& r = syms[top.right];
    if (l.text.empty() || r.text.empty() || l.next != top.right ||
        l.text.size() + r.text.size() != top.size) {
      continue;
    }
    l.text += r.text;
    r.text.clear();
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = top.left;
    maybe_add(l.prev, top.left);
    maybe_add(top.left, l.next);
  }
  for (int i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) EmitPiece(syms[i].text, ids);
}

void SpmBackend::EncodeUnigram(const std::string& text, std::vector<int>* ids) const {
  const size_t n = text.size();
  const float unk_score = min_score_ - 10.0f;
  float max_score = 0;
  for (const Piece& p : pieces_) {
    if (p.type == kNormal) max_score = std::max(max_score, p.score);
  }
  struct Node {
    float score = -std::numeric_limits<float>::infinity();
    size_t start = 0;
    int id = -1;
  };
  std::vector<Node> best(n + 1);
  best[0].score = 0;
  for (size_t i = 0; i < n;) {
    size_t char_len = std::min<size_t>(Utf8SeqLen(text[i]), n - i);
    if (best[i].score == -std::numeric_limits<float>::infinity()) {
      i += char_len;
      continue;
    }
    bool single = false;
    for (size_t len = 1; len <= max_piece_bytes_ && i + len <= n; ++len) {
      auto it = index_.find(text.substr(i, len));
      if (it == index_.end()) continue;
      const Piece& p = pieces_[it->second];
      if (p.type != kNormal && p.type != kUserDefined) continue;
      float score = p.type == kUserDefined ? len * max_score - 0.1f : p.score;
      if (len == char_len) single = true;
      if (best[i].score + score > best[i + len].score) {
        best[i + len] = {best[i].score + score, i, it->second};
      }
    }
    if (!single && best[i].score + unk_score > best[i + char_len].score) {
      best[i + char_len] = {best[i].score + unk_score, i, unk_id_};
    }
    i += char_len;
  }
  std::vector<std::pair<size_t, size_t>> spans;  // (start, end) backwards
  std::vector<int> span_ids;
  for (size_t end = n; end > 0;) {
    const Node& node = best[end];
    spans.emplace_back(node.start, end);
    span_ids.push_back(node.id);
    end = node.start;
  }
  std::reverse(spans.begin(), spans.end());
  std::reverse(span_ids.begin(), span_ids.end());
  for (size_t k = 0; k < spans.size(); ++k) {
    if (span_ids[k] != unk_id_) {
      ids->push_back(span_ids[k]);
      continue;
    }
    // A run of unknown characters is one unk (or its bytes with byte_fallback).
    size_t begin = spans[k].first, end = spans[k].second;
    while (k + 1 < spans.size() && span_ids[k + 1] == unk_id_) end = spans[++k].second;
    EmitPiece(text.substr(begin, end - begin), ids);
  }
}

std::string SpmBackend::Encode(const std::string& text, std::vector<int>* ids) const {
  ids->clear();
  std::string norm = Normalize(text);
  if (norm.empty()) return "";
  if (model_type_ == 1) {
    EncodeUnigram(norm, ids);
    return "";
  }
  // BPE: characters, with user-defined pieces kept whole.
  std::vector<std::string> symbols;
  std::vector<bool> frozen;
  for (size_t i = 0; i < norm.size();) {
    size_t len = 0;
    for (const std::string& u : user_defined_) {
      if (norm.compare(i, u.size(), u) == 0) {
        len = u.size();
        break;
      }
    }
    frozen.push_back(len != 0);
    if (len == 0) len = std::min<size_t>(Utf8SeqLen(norm[i]), norm.size() - i);
    symbols.push_back(norm.substr(i, len));
    i += len;
  }
  EncodeBpe(symbols, frozen, ids);
  return "";
}

std::string SpmBackend::Decode(const std::vector<int>& ids, std::string* text) const {
  text->clear();
  std::string bytes;
  bool bos_ws = true;
  auto flush_bytes = [&]() {
    if (bytes.empty()) return;
    // Invalid sequences become one U+FFFD per byte, as SentencePiece does.
    for (size_t i = 0; i < bytes.size();) {
      size_t len = std::min<size_t>(Utf8SeqLen(bytes[i]), bytes.size() - i);
      if (IsValidUtf8(std::string_view(bytes).substr(i, len)) && (len > 1 || bytes[i] >= 0)) {
        text->append(bytes, i, len);
        i += len;
      } else {
        text->append("\xEF\xBF\xBD");
        ++i;
      }
    }
    bytes.clear();
    bos_ws = false;
  };
  for (int id : ids) {
    if (id < 0 || id >= PieceSize()) return "id out of range";
    const Piece& p = pieces_[id];
    if (p.type == kByte) {
      size_t b = std::stoi(p.text.substr(3, 2), nullptr, 16);
      bytes.push_back(static_cast<char>(b));
      continue;
    }
    flush_bytes();
    if (p.type == kControl) continue;
    if (p.type == kUnknown) {
      text->append(kUnkSurface);
      bos_ws = false;
      continue;
    }
    std::string_view piece(p.text);
    bool consumed = false;
    if (bos_ws && (add_dummy_prefix_ || remove_extra_whitespaces_) &&
        piece.compare(0, 3, kSpaceSymbol) == 0) {
      piece.remove_prefix(3);
      consumed = !remove_extra_whitespaces_;
    }
    std::string surface;
    for (size_t i = 0; i < piece.size();) {
      if (piece.compare(i, 3, kSpaceSymbol) == 0) {
        surface += ' ';
        i += 3;
      } else {
        surface += piece[i++];
      }
    }
    text->append(surface);
    if (bos_ws && (!surface.empty() || consumed)) bos_ws = false;
  }
  flush_bytes();
  return "";
}

}  // namespace tokenizer_internal
}  // namespace tandem
