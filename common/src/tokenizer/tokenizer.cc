// Tokenizer::Load (format dispatch) and StreamDecoder.
#include "tandem/tokenizer.h"

#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tokenizer/hf_tokenizer.h"

namespace tandem {
namespace {

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool IsFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return ss.str();
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

constexpr char kReplacementChar[] = "\xEF\xBF\xBD";

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& path) {
  std::string file = path;
  if (IsDirectory(path)) {
    if (IsFile(path + "/tokenizer.json")) {
      file = path + "/tokenizer.json";
    } else if (IsFile(path + "/tokenizer.model")) {
      file = path + "/tokenizer.model";
    } else {
      return absl::NotFoundError(
          absl::StrCat("no tokenizer.json or tokenizer.model in directory ", path));
    }
  } else if (!IsFile(path)) {
    return absl::NotFoundError(absl::StrCat("tokenizer file not found: ", path));
  }
  auto content = ReadFile(file);
  if (!content.ok()) return content.status();
  size_t first = content->find_first_not_of(" \t\r\n");
  bool looks_json = first != std::string::npos && (*content)[first] == '{';
  if (absl::EndsWith(file, ".json") || looks_json) {
    std::string config;
    std::string config_path = DirName(file) + "/tokenizer_config.json";
    if (IsFile(config_path)) {
      auto c = ReadFile(config_path);
      if (c.ok()) config = std::move(*c);
    }
    auto tok = tokenizer_internal::CreateHfTokenizer(*content, config);
    if (!tok.ok()) {
      return absl::Status(tok.status().code(), absl::StrCat(file, ": ", tok.status().message()));
    }
    return tok;
  }
  return tokenizer_internal::CreateSentencePieceTokenizer(file);
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

// Follows HF's DecodeStream: decode a window of ids starting a few tokens
// back (so SentencePiece's "strip the first space" and byte merging see the
// same context as in a full decode) and emit what the newest id added once it
// no longer ends in an incomplete character.
absl::StatusOr<std::string> StreamDecoder::Push(int32_t id) {
  ids_.push_back(id);
  auto text = tokenizer_.Decode(ids_, skip_special_tokens_);
  if (!text.ok()) {
    ids_.pop_back();
    return text.status();
  }
  if (text->size() <= prefix_.size() || absl::EndsWith(*text, kReplacementChar)) return "";
  // A supported decoder never rewrites the window's prefix; if one did, emit
  // the tail past the old prefix rather than fail the stream.
  std::string out = text->substr(prefix_.size());
  // The next window starts at the first id that this one added.
  ids_.erase(ids_.begin(), ids_.begin() + prefix_index_);
  prefix_index_ = ids_.size();
  auto prefix = tokenizer_.Decode(ids_, skip_special_tokens_);
  prefix_ = prefix.ok() ? std::move(*prefix) : std::string();
  return out;
}

std::string StreamDecoder::Flush() {
  auto text = tokenizer_.Decode(ids_, skip_special_tokens_);
  std::string out;
  if (text.ok() && text->size() > prefix_.size() && absl::StartsWith(*text, prefix_)) {
    out = text->substr(prefix_.size());
  }
  ids_.clear();
  prefix_.clear();
  prefix_index_ = 0;
  return out;
}

}  // namespace tandem
