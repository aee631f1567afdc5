#include "server/api_keys.h"

#include <sys/stat.h>

#include <utility>

#include "tandem/cloud/server.h"

namespace tandem::cloud {
namespace {

// Compares every byte of the candidate whatever the first difference, so the
// time taken does not reveal how much of a key an attacker guessed right.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) {
    diff |= static_cast<unsigned char>(b[i] ^ (i < a.size() ? a[i] : 0));
  }
  return diff == 0;
}

const std::string* Find(const std::map<std::string, std::string>& keys, absl::string_view key) {
  const std::string* found = nullptr;
  for (const auto& [k, identity] : keys) {
    if (ConstantTimeEquals(k, key) && found == nullptr) found = &identity;
  }
  return found;
}

}  // namespace

ApiKeyStore::ApiKeyStore(std::map<std::string, std::string> fixed, std::string file)
    : fixed_(std::move(fixed)), file_(std::move(file)) {}

absl::StatusOr<std::unique_ptr<ApiKeyStore>> ApiKeyStore::Create(
    std::map<std::string, std::string> fixed, std::string file) {
  auto store = std::unique_ptr<ApiKeyStore>(new ApiKeyStore(std::move(fixed), std::move(file)));
  if (!store->file_.empty()) {
    absl::MutexLock lock(&store->mu_);
    absl::Status s = store->ReloadLocked(Stamp(store->file_));
    if (!s.ok()) return s;
  }
  return store;
}

ApiKeyStore::FileStamp ApiKeyStore::Stamp(const std::string& path) {
  struct stat st;
  FileStamp stamp;
  if (::stat(path.c_str(), &st) != 0) return stamp;
  stamp.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  stamp.size = static_cast<int64_t>(st.st_size);
  stamp.inode = static_cast<int64_t>(st.st_ino);
  return stamp;
}

absl::Status ApiKeyStore::ReloadLocked(const FileStamp& stamp) {
  // The stamp is taken before reading: a write racing with the read changes
  // the file again, and the next call re-reads it.
  stamp_ = stamp;
  absl::StatusOr<std::map<std::string, std::string>> keys = ReadApiKeyFile(file_);
  if (!keys.ok()) return keys.status();
  from_file_ = std::move(*keys);
  ++generation_;
  return absl::OkStatus();
}

bool ApiKeyStore::enabled() const { return !fixed_.empty() || !file_.empty(); }

const std::string* ApiKeyStore::FindLocked(absl::string_view key) const {
  if (const std::string* identity = Find(from_file_, key)) return identity;
  return Find(fixed_, key);
}

absl::StatusOr<std::string> ApiKeyStore::Identify(absl::string_view key, ReloadResult* reload) {
  absl::MutexLock lock(&mu_);
  if (!file_.empty()) {
    const FileStamp now = Stamp(file_);
    if (!(now == stamp_)) {
      absl::Status status = ReloadLocked(now);  // on error the previous keys stay
      if (reload != nullptr) {
        reload->attempted = true;
        reload->status = std::move(status);
      }
    }
  }
  if (const std::string* identity = FindLocked(key)) return *identity;
  return absl::NotFoundError("unknown API key");
}

bool ApiKeyStore::Valid(absl::string_view key) const {
  absl::MutexLock lock(&mu_);
  return FindLocked(key) != nullptr;
}

absl::Status ApiKeyStore::Reload() {
  if (file_.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  return ReloadLocked(Stamp(file_));
}

int64_t ApiKeyStore::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

}  // namespace tandem::cloud
