#include "exits/threshold_search.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tandem::internal {

// The cascade with thresholds `thr`: a token leaves at the first exit whose
// confidence passes. Returns {covered, disagreements}; per_exit (if given)
// receives the tokens each exit decided.
std::pair<int64_t, int64_t> Cascade(const std::vector<ExitColumn>& cols,
                                    const std::vector<double>& thr,
                                    std::vector<int64_t>* per_exit) {
  const size_t k = cols.size();
  const int64_t n = static_cast<int64_t>(cols[0].conf->size());
  int64_t covered = 0, wrong = 0;
  if (per_exit) per_exit->assign(k, 0);
  for (int64_t t = 0; t < n; ++t) {
    for (size_t i = 0; i < k; ++i) {
      if ((*cols[i].conf)[t] >= thr[i]) {
        ++covered;
        wrong += 1 - (*cols[i].agree)[t];
        if (per_exit) ++(*per_exit)[i];
        break;
      }
    }
  }
  return {covered, wrong};
}

// {covered, disagreements} of the cascade for every candidate threshold of
// exit i, the other thresholds fixed: the same numbers Cascade would give for
// each candidate, in O(n log n) instead of O(n * candidates). Tokens an
// earlier exit takes do not depend on exit i; of those that reach it, the ones
// with confidence >= c leave there and the rest go on to the later exits.
std::vector<std::pair<int64_t, int64_t>> SweepExit(const std::vector<ExitColumn>& cols,
                                                   const std::vector<double>& thr, size_t i,
                                                   const std::vector<double>& candidates) {
  const size_t k = cols.size();
  const int64_t n = static_cast<int64_t>(cols[0].conf->size());
  int64_t fixed_cov = 0, fixed_wrong = 0;
  struct Reach {
    float conf;
    int32_t wrong_here;   // 1 if exit i disagrees
    int32_t later_cov;    // 1 if a later exit takes it when exit i does not
    int32_t later_wrong;  // 1 if that later exit disagrees
  };
  std::vector<Reach> reach;
  reach.reserve(n);
  for (int64_t t = 0; t < n; ++t) {
    bool taken = false;
    for (size_t j = 0; j < i; ++j) {
      if ((*cols[j].conf)[t] >= thr[j]) {
        ++fixed_cov;
        fixed_wrong += 1 - (*cols[j].agree)[t];
        taken = true;
        break;
      }
    }
    if (taken) continue;
    Reach r{(*cols[i].conf)[t], 1 - (*cols[i].agree)[t], 0, 0};
    for (size_t j = i + 1; j < k; ++j) {
      if ((*cols[j].conf)[t] >= thr[j]) {
        r.later_cov = 1;
        r.later_wrong = 1 - (*cols[j].agree)[t];
        break;
      }
    }
    reach.push_back(r);
  }
  std::sort(reach.begin(), reach.end(),
            [](const Reach& a, const Reach& b) { return a.conf < b.conf; });
  const size_t r = reach.size();
  // below_*[p]: over reach[0, p) (they go on past exit i); above_wrong[p]:
  // disagreements of exit i over reach[p, r).
  std::vector<int64_t> below_cov(r + 1, 0), below_wrong(r + 1, 0), above_wrong(r + 1, 0);
  for (size_t p = 0; p < r; ++p) {
    below_cov[p + 1] = below_cov[p] + reach[p].later_cov;
    below_wrong[p + 1] = below_wrong[p] + reach[p].later_wrong;
  }
  for (size_t p = r; p > 0; --p) above_wrong[p - 1] = above_wrong[p] + reach[p - 1].wrong_here;
  std::vector<std::pair<int64_t, int64_t>> out;
  out.reserve(candidates.size());
  for (double c : candidates) {
    // First token whose confidence passes c (conf >= c, compared as double).
    const size_t p = std::partition_point(reach.begin(), reach.end(),
                                          [c](const Reach& x) { return x.conf < c; }) -
                     reach.begin();
    out.emplace_back(fixed_cov + static_cast<int64_t>(r - p) + below_cov[p],
                     fixed_wrong + above_wrong[p] + below_wrong[p]);
  }
  return out;
}

// Searching one exit at a time from "no exit" alone (what calibration did
// before) stops in local optima: a low early threshold spends budget that a
// later, more accurate exit would use better. For two exits the joint result is
// never below coordinate ascent's (both pick from the same candidates); ties go
// to the first combination in grid order.
std::vector<double> JointThresholds(const std::vector<ExitColumn>& cols,
                                    const std::vector<std::vector<double>>& candidates,
                                    double budget) {
  constexpr double kMaxCombinations = 4096;
  const size_t k = cols.size();
  std::vector<double> thr(k, std::numeric_limits<double>::infinity());
  if (k == 0) return thr;
  int64_t best_cov = 0;
  // Grid of candidate indices for the outer exits (0 .. k-2).
  std::vector<std::vector<size_t>> grid(k - 1);
  const size_t per_exit =
      k <= 2 ? std::numeric_limits<size_t>::max()
             : static_cast<size_t>(
                   std::max(2.0, std::floor(std::pow(kMaxCombinations, 1.0 / (k - 1)))));
  for (size_t i = 0; i + 1 < k; ++i) {
    const size_t m = candidates[i].size();
    if (m <= per_exit) {
      for (size_t c = 0; c < m; ++c) grid[i].push_back(c);
    } else {
      for (size_t g = 0; g < per_exit; ++g) grid[i].push_back(g * (m - 1) / (per_exit - 1));
    }
  }
  std::vector<size_t> at(k - 1, 0);  // odometer over the grid
  std::vector<double> trial(k, std::numeric_limits<double>::infinity());
  while (true) {
    for (size_t i = 0; i + 1 < k; ++i) trial[i] = candidates[i][grid[i][at[i]]];
    const auto swept = SweepExit(cols, trial, k - 1, candidates[k - 1]);
    for (size_t c = 0; c < swept.size(); ++c) {
      const auto [cov, wrong] = swept[c];
      if (wrong <= budget && cov > best_cov) {
        best_cov = cov;
        thr = trial;
        thr[k - 1] = candidates[k - 1][c];
      }
    }
    size_t i = 0;
    while (i + 1 < k && ++at[i] == grid[i].size()) at[i++] = 0;
    if (i + 1 >= k) break;
  }
  // Polish: coordinate ascent on the full candidate lists, keeping the budget.
  for (int pass = 0; pass < 4; ++pass) {
    bool improved = false;
    for (size_t i = 0; i < k; ++i) {
      const auto swept = SweepExit(cols, thr, i, candidates[i]);
      for (size_t c = 0; c < candidates[i].size(); ++c) {
        const auto [cov, wrong] = swept[c];
        if (wrong <= budget && cov > best_cov) {
          best_cov = cov;
          thr[i] = candidates[i][c];
          improved = true;
        }
      }
    }
    if (!improved) break;
  }
  return thr;
}

}  // namespace tandem::internal
