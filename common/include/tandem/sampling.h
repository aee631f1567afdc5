// Sampler: picks the next token from a logits vector — greedy, or temperature
// sampling restricted by top-k and top-p (nucleus), seeded and reproducible: the
// same params, seed and logits sequence give the same tokens on every run.
//
// Thread-compatible (one sampler per generation).
#ifndef TANDEM_SAMPLING_H_
#define TANDEM_SAMPLING_H_

#include <cstdint>
#include <random>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tandem {

struct SamplingParams {
  // 0 means greedy (argmax; ties go to the lowest id). Otherwise logits are
  // divided by the temperature before the softmax.
  float temperature = 0.0f;
  // Keep only the k most likely tokens (0 = no limit).
  int32_t top_k = 0;
  // Keep the smallest set of most likely tokens whose probability reaches top_p
  // (1 = no limit).
  float top_p = 1.0f;
  uint64_t seed = 0;

  // InvalidArgument for negative temperature / top_k, or top_p outside (0, 1].
  absl::Status Validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // `logits` is a float tensor of V values (any shape with V elements).
  // Returns the chosen id; `probability`, if given, receives its probability
  // under the (temperature-scaled, unrestricted) softmax — 1-hot for greedy uses
  // the plain softmax.
  absl::StatusOr<int32_t> Sample(const at::Tensor& logits, float* probability = nullptr);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> probs_;      // scratch, reused across calls
  std::vector<int32_t> order_;    // scratch
};

}  // namespace tandem

#endif  // TANDEM_SAMPLING_H_
