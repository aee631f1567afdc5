// SafetensorsFile, WriteSafetensors and the dtype helpers.
//
// Layout of a safetensors file:
//   [0, 8)          header length N, unsigned 64-bit little-endian
//   [8, 8 + N)      UTF-8 JSON object: {"name": {"dtype": "F32", "shape": [..],
//                   "data_offsets": [begin, end]}, ..., "__metadata__": {..}}
//                   possibly padded with trailing spaces
//   [8 + N, EOF)    data section; offsets are relative to its start
//
// Every number read from the file is checked before it is used for address
// arithmetic, so a hostile header cannot make us read outside the mapping.
#include "tandem/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "checkpoint/json_util.h"
#include "nlohmann/json.hpp"

namespace tandem {
namespace {

using json = nlohmann::json;

// Same bound as the reference implementation (huggingface/safetensors): a header
// this large is either hostile or not a safetensors file.
constexpr uint64_t kMaxHeaderSize = 100'000'000;
constexpr char kMetadataKey[] = "__metadata__";

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::kF64, "F64", 8},   {DType::kF32, "F32", 4}, {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},   {DType::kI8, "I8", 1},   {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
};

std::optional<DType> ParseDType(std::string_view name) {
  for (const DTypeEntry& e : kDTypes) {
    if (name == e.name) return e.dtype;
  }
  return std::nullopt;
}

std::string Context(const std::string& path) {
  return absl::StrCat("safetensors file '", path, "'");
}
std::string Context(const std::string& path, const std::string& tensor) {
  return absl::StrCat("safetensors file '", path, "', tensor '", tensor, "'");
}

// Reads a JSON integer that must lie in [0, INT64_MAX].
absl::Status GetNonNegative(const json& j, const std::string& ctx, const char* what,
                            uint64_t* out) {
  if (j.is_number_unsigned()) {
    uint64_t v = j.get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(ctx, ": ", what, " ", v, " is too large"));
    }
    *out = v;
    return absl::OkStatus();
  }
  if (j.is_number_integer()) {  // signed, hence negative
    return absl::InvalidArgumentError(
        absl::StrCat(ctx, ": ", what, " ", j.get<int64_t>(), " is negative"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(ctx, ": ", what, " must be an integer, got ", json_util::Abbreviate(j)));
}

// The byte size of `numel(shape) * dtype_size`, or an error on overflow.
absl::StatusOr<uint64_t> ByteSize(const std::vector<int64_t>& shape, size_t dtype_size,
                                  const std::string& ctx) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat(ctx, ": dimension ", d, " is negative"));
    }
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) {
      return absl::InvalidArgumentError(absl::StrCat(ctx, ": element count overflows"));
    }
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(n, static_cast<uint64_t>(dtype_size), &bytes) ||
      bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(ctx, ": byte size overflows"));
  }
  return bytes;
}

absl::Status ErrnoError(int err, const std::string& msg) {
  return absl::Status(absl::ErrnoToStatusCode(err), absl::StrCat(msg, ": ", std::strerror(err)));
}

// Closes a file descriptor on scope exit.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  int release() { return std::exchange(fd_, -1); }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

