#include "tandem/speculative.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace tandem {

TokenDistribution TruncateDistribution(const TokenDistribution& d, int k) {
  TokenDistribution out;
  const size_t n = std::min({d.ids.size(), d.probs.size(), static_cast<size_t>(std::max(k, 1))});
  double total = 0.0;
  for (size_t i = 0; i < n; ++i) total += d.probs[i];
  if (n == 0 || !(total > 0.0)) return out;
  out.ids.assign(d.ids.begin(), d.ids.begin() + n);
  out.probs.resize(n);
  for (size_t i = 0; i < n; ++i) out.probs[i] = static_cast<float>(d.probs[i] / total);
  return out;
}

namespace {

constexpr double kSumTolerance = 1e-3;

absl::Status CheckDraftDistribution(const TokenDistribution& q, int32_t x, double* total) {
  if (q.ids.size() != q.probs.size()) {
    return absl::InvalidArgumentError(absl::StrCat("draft distribution has ", q.ids.size(),
                                                   " ids but ", q.probs.size(), " probabilities"));
  }
  if (q.ids.empty()) return absl::InvalidArgumentError("draft distribution is empty");
  std::vector<int32_t> sorted = q.ids;
  std::sort(sorted.begin(), sorted.end());
  if (sorted.front() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("draft distribution has id ", sorted.front()));
  }
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i] == sorted[i - 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat("draft distribution lists id ", sorted[i], " twice"));
    }
  }
  if (!std::binary_search(sorted.begin(), sorted.end(), x)) {
    return absl::InvalidArgumentError(
        absl::StrCat("draft token ", x, " is not in its draft distribution"));
  }
  *total = 0.0;
  for (size_t i = 0; i < q.probs.size(); ++i) {
    const float v = q.probs[i];
    if (!std::isfinite(v) || !(v > 0.0f)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "draft probability of id ", q.ids[i], " is ", v, " (must be finite and > 0)"));
    }
    *total += v;
  }
  if (std::abs(*total - 1.0) > kSumTolerance) {
    return absl::InvalidArgumentError(
        absl::StrCat("draft probabilities sum to ", *total, ", not 1 (within 1e-3)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateDraft(const TokenDistribution& q, int32_t x, int64_t vocab_size,
                           int max_entries) {
  if (x < 0 || x >= vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("draft token ", x, " is outside the vocabulary of ", vocab_size));
  }
  if (q.ids.empty() && q.probs.empty()) return absl::OkStatus();  // greedy draft
  if (q.ids.size() > static_cast<size_t>(std::max(max_entries, 0)) ||
      q.probs.size() > static_cast<size_t>(std::max(max_entries, 0))) {
    return absl::InvalidArgumentError(
        absl::StrCat("draft distribution has ", std::max(q.ids.size(), q.probs.size()),
                     " entries, at most ", max_entries, " are allowed"));
  }
  for (int32_t id : q.ids) {
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "draft distribution has id ", id, ", outside the vocabulary of ", vocab_size));
    }
  }
  double total = 0.0;
  return CheckDraftDistribution(q, x, &total);
}

absl::StatusOr<DraftVerdict> VerifyDraft(const TokenDistribution& p, const TokenDistribution& q,
                                         int32_t x, Sampler* sampler) {
  if (p.ids.empty() || p.ids.size() != p.probs.size()) {
    return absl::InvalidArgumentError("VerifyDraft: the verifier's distribution is empty or malformed");
  }
  if (x < 0) return absl::InvalidArgumentError(absl::StrCat("draft token ", x, " is negative"));

  // q(id), renormalized; a greedy draft is one-hot at x.
  double q_total = 1.0;
  const bool greedy_draft = q.ids.empty() && q.probs.empty();
  if (!greedy_draft) {
    if (auto s = CheckDraftDistribution(q, x, &q_total); !s.ok()) return s;
  }
  absl::flat_hash_map<int32_t, double> q_by_id;
  if (greedy_draft) {
    q_by_id[x] = 1.0;
  } else {
    q_by_id.reserve(q.ids.size());
    for (size_t i = 0; i < q.ids.size(); ++i) q_by_id[q.ids[i]] = q.probs[i] / q_total;
  }
  auto q_of = [&](int32_t id) -> double {
    auto it = q_by_id.find(id);
    return it == q_by_id.end() ? 0.0 : it->second;
  };
  auto p_of = [&](int32_t id) -> double {
    for (size_t i = 0; i < p.ids.size(); ++i) {
      if (p.ids[i] == id) return p.probs[i];
    }
    return 0.0;
  };

  const double px = p_of(x);
  const double qx = q_of(x);  // > 0: x is among q's ids
  if (px >= qx || sampler->Uniform() < px / qx) {
    return DraftVerdict{x, true, static_cast<float>(px)};
  }

  // Rejected: draw from normalize(max(0, p - q)). Only ids in p can have mass.
  TokenDistribution residual;
  residual.ids.reserve(p.ids.size());
  residual.probs.reserve(p.ids.size());
  for (size_t i = 0; i < p.ids.size(); ++i) {
    const double r = p.probs[i] - q_of(p.ids[i]);
    if (r > 0.0) {
      residual.ids.push_back(p.ids[i]);
      residual.probs.push_back(static_cast<float>(r));
    }
  }
  // p == q up to rounding leaves no residual; then rejection had ~zero
  // probability and p itself is the right law.
  const int32_t token = residual.ids.empty() ? sampler->SampleFrom(p) : sampler->SampleFrom(residual);
  return DraftVerdict{token, false, static_cast<float>(p_of(token))};
}

}  // namespace tandem
