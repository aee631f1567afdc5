// Hidden-state codec: DecodeHidden on arbitrary bytes must return a status,
// never crash, read out of bounds or allocate without bound; a buffer it
// accepts must re-encode to a buffer that decodes to the same values.
#include <cmath>
#include <cstring>

#include "absl/strings/string_view.h"
#include "fuzz_target.h"
#include "tandem/codec.h"

TANDEM_FUZZ_TARGET(codec_decode) {
  if (size < 2) return 0;
  // First byte: the expected width (0 = any, else 1..255 * 4), then the buffer.
  const int64_t expected_dim = data[0] == 0 ? 0 : int64_t{data[0]} * 4;
  const absl::string_view buffer(reinterpret_cast<const char*>(data + 1), size - 1);
  absl::StatusOr<tandem::DecodedHidden> decoded = tandem::DecodeHidden(buffer, expected_dim, 64);
  if (!decoded.ok()) return 0;
  if (decoded->values.size() != static_cast<size_t>(decoded->rows * decoded->dim)) __builtin_trap();
  if (expected_dim != 0 && decoded->dim != expected_dim) __builtin_trap();
  // Round trip through the lossless formats (the others quantize).
  if (decoded->spec.format == tandem::HiddenFormat::kFp32) {
    bool finite = true;
    for (float v : decoded->values) finite = finite && std::isfinite(v);
    absl::StatusOr<std::string> again = tandem::EncodeHidden(
        decoded->values.data(), decoded->rows, decoded->dim, decoded->spec);
    if (again.ok() && finite) {
      absl::StatusOr<tandem::DecodedHidden> back = tandem::DecodeHidden(*again, 0, 64);
      if (!back.ok() || back->values.size() != decoded->values.size() ||
          std::memcmp(back->values.data(), decoded->values.data(),
                      decoded->values.size() * sizeof(float)) != 0) {
        __builtin_trap();
      }
    }
  }
  return 0;
}