absl::Status WriteAll(int fd, const void* data, size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    size_t chunk = std::min<size_t>(size, size_t{1} << 30);
    ssize_t n = ::write(fd, p, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("writing '", path, "'"));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

size_t DTypeSize(DType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.dtype == dtype) return e.size;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.dtype == dtype) return e.name;
  }
  return "UNKNOWN";
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const std::string ctx = Context(path);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block us
  if (fd < 0) return ErrnoError(errno, absl::StrCat("cannot open ", ctx));
  FdCloser closer(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, absl::StrCat("cannot stat ", ctx));
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(ctx, " is not a regular file"));
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    return absl::DataLossError(absl::StrCat(ctx, ": file is ", file_size,
                                            " bytes, too short for the 8-byte header "
                                            "length"));
  }

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) return ErrnoError(errno, absl::StrCat("cannot mmap ", ctx));
  file->map_ = map;
  file->map_size_ = file_size;
  const uint8_t* base = static_cast<const uint8_t*>(map);

  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | base[i];
  if (header_size > kMaxHeaderSize) {
    return absl::InvalidArgumentError(absl::StrCat(ctx, ": header length ", header_size,
                                                   " exceeds the limit of ", kMaxHeaderSize));
  }
  if (header_size > file_size - 8) {
    return absl::DataLossError(absl::StrCat(ctx, ": header length ", header_size,
                                            " runs past the end of the ", file_size, "-byte file"));
  }
  const char* header_begin = reinterpret_cast<const char*>(base + 8);
  const uint8_t* data_begin = base + 8 + header_size;
  const uint64_t data_size = file_size - 8 - header_size;

  // Parse, noting duplicate top-level keys (nlohmann would keep the last one
  // silently; two entries for one name make the file ambiguous).
  std::set<std::string> seen_keys;
  std::string duplicate_key;
  json header;
  try {
    json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
      if (depth == 1 && event == json::parse_event_t::key && parsed.is_string()) {
        const std::string& k = parsed.get_ref<const std::string&>();
        if (!seen_keys.insert(k).second && duplicate_key.empty()) duplicate_key = k;
      }
      return true;
    };
    header = json::parse(header_begin, header_begin + header_size, cb);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(ctx, ": header is not valid JSON: ", e.what()));
  }
  if (!header.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(ctx, ": header must be a JSON object, got ", header.type_name()));
  }
  if (!duplicate_key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(ctx, ": header lists '", duplicate_key, "' twice"));
  }

  struct Span {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Span> spans;
  spans.reserve(header.size());
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& entry = it.value();
    if (name == kMetadataKey) {
      if (!entry.is_object()) {
        return absl::InvalidArgumentError(
            absl::StrCat(ctx, ": __metadata__ must be an object of strings"));
      }
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) {
          return absl::InvalidArgumentError(absl::StrCat(ctx, ": __metadata__ value for '", m.key(),
                                                         "' must be a string, got ",
                                                         json_util::Abbreviate(m.value())));
        }
        file->metadata_.emplace(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    const std::string tctx = Context(path, name);
    if (!entry.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(tctx, ": entry must be an object, got ", json_util::Abbreviate(entry)));
    }
    TensorInfo info;
    info.name = name;

    auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(tctx, ": missing or non-string \"dtype\""));
    }
    const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
    std::optional<DType> dtype = ParseDType(dtype_name);
    if (!dtype) {
      return absl::InvalidArgumentError(
          absl::StrCat(tctx, ": unsupported dtype \"", dtype_name, "\""));
    }
    info.dtype = *dtype;

    auto shape_it = entry.find("shape");
    if (shape_it == entry.end() || !shape_it->is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(tctx, ": missing or non-array \"shape\""));
    }
    info.shape.reserve(shape_it->size());
    for (const json& d : *shape_it) {
      uint64_t dim = 0;
      absl::Status s = GetNonNegative(d, tctx, "shape dimension", &dim);
      if (!s.ok()) return s;
      info.shape.push_back(static_cast<int64_t>(dim));
    }

    auto off_it = entry.find("data_offsets");
    if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(tctx, ": \"data_offsets\" must be an array [begin, end]"));
    }
    uint64_t begin = 0, end = 0;
    absl::Status s = GetNonNegative((*off_it)[0], tctx, "data_offsets begin", &begin);
    if (!s.ok()) return s;
    s = GetNonNegative((*off_it)[1], tctx, "data_offsets end", &end);
    if (!s.ok()) return s;
    if (end < begin) {
      return absl::InvalidArgumentError(
          absl::StrCat(tctx, ": data_offsets [", begin, ", ", end, "] end before they begin"));
    }
    absl::StatusOr<uint64_t> bytes = ByteSize(info.shape, DTypeSize(info.dtype), tctx);
    if (!bytes.ok()) return bytes.status();
    if (*bytes != end - begin) {
      return absl::InvalidArgumentError(absl::StrCat(tctx, ": shape and dtype ", dtype_name,
                                                     " need ", *bytes, " bytes but data_offsets [",
                                                     begin, ", ", end, "] span ", end - begin));
    }
    if (end > data_size) {
      return absl::DataLossError(absl::StrCat(tctx, ": data_offsets [", begin, ", ", end,
                                              "] run past the end of the ", data_size,
                                              "-byte data section (file truncated?)"));
    }
    info.data = data_begin + begin;
    info.size_bytes = static_cast<size_t>(end - begin);
    auto [pos, inserted] = file->tensors_.emplace(name, std::move(info));
    (void)inserted;  // keys of a JSON object are unique
    spans.push_back({begin, end, &pos->first});
  }

  // Two non-empty tensors may not share bytes. Gaps are tolerated.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const Span* prev = nullptr;
  for (const Span& span : spans) {
    if (span.begin == span.end) continue;
    if (prev != nullptr && span.begin < prev->end) {
      return absl::InvalidArgumentError(
          absl::StrCat(ctx, ": tensors '", *prev->name, "' [", prev->begin, ", ", prev->end,
                       ") and '", *span.name, "' [", span.begin, ", ", span.end, ") overlap"));
    }
    prev = &span;
  }

  file->names_.reserve(file->tensors_.size());
  for (const auto& [name, info] : file->tensors_) file->names_.push_back(name);
  return file;
}

