// Reading and writing the safetensors format
// (8-byte little-endian header length, JSON header, raw little-endian data).
//
// SafetensorsFile memory-maps a file and validates its header completely before
// anything is returned: offsets in range, [begin, end) consistent with dtype and
// shape, no two tensors overlapping, data section fully covered by the file. A
// truncated or hostile file gives an absl::Status error, never a crash.
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

// A tensor inside a mapped file. `data` is not necessarily aligned.
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
  // NotFound if absent.
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
// Tensors are laid out in name order, 8-byte aligned header as the format
// recommends.
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace tandem

#endif  // TANDEM_SAFETENSORS_H_
