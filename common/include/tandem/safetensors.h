// Reading and writing the safetensors format
// (8-byte little-endian header length, JSON header, raw little-endian data).
//
// SafetensorsFile memory-maps a file and validates its header completely before
// anything is returned: offsets in range, [begin, end) consistent with dtype and
// shape (with overflow checks), no two tensors overlapping, data section fully
// covered by the file. A truncated or hostile file gives an absl::Status error,
// never a crash. Error codes:
//   NotFound / PermissionDenied ...  the file cannot be opened (from errno);
//   DataLoss         the file is shorter than its header says (truncated);
//   InvalidArgument  the header is malformed: bad JSON, not an object, unknown
//                    dtype, negative or non-integer dims, size mismatch, overlap,
//                    a name listed twice, "__metadata__" not a string map.
// Messages name the file and, where there is one, the tensor.
// Tolerated, as by most writers' readers: unused gaps between tensors and bytes
// after the last tensor; unknown extra keys inside a tensor entry.
//
// The mapping is read-only and private. As with any mmap, truncating the file
// on disk while it is open makes later reads fault (SIGBUS); replace checkpoints
// by rename (as WriteSafetensors does), not in place.
//
// Thread-safety: a SafetensorsFile / CheckpointReader is immutable after Open and
// safe to read from many threads. The `data` pointers in TensorInfo borrow the
// mapping and stay valid as long as the object that returned them lives.
#ifndef TANDEM_SAFETENSORS_H_
#define TANDEM_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tandem {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// Size in bytes of one element.
size_t DTypeSize(DType dtype);
// "F32", "BF16", ... as written in safetensors headers.
const char* DTypeName(DType dtype);

// A tensor inside a mapped file. `data` is not necessarily aligned (the format
// packs tensors back to back); copy or use unaligned loads.
struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t size_bytes = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  // Tensor names, sorted.
  const std::vector<std::string>& names() const { return names_; }
  bool Has(std::string_view name) const;
  // NotFound if absent. Cheap (copies the name and shape, not the data).
  absl::StatusOr<TensorInfo> Get(std::string_view name) const;
  // The optional "__metadata__" string map.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<std::string> names_;
  std::map<std::string, TensorInfo, std::less<>> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint directory: `model.safetensors`, or the shards listed
// by `model.safetensors.index.json` (weight_map), or otherwise every `*.safetensors`
// file in the directory except `tandem_exits.safetensors`. A tensor name appearing
// in two shards is an error. Also accepts a path to a single .safetensors file.
//
// With an index, the weight_map is authoritative: each shard must be a plain file
// name in the directory (no '/', no ".."), must open cleanly and must contain
// every tensor the index assigns to it (DataLoss otherwise); tensors a shard holds
// but the index does not list are ignored. A missing path or a directory with no
// safetensors file is NotFound.
class CheckpointReader {
 public:
  static absl::StatusOr<std::unique_ptr<CheckpointReader>> Open(const std::string& path);

  std::vector<std::string> names() const;  // sorted
  bool Has(std::string_view name) const;
  absl::StatusOr<TensorInfo> Get(std::string_view name) const;

 private:
  CheckpointReader() = default;
  std::string path_;  // as given to Open, for error messages
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*, std::less<>> index_;
};

// A tensor to write: `data` points to numel * DTypeSize(dtype) bytes,
// little-endian, row-major.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// Writes a safetensors file (atomically: a temporary file renamed into place).
// Tensors are laid out back to back in name order; the header is padded with
// spaces to a multiple of 8 bytes so the data section starts 8-byte aligned, as
// the format recommends. Names must be unique, non-empty, valid UTF-8 and not
// "__metadata__"; dims non-negative; `data` non-null unless the tensor is empty.
// Violations give InvalidArgument and leave `path` untouched; I/O failures give
// the errno's code and remove the temporary file.
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace tandem

#endif  // TANDEM_SAFETENSORS_H_
