// Highway kernels; this file is compiled once per SIMD target (foreach_target).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "decode/kernels.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <cmath>
#include <cstring>

#include "decode/kernels.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace tandem::decode {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// At most 16 float lanes, so a 32-weight block is a whole number of vectors on
// every target (x86 has at most 16; SVE could have more).
using DF = hn::CappedTag<float, 16>;
using VF = hn::Vec<DF>;

// One weight format: Block(d, row, b, fn) calls fn(offset, w) for every vector
// w of block b of `row`, offset being the vector's position inside the block.
struct F32Rows {
  const float* data;
  int64_t cols;
  template <class Fn>
  HWY_INLINE void Block(DF d, int64_t row, int64_t b, const Fn& fn) const {
    const float* p = data + row * cols + b * kWeightBlock;
    for (size_t j = 0; j < kWeightBlock; j += hn::Lanes(d)) fn(j, hn::LoadU(d, p + j));
  }
};

struct F16Rows {
  const hwy::float16_t* data;
  int64_t cols;
  template <class Fn>
  HWY_INLINE void Block(DF d, int64_t row, int64_t b, const Fn& fn) const {
    const hn::Rebind<hwy::float16_t, DF> dh;
    const hwy::float16_t* p = data + row * cols + b * kWeightBlock;
    for (size_t j = 0; j < kWeightBlock; j += hn::Lanes(d)) {
      fn(j, hn::PromoteTo(d, hn::LoadU(dh, p + j)));
    }
  }
};

struct BF16Rows {
  const uint16_t* data;
  int64_t cols;
  template <class Fn>
  HWY_INLINE void Block(DF d, int64_t row, int64_t b, const Fn& fn) const {
    // bf16 is the top half of an fp32: widen and shift.
    const hn::Rebind<uint16_t, DF> du16;
    const hn::RebindToUnsigned<DF> du32;
    const uint16_t* p = data + row * cols + b * kWeightBlock;
    for (size_t j = 0; j < kWeightBlock; j += hn::Lanes(d)) {
      fn(j, hn::BitCast(d, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, p + j)))));
    }
  }
};

HWY_INLINE float ScaleAt(const uint16_t* scales, int64_t index) {
  const hn::CappedTag<float, 1> d1;
  const hn::Rebind<hwy::float16_t, decltype(d1)> dh1;
  return hn::GetLane(
      hn::PromoteTo(d1, hn::LoadU(dh1, reinterpret_cast<const hwy::float16_t*>(scales + index))));
}

struct Int8Rows {
  const int8_t* data;
  const uint16_t* scales;
  int64_t cols;
  template <class Fn>
  HWY_INLINE void Block(DF d, int64_t row, int64_t b, const Fn& fn) const {
    const hn::Rebind<int8_t, DF> di8;
    const hn::RebindToSigned<DF> di32;
    const int8_t* p = data + row * cols + b * kWeightBlock;
    const VF scale = hn::Set(d, ScaleAt(scales, row * (cols / kWeightBlock) + b));
    for (size_t j = 0; j < kWeightBlock; j += hn::Lanes(d)) {
      fn(j, hn::Mul(scale, hn::ConvertTo(d, hn::PromoteTo(di32, hn::LoadU(di8, p + j)))));
    }
  }
};

struct Int4Rows {
  const uint8_t* data;
  const uint16_t* scales;
  int64_t cols;
  template <class Fn>
  HWY_INLINE void Block(DF d, int64_t row, int64_t b, const Fn& fn) const {
    const hn::Rebind<uint8_t, DF> du8;
    const hn::RebindToSigned<DF> di32;
    const uint8_t* p = data + row * (cols / 2) + b * (kWeightBlock / 2);
    const float s = ScaleAt(scales, row * (cols / kWeightBlock) + b);
    const VF scale = hn::Set(d, s);
    const VF offset = hn::Set(d, -8.0f * s);
    const auto mask = hn::Set(di32, 0xF);
    for (size_t j = 0; j < kWeightBlock / 2; j += hn::Lanes(d)) {
      const auto bytes = hn::PromoteTo(di32, hn::LoadU(du8, p + j));
      fn(j, hn::MulAdd(scale, hn::ConvertTo(d, hn::And(bytes, mask)), offset));
      fn(kWeightBlock / 2 + j,
         hn::MulAdd(scale, hn::ConvertTo(d, hn::ShiftRight<4>(bytes)), offset));
    }
  }
};

