#include "checkpoint/json_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace tandem {
namespace json_util {

std::string Abbreviate(const nlohmann::json& j) {
  std::string s;
  try {
    s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const nlohmann::json::exception&) {
    return j.type_name();
  }
  constexpr size_t kMax = 60;
  if (s.size() > kMax) s = absl::StrCat(s.substr(0, kMax), "...");
  return s;
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path, uint64_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block us
  if (fd < 0) {
    int err = errno;
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrCat("cannot open '", path, "': ", std::strerror(err)));
  }
  std::string out;
  struct stat st;
  absl::Status status;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    status = absl::Status(absl::ErrnoToStatusCode(err),
                          absl::StrCat("cannot stat '", path, "': ", std::strerror(err)));
  } else if (!S_ISREG(st.st_mode)) {
    status = absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a regular file"));
  } else if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    status = absl::InvalidArgumentError(
        absl::StrCat("'", path, "' is ", st.st_size, " bytes, more than the limit of ", max_bytes));
  } else {
    char buf[1 << 16];
    while (true) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        status = absl::Status(absl::ErrnoToStatusCode(err),
                              absl::StrCat("reading '", path, "': ", std::strerror(err)));
        break;
      }
      if (n == 0) break;
      out.append(buf, static_cast<size_t>(n));
      if (out.size() > max_bytes) {
        status = absl::InvalidArgumentError(
            absl::StrCat("'", path, "' is larger than the limit of ", max_bytes, " bytes"));
        break;
      }
    }
  }
  ::close(fd);
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<nlohmann::json> Parse(const std::string& text, const std::string& what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not valid JSON: ", e.what()));
  }
}

}  // namespace json_util
}  // namespace tandem
