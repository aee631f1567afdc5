#include "decode/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "codec/float16.h"

namespace tandem::decode {
namespace {

using codec_internal::FloatToBf16;
using codec_internal::FloatToHalf;
using codec_internal::HalfToFloat;

// The scale as the kernels will see it (after the round trip through fp16),
// so the integers are chosen against the value actually used.
float StoredScale(float scale, uint16_t* stored) {
  *stored = FloatToHalf(scale);
  return HalfToFloat(*stored);
}

void QuantizeInt8Block(const float* x, int8_t* q, uint16_t* scale) {
  float amax = 0.0f;
  for (int64_t i = 0; i < kWeightBlock; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = StoredScale(amax / 127.0f, scale);
  const float inv = d != 0.0f ? 1.0f / d : 0.0f;
  for (int64_t i = 0; i < kWeightBlock; ++i) {
    q[i] = static_cast<int8_t>(std::clamp(std::nearbyint(x[i] * inv), -127.0f, 127.0f));
  }
}

// Q4_0's rule: the value of largest magnitude maps to -8 exactly, so the full
// [-8, 7] range is used on the side where it matters most.
void QuantizeInt4Block(const float* x, uint8_t* nibbles, uint16_t* scale) {
  float extreme = 0.0f;
  for (int64_t i = 0; i < kWeightBlock; ++i) {
    if (std::fabs(x[i]) > std::fabs(extreme)) extreme = x[i];
  }
  const float d = StoredScale(extreme / -8.0f, scale);
  const float inv = d != 0.0f ? 1.0f / d : 0.0f;
  auto q = [&](float v) {
    return static_cast<uint8_t>(std::clamp(std::nearbyint(v * inv) + 8.0f, 0.0f, 15.0f));
  };
  const int64_t half = kWeightBlock / 2;
  for (int64_t j = 0; j < half; ++j) {
    nibbles[j] = static_cast<uint8_t>(q(x[j]) | (q(x[half + j]) << 4));
  }
}

}  // namespace

QuantizedMatrix::QuantizedMatrix(WeightFormat format, const float* src, int64_t rows,
                                 int64_t cols)
    : format_(format), rows_(rows), cols_(cols), padded_(PadToBlock(cols)) {
  std::vector<float> row(padded_, 0.0f);
  const int64_t blocks = padded_ / kWeightBlock;
  data_.resize(rows * WeightRowBytes(format, cols) -
               (format == WeightFormat::kInt8 || format == WeightFormat::kInt4
                    ? rows * blocks * static_cast<int64_t>(sizeof(uint16_t))
                    : 0));
  if (format == WeightFormat::kInt8 || format == WeightFormat::kInt4) {
    scales_.resize(rows * blocks);
  }
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(row.data(), src + r * cols, cols * sizeof(float));
    switch (format) {
      case WeightFormat::kF32:
        std::memcpy(data_.data() + r * padded_ * 4, row.data(), padded_ * 4);
        break;
      case WeightFormat::kF16: {
        auto* out = reinterpret_cast<uint16_t*>(data_.data()) + r * padded_;
        for (int64_t i = 0; i < padded_; ++i) out[i] = FloatToHalf(row[i]);
        break;
      }
      case WeightFormat::kBF16: {
        auto* out = reinterpret_cast<uint16_t*>(data_.data()) + r * padded_;
        for (int64_t i = 0; i < padded_; ++i) out[i] = FloatToBf16(row[i]);
        break;
      }
      case WeightFormat::kInt8: {
        auto* out = reinterpret_cast<int8_t*>(data_.data()) + r * padded_;
        for (int64_t b = 0; b < blocks; ++b) {
          QuantizeInt8Block(row.data() + b * kWeightBlock, out + b * kWeightBlock,
                            &scales_[r * blocks + b]);
        }
        break;
      }
      case WeightFormat::kInt4: {
        uint8_t* out = data_.data() + r * (padded_ / 2);
        for (int64_t b = 0; b < blocks; ++b) {
          QuantizeInt4Block(row.data() + b * kWeightBlock, out + b * (kWeightBlock / 2),
                            &scales_[r * blocks + b]);
        }
        break;
      }
    }
  }
}

MatrixView QuantizedMatrix::view() const {
  MatrixView v;
  v.format = format_;
  v.rows = rows_;
  v.cols = padded_;
  v.data = data_.data();
  v.scales = scales_.empty() ? nullptr : scales_.data();
  return v;
}

}  // namespace tandem::decode