// kO output rows x kR input rows at once: each weight vector is decoded once
// and used kR times; kO independent accumulator chains hide FMA latency.
template <int kO, int kR, class Rows>
HWY_INLINE void Tile(const Rows& w, int64_t cols, const float* x, int64_t x_stride, float* y,
                     int64_t y_stride, int64_t o) {
  const DF d;
  VF acc[kO][kR];
  for (int a = 0; a < kO; ++a) {
    for (int r = 0; r < kR; ++r) acc[a][r] = hn::Zero(d);
  }
  const int64_t blocks = cols / kWeightBlock;
  for (int64_t b = 0; b < blocks; ++b) {
    const float* xb = x + b * kWeightBlock;
    for (int a = 0; a < kO; ++a) {
      w.Block(d, o + a, b, [&](size_t j, VF wv) HWY_ATTR {
        for (int r = 0; r < kR; ++r) {
          acc[a][r] = hn::MulAdd(wv, hn::LoadU(d, xb + r * x_stride + j), acc[a][r]);
        }
      });
    }
  }
  for (int a = 0; a < kO; ++a) {
    for (int r = 0; r < kR; ++r) y[r * y_stride + o + a] = hn::GetLane(hn::SumOfLanes(d, acc[a][r]));
  }
}

template <class Rows>
HWY_INLINE void MatMulRows(const Rows& w, int64_t cols, const float* x, int64_t n_rows,
                           int64_t x_stride, float* y, int64_t y_stride, int64_t o_begin,
                           int64_t o_end) {
  int64_t r = 0;
  // Input rows four at a time (weights decoded once per four rows), then the rest.
  for (; r + 4 <= n_rows; r += 4) {
    const float* xr = x + r * x_stride;
    float* yr = y + r * y_stride;
    int64_t o = o_begin;
    for (; o + 2 <= o_end; o += 2) Tile<2, 4>(w, cols, xr, x_stride, yr, y_stride, o);
    for (; o < o_end; ++o) Tile<1, 4>(w, cols, xr, x_stride, yr, y_stride, o);
  }
  for (; r + 2 <= n_rows; r += 2) {
    const float* xr = x + r * x_stride;
    float* yr = y + r * y_stride;
    int64_t o = o_begin;
    for (; o + 2 <= o_end; o += 2) Tile<2, 2>(w, cols, xr, x_stride, yr, y_stride, o);
    for (; o < o_end; ++o) Tile<1, 2>(w, cols, xr, x_stride, yr, y_stride, o);
  }
  for (; r < n_rows; ++r) {
    const float* xr = x + r * x_stride;
    float* yr = y + r * y_stride;
    int64_t o = o_begin;
    for (; o + 4 <= o_end; o += 4) Tile<4, 1>(w, cols, xr, x_stride, yr, y_stride, o);
    for (; o < o_end; ++o) Tile<1, 1>(w, cols, xr, x_stride, yr, y_stride, o);
  }
}

void MatMulImpl(const MatrixView& w, const float* x, int64_t n_rows, int64_t x_stride,
                float* y, int64_t y_stride, int64_t o_begin, int64_t o_end) {
  switch (w.format) {
    case WeightFormat::kF32:
      return MatMulRows(F32Rows{static_cast<const float*>(w.data), w.cols}, w.cols, x, n_rows,
                        x_stride, y, y_stride, o_begin, o_end);
    case WeightFormat::kF16:
      return MatMulRows(F16Rows{static_cast<const hwy::float16_t*>(w.data), w.cols}, w.cols, x,
                        n_rows, x_stride, y, y_stride, o_begin, o_end);
    case WeightFormat::kBF16:
      return MatMulRows(BF16Rows{static_cast<const uint16_t*>(w.data), w.cols}, w.cols, x,
                        n_rows, x_stride, y, y_stride, o_begin, o_end);
    case WeightFormat::kInt8:
      return MatMulRows(Int8Rows{static_cast<const int8_t*>(w.data), w.scales, w.cols}, w.cols,
                        x, n_rows, x_stride, y, y_stride, o_begin, o_end);
    case WeightFormat::kInt4:
      return MatMulRows(Int4Rows{static_cast<const uint8_t*>(w.data), w.scales, w.cols}, w.cols,
                        x, n_rows, x_stride, y, y_stride, o_begin, o_end);
  }
}

template <class Rows>
HWY_INLINE void DequantizeRows(const Rows& w, int64_t cols, int64_t row, float* out) {
  const DF d;
  for (int64_t b = 0; b < cols / kWeightBlock; ++b) {
    w.Block(d, row, b, [&](size_t j, VF v) HWY_ATTR {
      hn::StoreU(v, d, out + b * kWeightBlock + j);
    });
  }
}

void DequantizeRowImpl(const MatrixView& w, int64_t row, float* out) {
  switch (w.format) {
    case WeightFormat::kF32:
      return DequantizeRows(F32Rows{static_cast<const float*>(w.data), w.cols}, w.cols, row, out);
    case WeightFormat::kF16:
      return DequantizeRows(F16Rows{static_cast<const hwy::float16_t*>(w.data), w.cols}, w.cols,
                            row, out);
    case WeightFormat::kBF16:
      return DequantizeRows(BF16Rows{static_cast<const uint16_t*>(w.data), w.cols}, w.cols, row,
                            out);
    case WeightFormat::kInt8:
      return DequantizeRows(Int8Rows{static_cast<const int8_t*>(w.data), w.scales, w.cols},
                            w.cols, row, out);
    case WeightFormat::kInt4:
      return DequantizeRows(Int4Rows{static_cast<const uint8_t*>(w.data), w.scales, w.cols},
                            w.cols, row, out);
  }
}

