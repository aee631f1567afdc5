// What the CPU can do fast, read at run time, and the compute precision that
// training and teacher-forced evaluation use because of it.
//
// Why at run time: machines that look alike differ. On CPUs with AVX-512 BF16 or
// AMX-BF16, libtorch's (oneDNN's) bf16 matmul runs several times faster than
// fp32 (measured here: 4096x256x688 on one thread, 491 vs 78 GFLOP/s on a Xeon
// with AMX); on AVX2-only CPUs it is ~100x slower than fp32 (1.05 s vs 12 ms).
// libtorch's own "CPU capability usage: AVX2" line is the same on both, so the
// flags are read from the kernel (/proc/cpuinfo on Linux).
#ifndef TANDEM_CPU_FEATURES_H_
#define TANDEM_CPU_FEATURES_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tandem {

struct CpuFeatures {
  std::string model_name;   // "model name" of the first processor; "" if unknown
  bool avx2 = false;
  bool avx512f = false;
  bool avx512_bf16 = false;  // AVX512_BF16: vdpbf16ps
  bool amx_bf16 = false;     // AMX-BF16 tiles (Sapphire Rapids and later)
  bool known = false;        // false when the flags could not be read

  // True when bf16 matrix products are expected to beat fp32 (AVX512_BF16 or AMX).
  bool FastBf16Matmul() const { return avx512_bf16 || amx_bf16; }
  // "amx_bf16 avx512_bf16 avx512f avx2" (the flags above that are set), or "unknown".
  std::string Describe() const;
};

// Parses the text of /proc/cpuinfo (the first processor's "flags" and "model name").
CpuFeatures ParseCpuInfo(absl::string_view cpuinfo);

// This machine's features, read once from /proc/cpuinfo (known = false where
// there is no such file). Thread-safe.
const CpuFeatures& HostCpuFeatures();

// Precision of training and teacher-forced evaluation. kAuto picks bf16 autocast
// (matmuls in bf16, master weights and optimizer state in fp32) exactly when the
// CPU has FastBf16Matmul(), fp32 otherwise.
enum class ComputePrecision { kAuto, kFp32, kBf16 };

// "auto", "fp32", "bf16" (also "float32", "bfloat16"). InvalidArgument otherwise.
absl::StatusOr<ComputePrecision> ParseComputePrecision(absl::string_view name);

// Resolves kAuto against `cpu`: true = bf16 autocast. `why` (optional) gets a
// line for logs and model cards, e.g. "bf16 autocast (auto: CPU has amx_bf16
// avx512_bf16 avx512f avx2)".
bool UseBf16Autocast(ComputePrecision precision, const CpuFeatures& cpu, std::string* why);

}  // namespace tandem

#endif  // TANDEM_CPU_FEATURES_H_