bool SafetensorsFile::Has(std::string_view name) const {
  return tensors_.find(name) != tensors_.end();
}

absl::StatusOr<TensorInfo> SafetensorsFile::Get(std::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(
        absl::StrCat("tensor '", std::string(name), "' not found in ", Context(path_)));
  }
  return it->second;
}

// ---------------------------------------------------------------------------
// WriteSafetensors

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  const std::string ctx = absl::StrCat("writing safetensors file '", path, "'");
  std::vector<const TensorToWrite*> sorted;
  sorted.reserve(tensors.size());
  for (const TensorToWrite& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorToWrite* a, const TensorToWrite* b) { return a->name < b->name; });

  json header = json::object();
  std::vector<size_t> sizes;
  sizes.reserve(sorted.size());
  uint64_t offset = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const TensorToWrite& t = *sorted[i];
    const std::string tctx = absl::StrCat(ctx, ", tensor '", t.name, "'");
    if (t.name.empty() || t.name == kMetadataKey) {
      return absl::InvalidArgumentError(absl::StrCat(tctx, ": invalid tensor name"));
    }
    if (i > 0 && sorted[i - 1]->name == t.name) {
      return absl::InvalidArgumentError(absl::StrCat(tctx, ": duplicate tensor name"));
    }
    if (DTypeSize(t.dtype) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(tctx, ": invalid dtype"));
    }
    absl::StatusOr<uint64_t> bytes = ByteSize(t.shape, DTypeSize(t.dtype), tctx);
    if (!bytes.ok()) return bytes.status();
    if (*bytes > 0 && t.data == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(tctx, ": data is null"));
    }
    uint64_t end = 0;
    if (__builtin_add_overflow(offset, *bytes, &end)) {
      return absl::InvalidArgumentError(absl::StrCat(ctx, ": total size overflows"));
    }
    header[t.name] = {
        {"dtype", DTypeName(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, end}}};
    sizes.push_back(static_cast<size_t>(*bytes));
    offset = end;
  }
  if (!metadata.empty()) header[kMetadataKey] = metadata;

  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const json::exception& e) {
    // Names or metadata that are not valid UTF-8.
    return absl::InvalidArgumentError(absl::StrCat(ctx, ": ", e.what()));
  }
  // Pad with spaces so the data section starts 8-byte aligned.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  uint8_t prefix[8];
  uint64_t n = header_text.size();
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<uint8_t>(n >> (8 * i));

  static std::atomic<uint64_t> counter{0};
  const std::string tmp_path = absl::StrCat(path, ".tmp-", ::getpid(), "-", counter.fetch_add(1));
  int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(errno, absl::StrCat(ctx, ": cannot create '", tmp_path, "'"));
  absl::Status status = WriteAll(fd, prefix, sizeof(prefix), tmp_path);
  if (status.ok()) status = WriteAll(fd, header_text.data(), header_text.size(), tmp_path);
  for (size_t i = 0; status.ok() && i < sorted.size(); ++i) {
    status = WriteAll(fd, sorted[i]->data, sizes[i], tmp_path);
  }
  if (status.ok() && ::fsync(fd) != 0) {
    status = ErrnoError(errno, absl::StrCat(ctx, ": fsync"));
  }
  if (::close(fd) != 0 && status.ok()) {
    status = ErrnoError(errno, absl::StrCat(ctx, ": close"));
  }
  if (status.ok() && ::rename(tmp_path.c_str(), path.c_str()) != 0) {
    status = ErrnoError(errno, absl::StrCat(ctx, ": rename from '", tmp_path, "'"));
  }
  if (!status.ok()) ::unlink(tmp_path.c_str());
  return status;
}

}  // namespace tandem
