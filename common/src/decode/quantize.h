// Conversion of fp32 weight matrices into the edge formats (weight_format.h),
// done once at load. Scalar code: it runs once per weight, not per token.
#ifndef TANDEM_COMMON_SRC_DECODE_QUANTIZE_H_
#define TANDEM_COMMON_SRC_DECODE_QUANTIZE_H_

#include <cstdint>
#include <vector>

#include "decode/kernels.h"
#include "tandem/weight_format.h"

namespace tandem::decode {

// Owns one matrix in an edge format; view() is what the kernels read.
class QuantizedMatrix {
 public:
  QuantizedMatrix() = default;
  // `src` is [rows, cols] fp32, row-major. Rows are zero-padded to a multiple
  // of kWeightBlock columns.
  QuantizedMatrix(WeightFormat format, const float* src, int64_t rows, int64_t cols);

  MatrixView view() const;
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }            // real width
  int64_t padded_cols() const { return padded_; }   // stored width
  int64_t bytes() const {
    return static_cast<int64_t>(data_.size() + scales_.size() * sizeof(uint16_t));
  }

 private:
  WeightFormat format_ = WeightFormat::kF32;
  int64_t rows_ = 0, cols_ = 0, padded_ = 0;
  std::vector<uint8_t> data_;
  std::vector<uint16_t> scales_;
};

inline int64_t PadToBlock(int64_t n) {
  return (n + kWeightBlock - 1) / kWeightBlock * kWeightBlock;
}

}  // namespace tandem::decode

#endif  // TANDEM_COMMON_SRC_DECODE_QUANTIZE_H_
