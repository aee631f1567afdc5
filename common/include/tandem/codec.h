// Hidden-state codec: what the edge sends the cloud (and back) for rows of
// hidden states. Plain floats in, a self-describing byte string out; no torch.
//
// Formats (per value unless noted):
//   fp32  bit-exact (NaN payloads, inf, -0 included).
//   fp16  IEEE binary16, round-to-nearest-even; |x| >= 65520 -> inf; NaN stays NaN.
//   bf16  bfloat16, round-to-nearest-even; NaN stays NaN (quiet); overflow -> inf.
//   int8  per-row (per-token) symmetric: scale = absmax/127 stored as fp32,
//         q = round(x / scale) in [-127, 127]; an all-zero row decodes to zeros.
//   int4  per group of `group_size` consecutive values of a row (the last group
//         of a row may be shorter): scale = absmax/7 stored as fp16 (rounded, then
//         used for quantising), q in [-7, 7] packed two per byte (even index in the
//         low nibble, stored as q + 8), each row starting on a byte boundary.
//   int8/int4 refuse non-finite input (InvalidArgument): one NaN/inf would poison
//   a whole scale. int4 also refuses a group whose scale overflows fp16
//   (absmax > ~458,000); groups with absmax < ~4.3e-4 get a subnormal (coarser)
//   fp16 scale and those below ~2.1e-7 decode as zeros.
// Optional zstd (levels 1..19) then compresses the whole payload. It pays off
// for batches of rows (tandem-tiny, 512 rows x 256: bf16 -22%, int8 -7%, int4
// -8%) but not for single rows, where the ~10-byte frame overhead wins: when
// the frame is not smaller than the raw payload, the payload is stored raw
// (header zstd level 0), so +zstd never costs bytes.
//
// Wire layout (little-endian), kHiddenHeaderBytes = 24 bytes of header:
//   0  magic "TDH1"     4  version u8 (kHiddenCodecVersion)   5  format u8
//   6  group_size u8 (int4: 32|64, else 0)   7  zstd level u8 (0 = raw payload)
//   8  rows u32   12  dim u32   16  payload bytes u32 (what follows the header)
//   20 raw payload bytes u32 (before zstd; == payload bytes when not compressed)
// Payload (before zstd): fp32/fp16/bf16: rows*dim values, row-major.
//   int8: rows fp32 scales, then rows*dim int8.  int4: rows*ceil(dim/group) fp16
//   scales (row-major), then rows*ceil(dim/2) packed bytes.
//
// Decoding validates everything and never reads out of bounds nor allocates more
// than max_rows*dim floats (plus the raw payload) on any input; every failure is
// InvalidArgument with a message starting "codec: ". Scales must be finite and
// non-negative (sign bit clear); any fp32/fp16/bf16 bit pattern and any int8 /
// int4 code is accepted (an int4 nibble 0, never written, decodes as -8).
// All functions are pure and thread-safe.
#ifndef TANDEM_CODEC_H_
#define TANDEM_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tandem {

// Values match the proto enum.
enum class HiddenFormat : uint8_t { kFp32 = 1, kFp16 = 2, kBf16 = 3, kInt8 = 4, kInt4 = 5 };

inline constexpr int64_t kHiddenHeaderBytes = 24;
inline constexpr uint8_t kHiddenCodecVersion = 1;

struct CodecSpec {
  HiddenFormat format = HiddenFormat::kFp16;
  int32_t group_size = 32;  // int4 only: 32 or 64 (ignored by other formats)
  int32_t zstd_level = 0;   // 0 = no zstd, 1..19
  absl::Status Validate() const;
};
// Equal when they encode identically (group_size only matters for int4).
bool operator==(const CodecSpec& a, const CodecSpec& b);
inline bool operator!=(const CodecSpec& a, const CodecSpec& b) { return !(a == b); }

// "fp32", "fp16", "bf16", "int8", "int4" (group 32; "int4-g32" also accepted),
// "int4-g64", optionally followed by "+zstd" (level 3) or "+zstdN" (N in 1..19,
// no leading zero), e.g. "int8+zstd", "int4-g64+zstd9". Lower case only.
absl::StatusOr<CodecSpec> ParseCodecSpec(absl::string_view text);
// Canonical name; ParseCodecSpec(CodecSpecName(s)) == s for every valid s.
std::string CodecSpecName(const CodecSpec& spec);
// "fp32", "fp16", "bf16", "int8", "int4", or "unknown".
const char* HiddenFormatName(HiddenFormat f);

// Encodes `rows` x `dim` row-major floats (rows >= 0, dim >= 1, both < 2^32,
// raw payload < 4 GiB). The result is deterministic for a given input and spec.
absl::StatusOr<std::string> EncodeHidden(const float* data, int64_t rows, int64_t dim,
                                         const CodecSpec& spec);

struct DecodedHidden {
  int64_t rows = 0;
  int64_t dim = 0;
  CodecSpec spec;             // as recorded in the header (incl. zstd level)
  std::vector<float> values;  // rows * dim, row-major
};
// Decodes a whole buffer (trailing bytes are an error). `expected_dim` (0 = any)
// must match the header's dim; more than `max_rows` rows are refused.
absl::StatusOr<DecodedHidden> DecodeHidden(absl::string_view buffer, int64_t expected_dim,
                                           int64_t max_rows);

// Exact encoded size without zstd: header + payload; -1 for an invalid spec or shape.
int64_t EncodedSizeUncompressed(int64_t rows, int64_t dim, const CodecSpec& spec);

}  // namespace tandem

#endif  // TANDEM_CODEC_H_
