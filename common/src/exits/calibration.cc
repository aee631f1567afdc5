#include "tandem/calibration.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "exits/teacher_forcing.h"
#include "exits/threshold_search.h"
#include "tandem/status_macros.h"

namespace tandem {
namespace {

using internal::HeadRows;
using internal::kFinalHead;
using internal::RunTeacherForced;
using internal::SummarizeRows;
using internal::TeacherForcedBatch;
using internal::Cascade;
using internal::ExitColumn;
using internal::JointThresholds;

constexpr ConfidenceMeasure kMeasures[] = {ConfidenceMeasure::kMaxProb, ConfidenceMeasure::kMargin,
                                           ConfidenceMeasure::kEntropy};
constexpr size_t kNumMeasures = std::size(kMeasures);

template <typename T>
void Append(std::vector<T>& out, const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  out.insert(out.end(), c.data_ptr<T>(), c.data_ptr<T>() + c.numel());
}

}  // namespace

absl::StatusOr<PerplexityResult> EvaluatePerplexity(const Model& model, const ExitHeads* heads,
                                                    const std::vector<int32_t>& tokens,
                                                    const std::vector<int32_t>& unigram_fit,
                                                    int64_t seq_len, int64_t max_tokens,
                                                    const ProgressCallback& on_progress,
                                                    ComputePrecision precision) {
  PerplexityResult r;
  std::vector<int64_t> exits = heads != nullptr ? heads->layers() : std::vector<int64_t>{};
  double full = 0.0;
  std::vector<double> per_exit(exits.size(), 0.0);
  std::vector<double> log_prob;  // add-one unigram log-probabilities
  const int64_t vocab = model.config().vocab_size;
  if (!unigram_fit.empty()) {
    std::vector<double> counts(vocab, 1.0);  // add-one smoothing
    for (int32_t id : unigram_fit) {
      if (id >= 0 && id < vocab) counts[id] += 1.0;
    }
    const double total = static_cast<double>(unigram_fit.size()) + vocab;
    log_prob.resize(vocab);
    for (int64_t i = 0; i < vocab; ++i) log_prob[i] = std::log(counts[i] / total);
  }
  double unigram = 0.0;
  TANDEM_RETURN_IF_ERROR(RunTeacherForced(
      model, heads, exits, tokens, seq_len, max_tokens, on_progress,
      UseBf16Autocast(precision, HostCpuFeatures(), nullptr),
      [&](const TeacherForcedBatch& b) -> absl::Status {
        TANDEM_ASSIGN_OR_RETURN(HeadRows f,
                                SummarizeRows(model, heads, kFinalHead, b.final_hidden, b.targets));
        full += f.nll.sum(at::kDouble).item<double>();
        for (size_t i = 0; i < exits.size(); ++i) {
          TANDEM_ASSIGN_OR_RETURN(HeadRows e,
                                  SummarizeRows(model, heads, exits[i], b.exit_hidden[i], b.targets));
          per_exit[i] += e.nll.sum(at::kDouble).item<double>();
        }
        const int64_t n = b.targets.size(0);
        if (!log_prob.empty()) {
          const int64_t* t = b.targets.data_ptr<int64_t>();
          for (int64_t i = 0; i < n; ++i) unigram -= log_prob[t[i]];
        }
        r.tokens += n;
        return absl::OkStatus();
      }));
  r.full_nll = full / r.tokens;
  for (size_t i = 0; i < exits.size(); ++i) r.exit_nll[exits[i]] = per_exit[i] / r.tokens;
  r.unigram_nll = log_prob.empty() ? 0.0 : unigram / r.tokens;
  return r;
}

absl::StatusOr<CalibrationResult> Calibrate(const Model& model, const ExitHeads& heads,
                                            const std::vector<int32_t>& tokens,
                                            const CalibrationOptions& o) {
  std::vector<int64_t> exits;
  for (int64_t e : heads.layers()) {
    if (o.max_layer < 0 || e <= o.max_layer) exits.push_back(e);
  }
  if (exits.empty()) return absl::InvalidArgumentError("no exit at or before the split");
  if (!(o.target_agreement > 0.0 && o.target_agreement <= 1.0)) {
    return absl::InvalidArgumentError("target agreement must be in (0, 1]");
  }
  if (o.curve_points < 2) return absl::InvalidArgumentError("curve_points must be >= 2");
  const size_t k = exits.size();
  // Per token: does exit i agree with the full model, and its confidence per measure.
  std::vector<std::vector<uint8_t>> agree(k);
  std::vector<std::vector<std::vector<float>>> conf(kNumMeasures, std::vector<std::vector<float>>(k));
  TANDEM_RETURN_IF_ERROR(RunTeacherForced(
      model, &heads, exits, tokens, o.seq_len, o.max_tokens, o.on_progress,
      UseBf16Autocast(o.precision, HostCpuFeatures(), nullptr),
      [&](const TeacherForcedBatch& b) -> absl::Status {
        TANDEM_ASSIGN_OR_RETURN(HeadRows full,
                                SummarizeRows(model, &heads, kFinalHead, b.final_hidden, b.targets));
        for (size_t i = 0; i < k; ++i) {
          TANDEM_ASSIGN_OR_RETURN(HeadRows e,
                                  SummarizeRows(model, &heads, exits[i], b.exit_hidden[i], b.targets));
          Append<uint8_t>(agree[i], e.token.eq(full.token).to(at::kByte));
          for (size_t m = 0; m < kNumMeasures; ++m) {
            // NaN never passes a threshold; -inf behaves the same and sorts.
            Append<float>(conf[m][i], at::nan_to_num(e.confidence(kMeasures[m]),
                                                     -std::numeric_limits<float>::infinity()));
          }
        }
        return absl::OkStatus();
      }));
  CalibrationResult result;
  result.target_agreement = o.target_agreement;
  const int64_t n = static_cast<int64_t>(agree[0].size());
  result.tokens = n;
  for (size_t i = 0; i < k; ++i) {
    int64_t a = 0;
    for (uint8_t v : agree[i]) a += v;
    result.top1_agreement[exits[i]] = static_cast<double>(a) / n;
  }
  // Allowed disagreements overall.
  const double budget = (1.0 - o.target_agreement) * n;

  for (size_t m = 0; m < kNumMeasures; ++m) {
    MeasureCalibration mc;
    mc.measure = kMeasures[m];
    std::vector<ExitColumn> cols;
    for (size_t i = 0; i < k; ++i) cols.push_back({&conf[m][i], &agree[i]});
    // Candidate thresholds: quantiles of each exit's confidence.
    std::vector<std::vector<double>> candidates(k);
    for (size_t i = 0; i < k; ++i) {
      // (confidence, agrees) by confidence, for the candidates and the curve.
      std::vector<std::pair<float, uint8_t>> sorted(n);
      for (int64_t t = 0; t < n; ++t) sorted[t] = {conf[m][i][t], agree[i][t]};
      std::sort(sorted.begin(), sorted.end());
      constexpr int kSteps = 200;
      for (int q = 0; q <= kSteps; ++q) {
        candidates[i].push_back(sorted[std::min<int64_t>(n - 1, (n - 1) * q / kSteps)].first);
      }
      candidates[i].push_back(std::numeric_limits<double>::infinity());  // never exit
      // Standalone curve of this exit: agreed_from[p] = agreements over sorted[p, n).
      std::vector<int64_t> agreed_from(n + 1, 0);
      for (int64_t p = n; p > 0; --p) agreed_from[p - 1] = agreed_from[p] + sorted[p - 1].second;
      std::vector<CurvePoint>& curve = mc.curves[exits[i]];
      for (int q = 0; q < o.curve_points; ++q) {
        const double thr = sorted[std::min<int64_t>(n - 1, (n - 1) * q / (o.curve_points - 1))].first;
        const int64_t p = std::partition_point(sorted.begin(), sorted.end(),
                                               [thr](const std::pair<float, uint8_t>& x) {
                                                 return x.first < thr;
                                               }) -
                          sorted.begin();
        const int64_t covered = n - p;
        curve.push_back({thr, static_cast<double>(covered) / n,
                         covered ? static_cast<double>(agreed_from[p]) / covered : 1.0});
      }
    }
    const std::vector<double> thr = JointThresholds(cols, candidates, budget);
    std::vector<int64_t> per_exit;
    auto [cov, wrong] = Cascade(cols, thr, &per_exit);
    for (size_t i = 0; i < k; ++i) {
      mc.thresholds[exits[i]] = thr[i];
      mc.exit_share[exits[i]] = static_cast<double>(per_exit[i]) / n;
    }
    mc.coverage = static_cast<double>(cov) / n;
    mc.agreement = 1.0 - static_cast<double>(wrong) / n;
    result.measures.push_back(std::move(mc));
  }
  for (size_t m = 1; m < result.measures.size(); ++m) {
    if (result.measures[m].coverage > result.measures[result.best].coverage) result.best = m;
  }
  return result;
}

absl::StatusOr<ThresholdEvaluation> EvaluateThresholds(const Model& model, const ExitHeads& heads,
                                                       const ExitThresholds& thresholds,
                                                       const std::vector<int32_t>& tokens,
                                                       int64_t seq_len, int64_t max_tokens,
                                                       const ProgressCallback& on_progress,
                                                       ComputePrecision precision) {
  std::vector<int64_t> exits;
  std::vector<double> thr;
  for (const auto& [layer, value] : thresholds.by_layer) {
    if (!heads.HasLayer(layer)) {
      return absl::InvalidArgumentError(absl::StrCat("threshold for layer ", layer,
                                                     " which has no exit head"));
    }
    exits.push_back(layer);
    thr.push_back(value);
  }
  if (exits.empty()) return absl::InvalidArgumentError("no thresholds to evaluate");
  ThresholdEvaluation r;
  std::vector<int64_t> decided(exits.size(), 0);
  int64_t wrong = 0;
  TANDEM_RETURN_IF_ERROR(RunTeacherForced(
      model, &heads, exits, tokens, seq_len, max_tokens, on_progress,
      UseBf16Autocast(precision, HostCpuFeatures(), nullptr),
      [&](const TeacherForcedBatch& b) -> absl::Status {
        // Each head runs only on the rows that reach it, and the full model
        // only on the rows some exit took (the rest are its own tokens): on
        // the shipped model about 2 LM-head products a token instead of 3.
        const int64_t n = b.targets.size(0);
        at::Tensor remaining = at::arange(n, at::kLong);  // rows no exit took yet
        std::vector<at::Tensor> taken_rows, taken_tokens;
        for (size_t i = 0; i < exits.size() && remaining.numel() > 0; ++i) {
          TANDEM_ASSIGN_OR_RETURN(
              HeadRows e, SummarizeRows(model, &heads, exits[i],
                                        b.exit_hidden[i].index_select(0, remaining),
                                        b.targets.index_select(0, remaining)));
          const at::Tensor leaves = e.confidence(thresholds.measure) >= thr[i];
          taken_rows.push_back(remaining.masked_select(leaves));
          taken_tokens.push_back(e.token.masked_select(leaves));
          decided[i] += taken_rows.back().numel();
          remaining = remaining.masked_select(leaves.logical_not());
        }
        if (!taken_rows.empty()) {
          const at::Tensor rows = at::cat(taken_rows);
          TANDEM_ASSIGN_OR_RETURN(HeadRows full,
                                  SummarizeRows(model, &heads, kFinalHead,
                                                b.final_hidden.index_select(0, rows),
                                                b.targets.index_select(0, rows)));
          wrong += full.token.ne(at::cat(taken_tokens)).sum().item<int64_t>();
        }
        r.tokens += n;
        return absl::OkStatus();
      }));
  int64_t covered = 0;
  for (size_t i = 0; i < exits.size(); ++i) {
    r.exit_share[exits[i]] = static_cast<double>(decided[i]) / r.tokens;
    covered += decided[i];
  }
  r.coverage = static_cast<double>(covered) / r.tokens;
  r.agreement = 1.0 - static_cast<double>(wrong) / r.tokens;
  return r;
}

ExitThresholds CalibrationResult::Chosen() const {
  ExitThresholds t;
  const MeasureCalibration& m = measures.at(best);
  t.measure = m.measure;
  for (const auto& [layer, value] : m.thresholds) {
    // "Never" is stored as a threshold no confidence reaches.
    t.by_layer[layer] = std::isinf(value) ? 1e9 : value;
  }
  t.target_agreement = target_agreement;
  t.expected_agreement = m.agreement;
  t.expected_coverage = m.coverage;
  return t;
}

std::string FormatCalibration(const CalibrationResult& r) {
  std::string out = absl::StrFormat("%d tokens; target overall agreement %.3f\n", r.tokens,
                                    r.target_agreement);
  for (const auto& [layer, a] : r.top1_agreement) {
    absl::StrAppendFormat(&out, "exit %d: top-1 agreement with the full model %.3f\n", layer, a);
  }
  for (size_t m = 0; m < r.measures.size(); ++m) {
    const MeasureCalibration& mc = r.measures[m];
    absl::StrAppendFormat(&out, "\nmeasure %s%s\n", ConfidenceMeasureName(mc.measure),
                          m == r.best ? "  (chosen)" : "");
    for (const auto& [layer, curve] : mc.curves) {
      absl::StrAppendFormat(&out, "  exit %d standalone curve: coverage -> agreement\n   ", layer);
      for (const CurvePoint& p : curve) {
        absl::StrAppendFormat(&out, " %.2f:%.3f", p.coverage, p.agreement);
      }
      out += "\n";
    }
    out += "  chosen thresholds:";
    for (const auto& [layer, thr] : mc.thresholds) {
      absl::StrAppendFormat(&out, "  exit %d >= %s (%.1f%% of tokens)", layer,
                            std::isinf(thr) ? "never" : absl::StrFormat("%.4f", thr),
                            100.0 * mc.exit_share.at(layer));
    }
    absl::StrAppendFormat(&out, "\n  edge share %.1f%%, overall agreement %.4f\n",
                          100.0 * mc.coverage, mc.agreement);
  }
  return out;
}

}  // namespace tandem
