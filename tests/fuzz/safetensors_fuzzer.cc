// The safetensors reader on an arbitrary file: it opens with a status, and
// every tensor it lists lies inside the file with the size its shape says.
#include "fuzz_target.h"
#include "tandem/safetensors.h"

TANDEM_FUZZ_TARGET(safetensors) {
  tandem::fuzz::ScratchFile file(".safetensors", data, size);
  absl::StatusOr<std::unique_ptr<tandem::SafetensorsFile>> st =
      tandem::SafetensorsFile::Open(file.path());
  if (!st.ok()) return 0;
  for (const std::string& name : (*st)->names()) {
    absl::StatusOr<tandem::TensorInfo> info = (*st)->Get(name);
    if (!info.ok()) __builtin_trap();
    if (info->size_bytes != static_cast<size_t>(info->numel()) * tandem::DTypeSize(info->dtype)) {
      __builtin_trap();
    }
    // Touch the first and last byte: must be mapped.
    volatile uint8_t sink = 0;
    if (info->size_bytes > 0) sink = info->data[0] ^ info->data[info->size_bytes - 1];
    (void)sink;
  }
  return 0;
}
