// The threshold search behind Calibrate (calibration.h): given what every exit
// saw on every token of held-out text (its confidence and whether its token
// equals the full model's), the cascade's coverage and disagreements for given
// thresholds, and the thresholds that maximise coverage within a disagreement
// budget. Internal to tandem_common; tested in tests/common/threshold_search_test.cc.
#ifndef TANDEM_COMMON_SRC_EXITS_THRESHOLD_SEARCH_H_
#define TANDEM_COMMON_SRC_EXITS_THRESHOLD_SEARCH_H_

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace tandem::internal {

// What one exit saw on every token of the text, for one confidence measure.
struct ExitColumn {
  const std::vector<float>* conf;      // [n]
  const std::vector<uint8_t>* agree;   // [n], 1 = same token as the full model
};

// The cascade with thresholds `thr` (one per column, in exit order): a token
// leaves at the first exit whose confidence is >= its threshold. Returns
// {covered, disagreements}; per_exit (if given) receives the tokens each exit
// decided.
std::pair<int64_t, int64_t> Cascade(const std::vector<ExitColumn>& cols,
                                    const std::vector<double>& thr,
                                    std::vector<int64_t>* per_exit);

// {covered, disagreements} of the cascade for every candidate threshold of exit
// i, the other thresholds fixed: what Cascade gives for each candidate, in
// O(n log n) instead of O(n * candidates).
std::vector<std::pair<int64_t, int64_t>> SweepExit(const std::vector<ExitColumn>& cols,
                                                   const std::vector<double>& thr, size_t i,
                                                   const std::vector<double>& candidates);

// Thresholds (one of each exit's `candidates`; +inf = never exit) that
// maximise the cascade's coverage with at most `budget` disagreements; all
// +inf when nothing fits. Joint search: every combination of the first k-1
// exits' candidates (all of them for two exits, so the result is the exact
// optimum over the candidates; an evenly spaced subset for more exits, at most
// 4096 combinations), the last exit swept exactly for each, then coordinate
// ascent on the full lists as a polish.
std::vector<double> JointThresholds(const std::vector<ExitColumn>& cols,
                                    const std::vector<std::vector<double>>& candidates,
                                    double budget);

}  // namespace tandem::internal

#endif  // TANDEM_COMMON_SRC_EXITS_THRESHOLD_SEARCH_H_
