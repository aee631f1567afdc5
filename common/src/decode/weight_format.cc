#include "tandem/weight_format.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tandem {

const char* WeightFormatName(WeightFormat f) {
  switch (f) {
    case WeightFormat::kF32: return "fp32";
    case WeightFormat::kF16: return "fp16";
    case WeightFormat::kBF16: return "bf16";
    case WeightFormat::kInt8: return "int8";
    case WeightFormat::kInt4: return "int4";
  }
  return "?";
}

absl::StatusOr<WeightFormat> ParseWeightFormat(const std::string& name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "fp32" || n == "f32" || n == "float32") return WeightFormat::kF32;
  if (n == "fp16" || n == "f16" || n == "float16") return WeightFormat::kF16;
  if (n == "bf16" || n == "bfloat16") return WeightFormat::kBF16;
  if (n == "int8" || n == "q8_0") return WeightFormat::kInt8;
  if (n == "int4" || n == "q4_0") return WeightFormat::kInt4;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown weight format '", name, "' (fp32, fp16, bf16, int8, int4)"));
}

int64_t WeightRowBytes(WeightFormat format, int64_t columns) {
  const int64_t padded = (columns + kWeightBlock - 1) / kWeightBlock * kWeightBlock;
  const int64_t blocks = padded / kWeightBlock;
  switch (format) {
    case WeightFormat::kF32: return padded * 4;
    case WeightFormat::kF16:
    case WeightFormat::kBF16: return padded * 2;
    case WeightFormat::kInt8: return padded + blocks * 2;
    case WeightFormat::kInt4: return padded / 2 + blocks * 2;
  }
  return 0;
}

}  // namespace tandem
