#include "tandem/calibration.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tandem/status_macros.h"

namespace tandem {
namespace {

constexpr ConfidenceMeasure kMeasures[] = {ConfidenceMeasure::kMaxProb, ConfidenceMeasure::kMargin,
                                           ConfidenceMeasure::kEntropy};

// Runs the model over non-overlapping windows and hands, per window, the final
// logits [T, V] and each exit's logits [T, V] plus the targets [T].
template <typename Fn>
absl::Status ForEachWindow(const Model& model, const ExitHeads* heads,
                           const std::vector<int64_t>& exits, const std::vector<int32_t>& tokens,
                           int64_t seq_len, int64_t max_tokens, Fn&& fn) {
  const ModelConfig& c = model.config();
  if (model.layer_begin() != 0 || model.layer_end() != c.num_hidden_layers) {
    return absl::FailedPreconditionError("evaluation needs the whole model");
  }
  if (seq_len <= 0 || seq_len > c.max_position_embeddings) {
    return absl::InvalidArgumentError("seq_len must be in (0, max_position_embeddings]");
  }
  if (static_cast<int64_t>(tokens.size()) < seq_len + 1) {
    return absl::InvalidArgumentError("fewer tokens than one window");
  }
  at::InferenceMode guard;
  const at::Tensor positions = at::arange(seq_len, at::kLong);
  int64_t done = 0;
  for (size_t start = 0; start + seq_len + 1 <= tokens.size(); start += seq_len + 1) {
    if (max_tokens > 0 && done >= max_tokens) break;
    at::Tensor window = at::empty({seq_len + 1}, at::kLong);
    for (int64_t t = 0; t <= seq_len; ++t) window[t] = static_cast<int64_t>(tokens[start + t]);
    at::Tensor inputs = window.narrow(0, 0, seq_len);
    TANDEM_ASSIGN_OR_RETURN(at::Tensor h, model.Embed(inputs));
    std::vector<at::Tensor> exit_logits;
    int64_t layer = 0;
    for (int64_t e : exits) {
      TANDEM_ASSIGN_OR_RETURN(h, model.ForwardLayers(layer, e, h, positions, nullptr));
      layer = e;
      TANDEM_ASSIGN_OR_RETURN(at::Tensor l, heads->Logits(model, e, h));
      exit_logits.push_back(l);
    }
    TANDEM_ASSIGN_OR_RETURN(h, model.ForwardLayers(layer, c.num_hidden_layers, h, positions, nullptr));
    TANDEM_ASSIGN_OR_RETURN(at::Tensor logits, model.Logits(h));
    fn(logits, exit_logits, window.narrow(0, 1, seq_len));
    done += seq_len;
  }
  return absl::OkStatus();
}

double Nll(const at::Tensor& logits, const at::Tensor& targets) {
  return at::cross_entropy_loss(logits, targets).item<double>();
}

}  // namespace

absl::StatusOr<PerplexityResult> EvaluatePerplexity(const Model& model, const ExitHeads* heads,
                                                    const std::vector<int32_t>& tokens,
                                                    const std::vector<int32_t>& unigram_fit,
                                                    int64_t seq_len, int64_t max_tokens) {
  PerplexityResult r;
  std::vector<int64_t> exits = heads != nullptr ? heads->layers() : std::vector<int64_t>{};
  double full = 0.0;
  std::vector<double> per_exit(exits.size(), 0.0);
  std::vector<double> counts;
  const int64_t vocab = model.config().vocab_size;
  if (!unigram_fit.empty()) {
    counts.assign(vocab, 1.0);  // add-one smoothing
    for (int32_t id : unigram_fit) {
      if (id >= 0 && id < vocab) counts[id] += 1.0;
    }
  }
  const double total = static_cast<double>(unigram_fit.size()) + vocab;
  double unigram = 0.0;
  try {
    TANDEM_RETURN_IF_ERROR(ForEachWindow(
        model, heads, exits, tokens, seq_len, max_tokens,
        [&](const at::Tensor& logits, const std::vector<at::Tensor>& exit_logits,
            const at::Tensor& targets) {
          const int64_t n = targets.size(0);
          full += Nll(logits, targets) * n;
          for (size_t i = 0; i < exit_logits.size(); ++i) {
            per_exit[i] += Nll(exit_logits[i], targets) * n;
          }
          if (!counts.empty()) {
            const int64_t* t = targets.data_ptr<int64_t>();
            for (int64_t i = 0; i < n; ++i) unigram -= std::log(counts[t[i]] / total);
          }
          r.tokens += n;
        }));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("EvaluatePerplexity: ", e.what_without_backtrace()));
  }
  r.full_nll = full / r.tokens;
  for (size_t i = 0; i < exits.size(); ++i) r.exit_nll[exits[i]] = per_exit[i] / r.tokens;
  r.unigram_nll = counts.empty() ? 0.0 : unigram / r.tokens;
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
  const size_t k = exits.size();
  // Per token: does exit i agree with the full model, and its confidence per measure.
  std::vector<std::vector<uint8_t>> agree(k);
  std::vector<std::vector<std::vector<float>>> conf(std::size(kMeasures),
                                                    std::vector<std::vector<float>>(k));
  try {
    TANDEM_RETURN_IF_ERROR(ForEachWindow(
        model, &heads, exits, tokens, o.seq_len, o.max_tokens,
        [&](const at::Tensor& logits, const std::vector<at::Tensor>& exit_logits,
            const at::Tensor&) {
          at::Tensor full_token = logits.argmax(-1);
          for (size_t i = 0; i < k; ++i) {
            for (size_t m = 0; m < std::size(kMeasures); ++m) {
              auto [c, token] = Confidence(exit_logits[i], kMeasures[m]);
              if (m == 0) {
                at::Tensor eq = (token == full_token).to(at::kByte).contiguous();
                agree[i].insert(agree[i].end(), eq.data_ptr<uint8_t>(),
                                eq.data_ptr<uint8_t>() + eq.numel());
              }
              at::Tensor cc = c.contiguous();
              conf[m][i].insert(conf[m][i].end(), cc.data_ptr<float>(),
                                cc.data_ptr<float>() + cc.numel());
            }
          }
        }));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("Calibrate: ", e.what_without_backtrace()));
  }
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

  for (size_t m = 0; m < std::size(kMeasures); ++m) {
    MeasureCalibration mc;
    mc.measure = kMeasures[m];
    // Candidate thresholds: quantiles of each exit's confidence.
    std::vector<std::vector<double>> candidates(k);
    for (size_t i = 0; i < k; ++i) {
      std::vector<float> sorted = conf[m][i];
      std::sort(sorted.begin(), sorted.end());
      constexpr int kSteps = 200;
      for (int q = 0; q <= kSteps; ++q) {
        candidates[i].push_back(sorted[std::min<int64_t>(n - 1, (n - 1) * q / kSteps)]);
      }
      candidates[i].push_back(std::numeric_limits<double>::infinity());  // never exit
      // Standalone curve of this exit.
      std::vector<CurvePoint>& curve = mc.curves[exits[i]];
      for (int q = 0; q <= 20; ++q) {
        const double thr = sorted[std::min<int64_t>(n - 1, (n - 1) * q * 5 / 100)];
        int64_t covered = 0, agreed = 0;
        for (int64_t t = 0; t < n; ++t) {
          if (conf[m][i][t] >= thr) {
            ++covered;
            agreed += agree[i][t];
          }
        }
        curve.push_back({thr, static_cast<double>(covered) / n,
                         covered ? static_cast<double>(agreed) / covered : 1.0});
      }
    }
    // Cascade evaluation: a token leaves at the first exit whose confidence
    // passes; returns {covered, disagreements}.
    auto evaluate = [&](const std::vector<double>& thr, std::vector<int64_t>* per_exit) {
      int64_t covered = 0, wrong = 0;
      if (per_exit) per_exit->assign(k, 0);
      for (int64_t t = 0; t < n; ++t) {
        for (size_t i = 0; i < k; ++i) {
          if (conf[m][i][t] >= thr[i]) {
            ++covered;
            wrong += 1 - agree[i][t];
            if (per_exit) ++(*per_exit)[i];
            break;
          }
        }
      }
      return std::make_pair(covered, wrong);
    };
    // Coordinate ascent from "no exit": each pass re-picks one exit's threshold
    // with the others fixed, keeping the budget.
    std::vector<double> thr(k, std::numeric_limits<double>::infinity());
    int64_t best_cov = 0;
    for (int pass = 0; pass < 4; ++pass) {
      bool improved = false;
      for (size_t i = 0; i < k; ++i) {
        for (double cand : candidates[i]) {
          std::vector<double> trial = thr;
          trial[i] = cand;
          auto [cov, wrong] = evaluate(trial, nullptr);
          if (wrong <= budget && cov > best_cov) {
            best_cov = cov;
            thr = trial;
            improved = true;
          }
        }
      }
      if (!improved) break;
    }
    std::vector<int64_t> per_exit;
    auto [cov, wrong] = evaluate(thr, &per_exit);
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
                                                       int64_t seq_len, int64_t max_tokens) {
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
  try {
    TANDEM_RETURN_IF_ERROR(ForEachWindow(
        model, &heads, exits, tokens, seq_len, max_tokens,
        [&](const at::Tensor& logits, const std::vector<at::Tensor>& exit_logits,
            const at::Tensor&) {
          at::Tensor full = logits.argmax(-1).contiguous();
          const int64_t n = full.size(0);
          at::Tensor taken = at::zeros({n}, at::kBool);
          for (size_t i = 0; i < exits.size(); ++i) {
            auto [conf, token] = Confidence(exit_logits[i], thresholds.measure);
            at::Tensor leaves = (conf >= thr[i]).logical_and(taken.logical_not());
            decided[i] += leaves.sum().item<int64_t>();
            wrong += leaves.logical_and(token != full).sum().item<int64_t>();
            taken = taken.logical_or(leaves);
          }
          r.tokens += n;
        }));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("EvaluateThresholds: ", e.what_without_backtrace()));
  }
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
