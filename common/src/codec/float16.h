// Portable fp32 <-> fp16 / bf16 bit conversions (round-to-nearest-even), used by
// the hidden-state codec. No intrinsics, no torch: the result is the same on any
// platform and matches IEEE 754 conversion in the default rounding mode.
#ifndef TANDEM_COMMON_SRC_CODEC_FLOAT16_H_
#define TANDEM_COMMON_SRC_CODEC_FLOAT16_H_

#include <cstdint>
#include <cstring>

namespace tandem::codec_internal {

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

inline float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// cond ? a : b as bit operations (GCC keeps some ternaries as branches, which
// stops loop vectorisation).
inline uint32_t Select(bool cond, uint32_t a, uint32_t b) {
  const uint32_t mask = 0u - static_cast<uint32_t>(cond);
  return (a & mask) | (b & ~mask);
}

// fp32 -> IEEE binary16, round-to-nearest-even. Values >= 65520 in magnitude
// become inf; NaN stays NaN (quiet, sign and top payload bits kept). Written
// without branches so loops over it vectorise. Exact under flush-to-zero /
// denormals-are-zero too (only fp32 subnormals, which round to 0, are affected).
inline uint16_t FloatToHalf(float f) {
  const uint32_t x = FloatBits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  // Normal half: rebias the exponent 127 -> 15, round the 13 dropped bits to
  // nearest even; a carry correctly bumps the exponent.
  const uint32_t normal = (abs - 0x38000000u + 0xfffu + ((abs >> 13) & 1u)) >> 13;
  // Subnormal half (|f| < 2^-14): the value in units of 2^-24 is |f| * 2^24
  // (< 1024, exact), rounded to an integer by adding 2^23 (FPU rounds to even).
  // 1024 is the smallest normal's encoding, so rounding up across is correct.
  const uint32_t subnormal =
      FloatBits(BitsToFloat(abs) * 16777216.0f + 8388608.0f) - 0x4b000000u;
  uint32_t h = Select(abs < 0x38800000u, subnormal, normal);
  h = Select(abs >= 0x477ff000u, 0x7c00u, h);  // >= 65520 (and inf) -> inf
  h = Select(abs > 0x7f800000u, 0x7e00u | ((abs >> 13) & 0x3ffu), h);  // NaN
  return static_cast<uint16_t>(sign | h);
}

inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t shifted = static_cast<uint32_t>(h & 0x7fffu) << 13;
  const uint32_t exp = shifted & 0x0f800000u;
  // inf / NaN get exponent 255, normals are rebiased 15 -> 127.
  uint32_t out = Select(exp == 0x0f800000u, shifted + 0x70000000u, shifted + 0x38000000u);
  // Zero or subnormal: mantissa * 2^-24, exact (and normal) in fp32.
  const float sub = static_cast<float>(static_cast<int32_t>(h & 0x3ffu)) * 5.9604644775390625e-08f;
  out = Select(exp == 0, FloatBits(sub), out);
  return BitsToFloat(sign | out);
}

// fp32 -> bfloat16, round-to-nearest-even; NaN stays a (quiet) NaN; values that
// round past the largest bf16 become inf.
inline uint16_t FloatToBf16(float f) {
  const uint32_t x = FloatBits(f);
  const uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
  const uint32_t nan = (x >> 16) | 0x0040u;
  return static_cast<uint16_t>(Select((x & 0x7fffffffu) > 0x7f800000u, nan, rounded));
}

inline float Bf16ToFloat(uint16_t b) { return BitsToFloat(static_cast<uint32_t>(b) << 16); }

}  // namespace tandem::codec_internal

#endif  // TANDEM_COMMON_SRC_CODEC_FLOAT16_H_
