// WeightFormat: how the edge decode path (fast_decoder.h) stores a weight
// matrix in memory. The libtorch Model keeps its own dtype; these formats exist
// only on the decode path, converted from fp32 at load.
//
//   kF32   4 bytes/weight; the reference (agrees with libtorch within 1e-4).
//   kF16   2 bytes/weight, IEEE binary16, round-to-nearest-even.
//   kBF16  2 bytes/weight, bfloat16, round-to-nearest-even.
//   kInt8  blocks of 32 weights along a row: 32 int8 values q and one fp16
//          scale s = max|w| / 127, w ~= s * q (the layout of llama.cpp's Q8_0:
//          34 bytes per 32 weights = 8.5 bits/weight).
//   kInt4  blocks of 32 weights: 16 bytes of nibbles (weight j of the block in
//          the low nibble of byte j, weight 16 + j in the high nibble) and one
//          fp16 scale s = max|w| / 7 (sign chosen so the largest magnitude maps
//          to -8, as Q4_0), w ~= s * (q - 8): 18 bytes per 32 = 4.5 bits/weight.
//
// Rows are zero-padded to a multiple of 32 weights in every format.
#ifndef TANDEM_WEIGHT_FORMAT_H_
#define TANDEM_WEIGHT_FORMAT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace tandem {

enum class WeightFormat { kF32, kF16, kBF16, kInt8, kInt4 };

// "fp32", "fp16", "bf16", "int8", "int4".
const char* WeightFormatName(WeightFormat f);
// Accepts the names above (and "f32", "float32", "f16", "float16", "bfloat16",
// "q8_0", "q4_0"); anything else is InvalidArgument listing the choices.
absl::StatusOr<WeightFormat> ParseWeightFormat(const std::string& name);

// Weights in a quantization block (and the row padding unit of every format).
inline constexpr int64_t kWeightBlock = 32;
// Bytes one row of `columns` weights takes in `format` (after padding).
int64_t WeightRowBytes(WeightFormat format, int64_t columns);

}  // namespace tandem

#endif  // TANDEM_WEIGHT_FORMAT_H_
