// CheckpointReader: the tensors of a Hugging Face checkpoint directory, which may
// be split across several safetensors shards.
#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "checkpoint/json_util.h"
#include "nlohmann/json.hpp"
#include "tandem/safetensors.h"
#include "tandem/status_macros.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";
// Exit heads live beside the backbone but are not part of it.
constexpr char kExitsFile[] = "tandem_exits.safetensors";

bool IsRegularFile(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);  // follows symlinks (the HF cache uses them)
}

// A shard named in an index must be a plain file name inside the checkpoint
// directory: no separators, no "." or "..", nothing absolute.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos && name.find('\0') == std::string::npos;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CheckpointReader>> CheckpointReader::Open(const std::string& path) {
  std::error_code ec;
  const fs::path root(path);
  const fs::file_status st = fs::status(root, ec);
  if (ec || !fs::exists(st)) {
    return absl::NotFoundError(absl::StrCat("checkpoint path '", path, "' does not exist"));
  }
  std::unique_ptr<CheckpointReader> reader(new CheckpointReader());
  reader->path_ = path;

  // Adds every tensor of `file` to the index; a name already present is an error.
  auto add_all = [&reader](std::unique_ptr<SafetensorsFile> file) -> absl::Status {
    for (const std::string& name : file->names()) {
      auto [it, inserted] = reader->index_.emplace(name, file.get());
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' appears in both '",
                                                       it->second->path(), "' and '", file->path(),
                                                       "'"));
      }
    }
    reader->files_.push_back(std::move(file));
    return absl::OkStatus();
  };

  if (fs::is_regular_file(st)) {
    TANDEM_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
    TANDEM_RETURN_IF_ERROR(add_all(std::move(file)));
    return reader;
  }
  if (!fs::is_directory(st)) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint path '", path, "' is neither a file nor a directory"));
  }

  // Same precedence as transformers: a single file first, then an index.
  if (IsRegularFile(root / kSingleFile)) {
    TANDEM_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open((root / kSingleFile).string()));
    TANDEM_RETURN_IF_ERROR(add_all(std::move(file)));
    return reader;
  }

  const fs::path index_path = root / kIndexFile;
  if (IsRegularFile(index_path)) {
    const std::string ipath = index_path.string();
    TANDEM_ASSIGN_OR_RETURN(std::string text, json_util::ReadFileToString(ipath));
    TANDEM_ASSIGN_OR_RETURN(json index,
                            json_util::Parse(text, absl::StrCat("index '", ipath, "'")));
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat("index '", ipath, "': missing object \"weight_map\""));
    }
    const json& weight_map = index["weight_map"];
    std::map<std::string, const SafetensorsFile*> shards;
    for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
      const std::string& tensor = it.key();
      if (!it.value().is_string()) {
        return absl::InvalidArgumentError(absl::StrCat("index '", ipath, "': shard for tensor '",
                                                       tensor, "' must be a string, got ",
                                                       json_util::Abbreviate(it.value())));
      }
      const std::string& shard = it.value().get_ref<const std::string&>();
      if (!IsPlainFileName(shard)) {
        return absl::InvalidArgumentError(
            absl::StrCat("index '", ipath, "': shard '", shard, "' for tensor '", tensor,
                         "' must be a plain file name inside the checkpoint directory"));
      }
      auto sit = shards.find(shard);
      if (sit == shards.end()) {
        absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
            SafetensorsFile::Open((root / shard).string());
        if (!file.ok()) {
          return absl::Status(file.status().code(),
                              absl::StrCat("index '", ipath, "': shard '", shard, "' (for tensor '",
                                           tensor, "'): ", file.status().message()));
        }
        sit = shards.emplace(shard, file->get()).first;
        reader->files_.push_back(*std::move(file));
      }
      if (!sit->second->Has(tensor)) {
        return absl::DataLossError(absl::StrCat("index '", ipath, "' puts tensor '", tensor,
                                                "' in shard '", shard,
                                                "', which does not contain it"));
      }
      // JSON object keys are unique, so a name maps to exactly one shard. A shard
      // may hold tensors the index does not list; the index is authoritative.
      reader->index_.emplace(tensor, sit->second);
    }
    return reader;
  }

  // No single file, no index: every *.safetensors in the directory.
  std::vector<std::string> found;
  fs::directory_iterator dir(root, ec);
  if (ec) {
    return absl::Status(absl::ErrnoToStatusCode(ec.value()),
                        absl::StrCat("cannot list '", path, "': ", ec.message()));
  }
  for (; dir != fs::directory_iterator(); dir.increment(ec)) {
    if (ec) break;
    const fs::path& p = dir->path();
    if (p.extension() == ".safetensors" && p.filename() != kExitsFile && IsRegularFile(p)) {
      found.push_back(p.string());
    }
  }
  if (ec) {
    return absl::Status(absl::ErrnoToStatusCode(ec.value()),
                        absl::StrCat("cannot list '", path, "': ", ec.message()));
  }
  if (found.empty()) {
    return absl::NotFoundError(absl::StrCat("no ", kSingleFile, ", ", kIndexFile,
                                            " or other *.safetensors file in '", path, "'"));
  }
  std::sort(found.begin(), found.end());
  for (const std::string& f : found) {
    TANDEM_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(f));
    TANDEM_RETURN_IF_ERROR(add_all(std::move(file)));
  }
  return reader;
}

std::vector<std::string> CheckpointReader::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [name, file] : index_) out.push_back(name);
  return out;
}

bool CheckpointReader::Has(std::string_view name) const {
  return index_.find(name) != index_.end();
}

absl::StatusOr<TensorInfo> CheckpointReader::Get(std::string_view name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return absl::NotFoundError(
        absl::StrCat("tensor '", std::string(name), "' not found in checkpoint '", path_, "'"));
  }
  return it->second->Get(name);
}

}  // namespace tandem
