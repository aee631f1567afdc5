// SIMD kernels of the decode path (fast_decoder.h), written with Google
// Highway and dispatched at run time to the best instruction set the CPU has
// (AVX-512, AVX2, SSE4, NEON, ...). Each entry point dispatches once per call;
// the loops inside have no per-element dispatch.
//
// Activations are fp32, row-major, each row zero-padded to a multiple of
// kWeightBlock (32) floats.
#ifndef TANDEM_COMMON_SRC_DECODE_KERNELS_H_
#define TANDEM_COMMON_SRC_DECODE_KERNELS_H_

#include <cstdint>

#include "tandem/weight_format.h"

namespace tandem::decode {

// A [rows, cols] weight matrix in one of the edge formats. cols is padded to
// a multiple of kWeightBlock. For kF32/kF16/kBF16 `data` holds rows * cols
// values; for kInt8 rows * cols int8 and for kInt4 rows * cols / 2 bytes of
// nibbles, with `scales` holding rows * cols / 32 fp16 block scales.
struct MatrixView {
  WeightFormat format = WeightFormat::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
  const uint16_t* scales = nullptr;
};

// y[r * y_stride + o] = sum_i w[o, i] * x[r * x_stride + i] for r in [0, n_rows)
// and o in [o_begin, o_end). x rows are zero beyond w.cols' real width.
void MatMul(const MatrixView& w, const float* x, int64_t n_rows, int64_t x_stride, float* y,
            int64_t y_stride, int64_t o_begin, int64_t o_end);

// Row `row` of w, dequantized into out[0, w.cols).
void DequantizeRow(const MatrixView& w, int64_t row, float* out);

// out[i] = x[i] * weight[i] / sqrt(mean(x[0, n)^2) + eps), for i in [0, n).
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);

// out[i] = silu(gate[i]) * up[i] for i in [0, n).
void SwiGlu(const float* gate, const float* up, int64_t n, float* out);

// One query head against `n_keys` cached keys/values ([n_keys, head_dim],
// contiguous): out = softmax(scale * keys q) values. `scores` is scratch of
// n_keys floats.
void AttendHead(const float* q, const float* keys, const float* values, int64_t n_keys,
                int64_t head_dim, float scale, float* scores, float* out);

// Name of the instruction set the kernels dispatch to on this CPU ("AVX3",
// "AVX2", ...), for logs and benchmark labels.
const char* KernelTargetName();

}  // namespace tandem::decode

#endif  // TANDEM_COMMON_SRC_DECODE_KERNELS_H_