void RmsNormImpl(const float* x, const float* weight, int64_t n, float eps, float* out) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  VF sum = hn::Zero(d);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const VF v = hn::LoadU(d, x + i);
    sum = hn::MulAdd(v, v, sum);
  }
  float total = hn::GetLane(hn::SumOfLanes(d, sum));
  for (; i < n; ++i) total += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(total / static_cast<float>(n) + eps);
  const VF vinv = hn::Set(d, inv);
  i = 0;
  for (; i + N <= n; i += N) {
    hn::StoreU(hn::Mul(hn::LoadU(d, weight + i), hn::Mul(hn::LoadU(d, x + i), vinv)), d,
               out + i);
  }
  for (; i < n; ++i) out[i] = weight[i] * (x[i] * inv);
}

void SwiGluImpl(const float* gate, const float* up, int64_t n, float* out) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const VF one = hn::Set(d, 1.0f);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const VF g = hn::LoadU(d, gate + i);
    const VF sig = hn::Div(one, hn::Add(one, hn::Exp(d, hn::Neg(g))));
    hn::StoreU(hn::Mul(hn::Mul(g, sig), hn::LoadU(d, up + i)), d, out + i);
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void AttendHeadImpl(const float* q, const float* keys, const float* values, int64_t n_keys,
                    int64_t head_dim, float scale, float* scores, float* out) {
  const DF d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const int64_t vec_end = head_dim - head_dim % N;
  float max_score = -INFINITY;
  for (int64_t j = 0; j < n_keys; ++j) {
    const float* k = keys + j * head_dim;
    VF acc = hn::Zero(d);
    for (int64_t i = 0; i < vec_end; i += N) {
      acc = hn::MulAdd(hn::LoadU(d, q + i), hn::LoadU(d, k + i), acc);
    }
    float s = hn::GetLane(hn::SumOfLanes(d, acc));
    for (int64_t i = vec_end; i < head_dim; ++i) s += q[i] * k[i];
    s *= scale;
    scores[j] = s;
    max_score = s > max_score ? s : max_score;
  }
  float total = 0.0f;
  {
    const VF vmax = hn::Set(d, max_score);
    VF vsum = hn::Zero(d);
    int64_t j = 0;
    for (; j + N <= n_keys; j += N) {
      const VF e = hn::Exp(d, hn::Sub(hn::LoadU(d, scores + j), vmax));
      hn::StoreU(e, d, scores + j);
      vsum = hn::Add(vsum, e);
    }
    total = hn::GetLane(hn::SumOfLanes(d, vsum));
    for (; j < n_keys; ++j) {
      scores[j] = std::exp(scores[j] - max_score);
      total += scores[j];
    }
  }
  const float inv = 1.0f / total;
  for (int64_t i = 0; i < head_dim; ++i) out[i] = 0.0f;
  for (int64_t j = 0; j < n_keys; ++j) {
    const float p = scores[j] * inv;
    const VF vp = hn::Set(d, p);
    const float* v = values + j * head_dim;
    for (int64_t i = 0; i < vec_end; i += N) {
      hn::StoreU(hn::MulAdd(vp, hn::LoadU(d, v + i), hn::LoadU(d, out + i)), d, out + i);
    }
    for (int64_t i = vec_end; i < head_dim; ++i) out[i] += p * v[i];
  }
}

const char* TargetNameImpl() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace tandem::decode
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace tandem::decode {

HWY_EXPORT(MatMulImpl);
HWY_EXPORT(DequantizeRowImpl);
HWY_EXPORT(RmsNormImpl);
HWY_EXPORT(SwiGluImpl);
HWY_EXPORT(AttendHeadImpl);
HWY_EXPORT(TargetNameImpl);

void MatMul(const MatrixView& w, const float* x, int64_t n_rows, int64_t x_stride, float* y,
            int64_t y_stride, int64_t o_begin, int64_t o_end) {
  HWY_DYNAMIC_DISPATCH(MatMulImpl)(w, x, n_rows, x_stride, y, y_stride, o_begin, o_end);
}

void DequantizeRow(const MatrixView& w, int64_t row, float* out) {
  HWY_DYNAMIC_DISPATCH(DequantizeRowImpl)(w, row, out);
}

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  HWY_DYNAMIC_DISPATCH(RmsNormImpl)(x, weight, n, eps, out);
}

void SwiGlu(const float* gate, const float* up, int64_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(SwiGluImpl)(gate, up, n, out);
}

void AttendHead(const float* q, const float* keys, const float* values, int64_t n_keys,
                int64_t head_dim, float scale, float* scores, float* out) {
  HWY_DYNAMIC_DISPATCH(AttendHeadImpl)(q, keys, values, n_keys, head_dim, scale, scores, out);
}

const char* KernelTargetName() { return HWY_DYNAMIC_DISPATCH(TargetNameImpl)(); }

}  // namespace tandem::decode
#endif  // HWY_ONCE
