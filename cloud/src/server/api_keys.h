// ApiKeyStore: the server's API keys (key -> identity), from ServerOptions and
// optionally from a file that is re-read without a restart — when its
// modification time, size or inode change (checked on every new call) or when
// Reload() is called (tandem-cloud: SIGHUP). A file that fails to parse on
// reload leaves the previous keys in force (the failure is returned / logged):
// an operator's typo must not lock every client out.
//
// Thread-safe.
#ifndef TANDEM_CLOUD_SERVER_API_KEYS_H_
#define TANDEM_CLOUD_SERVER_API_KEYS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace tandem::cloud {

class ApiKeyStore {
 public:
  // `fixed` keys always apply; `file` (may be empty) adds its keys. Errors: the
  // file's (NotFound, InvalidArgument naming the line).
  static absl::StatusOr<std::unique_ptr<ApiKeyStore>> Create(
      std::map<std::string, std::string> fixed, std::string file);

  // False when there are no keys at all: every caller is "anonymous".
  bool enabled() const;
  // What a call did to the file, for the caller to log.
  struct ReloadResult {
    bool attempted = false;  // the file had changed on disk and was re-read
    absl::Status status;     // of that re-read (an error keeps the previous keys)
  };
  // The identity of `key`, re-reading the file first if it changed on disk.
  // NotFound when the key is unknown.
  absl::StatusOr<std::string> Identify(absl::string_view key, ReloadResult* reload = nullptr);
  // Whether `key` is valid now (no file check).
  bool Valid(absl::string_view key) const;
  // Re-reads the file unconditionally. On error the previous keys stay.
  absl::Status Reload();
  // How many times the key set was replaced (for tests and logs).
  int64_t generation() const;

 private:
  struct FileStamp {
    int64_t mtime_ns = -1, size = -1, inode = -1;
    bool operator==(const FileStamp& o) const {
      return mtime_ns == o.mtime_ns && size == o.size && inode == o.inode;
    }
  };
  static FileStamp Stamp(const std::string& path);
  absl::Status ReloadLocked(const FileStamp& stamp) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const std::string* FindLocked(absl::string_view key) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  ApiKeyStore(std::map<std::string, std::string> fixed, std::string file);

  const std::map<std::string, std::string> fixed_;
  const std::string file_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::string> from_file_ ABSL_GUARDED_BY(mu_);
  FileStamp stamp_ ABSL_GUARDED_BY(mu_);
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_SERVER_API_KEYS_H_
