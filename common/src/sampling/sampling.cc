#include "tandem/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"

namespace tandem {

absl::Status SamplingParams::Validate() const {
  if (!(temperature >= 0.0f) || !std::isfinite(temperature)) {
    return absl::InvalidArgumentError(absl::StrCat("temperature must be >= 0, got ", temperature));
  }
  if (top_k < 0) return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", top_k));
  if (vocab_limit < 0) {
    return absl::InvalidArgumentError(absl::StrCat("vocab_limit must be >= 0, got ", vocab_limit));
  }
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", top_p));
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

absl::Status Sampler::Weigh(const at::Tensor& logits, std::vector<float>* probs,
                            std::vector<int32_t>* order, int64_t* keep, int32_t* best,
                            double* total) const {
  if (auto s = params_.Validate(); !s.ok()) return s;
  if (!logits.defined() || logits.numel() == 0) {
    return absl::InvalidArgumentError("Sample: empty logits");
  }
  at::Tensor flat = logits.reshape({-1}).to(at::kFloat).contiguous();
  const float* x = flat.data_ptr<float>();
  for (int64_t i = 0; i < flat.numel(); ++i) {
    if (std::isnan(x[i]) || x[i] == std::numeric_limits<float>::infinity()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Sample: the logit of id ", i, " is ", std::isnan(x[i]) ? "NaN" : "+inf",
          " (the model produced non-finite values; no token can be chosen)"));
    }
  }
  const int64_t n = params_.vocab_limit > 0 ? std::min<int64_t>(params_.vocab_limit, flat.numel())
                                            : flat.numel();

  // Softmax at the effective temperature, in float with max shift.
  const float temp = params_.temperature > 0.0f ? params_.temperature : 1.0f;
  *best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (x[i] > x[*best]) *best = static_cast<int32_t>(i);
  }
  if (x[*best] == -std::numeric_limits<float>::infinity()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Sample: every allowed logit (ids [0, ", n, ")) is -inf"));
  }
  probs->resize(n);
  *total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float p = std::exp((x[i] - x[*best]) / temp);
    (*probs)[i] = p;
    *total += p;
  }
  if (params_.temperature == 0.0f) {
    *keep = 1;
    return absl::OkStatus();
  }

  // Candidates sorted by probability (ties by id, for reproducibility).
  const std::vector<float>& w = *probs;
  order->resize(n);
  std::iota(order->begin(), order->end(), 0);
  auto by_prob = [&](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); };
  *keep = n;
  if (params_.top_k > 0 && params_.top_k < n) {
    *keep = params_.top_k;
    std::partial_sort(order->begin(), order->begin() + *keep, order->end(), by_prob);
  } else {
    std::sort(order->begin(), order->end(), by_prob);
  }
  if (params_.top_p < 1.0f) {
    double cum = 0.0;
    int64_t i = 0;
    while (i < *keep) {
      cum += w[(*order)[i]] / *total;
      ++i;
      if (cum >= params_.top_p) break;
    }
    *keep = i;
  }
  return absl::OkStatus();
}

absl::StatusOr<int32_t> Sampler::Sample(const at::Tensor& logits, float* probability) {
  int64_t keep = 0;
  int32_t best = 0;
  double total = 0.0;
  if (auto s = Weigh(logits, &probs_, &order_, &keep, &best, &total); !s.ok()) return s;
  if (params_.temperature == 0.0f) {
    if (probability != nullptr) *probability = static_cast<float>(probs_[best] / total);
    return best;
  }
  double kept_total = 0.0;
  for (int64_t i = 0; i < keep; ++i) kept_total += probs_[order_[i]];
  std::uniform_real_distribution<double> uniform(0.0, kept_total);
  const double r = uniform(rng_);
  double acc = 0.0;
  int32_t chosen = order_[0];  // reached only through rounding
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

absl::StatusOr<TokenDistribution> Sampler::Distribution(const at::Tensor& logits) const {
  std::vector<float> probs;
  std::vector<int32_t> order;
  int64_t keep = 0;
  int32_t best = 0;
  double total = 0.0;
  if (auto s = Weigh(logits, &probs, &order, &keep, &best, &total); !s.ok()) return s;
  TokenDistribution d;
  if (params_.temperature == 0.0f) {
    d.ids = {best};
    d.probs = {1.0f};
    return d;
  }
  double kept_total = 0.0;
  for (int64_t i = 0; i < keep; ++i) kept_total += probs[order[i]];
  d.ids.reserve(keep);
  d.probs.reserve(keep);
  for (int64_t i = 0; i < keep; ++i) {
    const float p = static_cast<float>(probs[order[i]] / kept_total);
    if (p <= 0.0f) break;  // sorted: the rest underflowed to 0 as well
    d.ids.push_back(order[i]);
    d.probs.push_back(p);
  }
  return d;
}

int32_t Sampler::SampleFrom(const TokenDistribution& d) {
  if (d.ids.empty()) return -1;
  double total = 0.0;
  for (float p : d.probs) total += p;
  const double r = Uniform() * total;
  double acc = 0.0;
  for (size_t i = 0; i < d.ids.size(); ++i) {
    acc += d.probs[i];
    if (r < acc) return d.ids[i];
  }
  // Rounding left r at or past the last boundary: the last id with mass.
  for (size_t i = d.ids.size(); i-- > 0;) {
    if (d.probs[i] > 0.0f) return d.ids[i];
  }
  return d.ids.back();
}

double Sampler::Uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

}  // namespace tandem
