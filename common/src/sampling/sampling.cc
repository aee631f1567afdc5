#include "tandem/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"

namespace tandem {

absl::Status SamplingParams::Validate() const {
  if (!(temperature >= 0.0f) || !std::isfinite(temperature)) {
    return absl::InvalidArgumentError(absl::StrCat("temperature must be >= 0, got ", temperature));
  }
  if (top_k < 0) return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", top_k));
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", top_p));
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

absl::StatusOr<int32_t> Sampler::Sample(const at::Tensor& logits, float* probability) {
  if (auto s = params_.Validate(); !s.ok()) return s;
  if (!logits.defined() || logits.numel() == 0) {
    return absl::InvalidArgumentError("Sample: empty logits");
  }
  at::Tensor flat = logits.reshape({-1}).to(at::kFloat).contiguous();
  const float* x = flat.data_ptr<float>();
  const int64_t n = flat.numel();

  // Softmax at the effective temperature, in double-free float with max shift.
  const float temp = params_.temperature > 0.0f ? params_.temperature : 1.0f;
  int32_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = static_cast<int32_t>(i);
  }
  if (!std::isfinite(x[best])) return absl::InvalidArgumentError("Sample: logits are not finite");
  probs_.resize(n);
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float p = std::exp((x[i] - x[best]) / temp);
    probs_[i] = p;
    total += p;
  }
  if (params_.temperature == 0.0f) {
    if (probability != nullptr) *probability = static_cast<float>(probs_[best] / total);
    return best;
  }

  // Candidates sorted by probability (ties by id, for reproducibility).
  order_.resize(n);
  std::iota(order_.begin(), order_.end(), 0);
  auto by_prob = [&](int32_t a, int32_t b) {
    return probs_[a] > probs_[b] || (probs_[a] == probs_[b] && a < b);
  };
  int64_t keep = n;
  if (params_.top_k > 0 && params_.top_k < n) {
    keep = params_.top_k;
    std::partial_sort(order_.begin(), order_.begin() + keep, order_.end(), by_prob);
  } else {
    std::sort(order_.begin(), order_.end(), by_prob);
  }
  if (params_.top_p < 1.0f) {
    double cum = 0.0;
    int64_t i = 0;
    while (i < keep) {
      cum += probs_[order_[i]] / total;
      ++i;
      if (cum >= params_.top_p) break;
    }
    keep = i;
  }
  double kept_total = 0.0;
  for (int64_t i = 0; i < keep; ++i) kept_total += probs_[order_[i]];
  std::uniform_real_distribution<double> uniform(0.0, kept_total);
  const double r = uniform(rng_);
  double acc = 0.0;
  int32_t chosen = order_[keep - 1];
  for (int64_t i = 0; i < keep; ++i) {
    acc += probs_[order_[i]];
    if (r < acc) {
      chosen = order_[i];
      break;
    }
  }
  if (probability != nullptr) *probability = static_cast<float>(probs_[chosen] / total);
  return chosen;
}

}  // namespace tandem
