// Exit heads from Python: training (tandem/exit_training.h), calibration and
// teacher-forced evaluation (tandem/calibration.h). Each call loads the model
// from its directory, runs with the GIL released, reports progress to an
// optional Python callback and stops on Ctrl-C. The public wrappers (which
// accept paths, text files and arrays as data) are in tandem/exits.py.
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "numpy_convert.h"
#include "py_callbacks.h"
#include "tandem/calibration.h"
#include "tandem/exit_heads.h"
#include "tandem/exit_training.h"
#include "tandem/model.h"
#include "tandem/progress.h"

namespace py = pybind11;

namespace tandem::python {
namespace {

using TokenArray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

std::vector<int32_t> Tokens(const TokenArray& a) {
  if (a.ndim() != 1) throw py::value_error("token ids must be a 1-D array");
  return std::vector<int32_t>(a.data(), a.data() + a.size());
}

// Whole model + heads from a directory, with the GIL released.
struct Loaded {
  std::unique_ptr<Model> model;
  std::unique_ptr<ExitHeads> heads;  // null when the directory has none and none are needed
};

absl::StatusOr<Loaded> Load(const std::string& dir, bool need_heads) {
  Loaded l;
  auto model = Model::Load(dir);
  if (!model.ok()) return model.status();
  l.model = std::move(*model);
  auto heads = ExitHeads::Load(dir, *l.model);
  if (heads.ok()) {
    l.heads = std::move(*heads);
  } else if (need_heads || heads.status().code() != absl::StatusCode::kNotFound) {
    return heads.status();
  }
  return l;
}

// A ProgressCallback that forwards to Python (if given) and stops on Ctrl-C or
// when the Python callback returns False or raises.
ProgressCallback Forward(PyBridge& bridge, const py::object& on_progress) {
  return [&bridge, on_progress](const Progress& p) {
    if (on_progress.is_none()) return bridge.Poll();
    bool stop = false;
    const bool ok = bridge.Call([&] {
      py::object r = on_progress(p);
      stop = !r.is_none() && !py::bool_(r);
    });
    return ok && !stop;
  };
}

template <typename T>
T Finish(PyBridge& bridge, absl::StatusOr<T> result) {
  bridge.RethrowIfFailed();
  return ValueOrThrow(std::move(result));
}

// What train_exits reports after every step.
struct TrainProgress {
  int64_t done = 0;   // steps taken
  int64_t total = 0;  // steps asked for
  double elapsed_seconds = 0.0;
  std::map<int64_t, double> kl;  // this step, per exit layer (nats)
  std::map<int64_t, double> ce;
};

struct TrainExitsResult {
  int64_t steps = 0;
  std::map<int64_t, double> kl;  // last step, per exit layer
  std::map<int64_t, double> ce;
  double seconds = 0.0;
  std::string out_dir;
};

TrainExitsResult TrainExits(const std::string& model_dir, const TokenArray& tokens,
                            const std::vector<int64_t>& exits, int64_t adapter_rank,
                            int64_t steps, int64_t batch_size, int64_t seq_len,
                            double learning_rate, int64_t warmup_steps, double kl_weight,
                            double ce_weight, double max_minutes, bool bf16, uint64_t seed,
                            const std::string& out_dir, const py::object& on_progress) {
  ExitTrainOptions o;
  o.train_tokens = Tokens(tokens);
  if (o.train_tokens.empty()) throw py::value_error("no training tokens");
  o.max_steps = steps;
  o.batch_size = batch_size;
  o.seq_len = seq_len;
  o.learning_rate = learning_rate;
  o.warmup_steps = warmup_steps;
  o.kl_weight = kl_weight;
  o.ce_weight = ce_weight;
  o.max_minutes = max_minutes;
  o.bf16_autocast = bf16;
  o.seed = seed;
  PyBridge bridge;
  bool user_stop = false;
  o.stop_requested = [&] { return user_stop || !bridge.Poll(); };
  TrainExitsResult result;
  result.out_dir = out_dir.empty() ? model_dir : out_dir;
  absl::Status status;
  {
    py::gil_scoped_release release;
    status = [&]() -> absl::Status {
      auto model = Model::Load(model_dir);
      if (!model.ok()) return model.status();
      auto heads = ExitHeads::Create(**model, exits, adapter_rank, seed);
      if (!heads.ok()) return heads.status();
      auto taken = TrainExitHeads(**model, **heads, o, [&](const ExitTrainProgress& p) {
        TrainProgress progress{p.step, p.max_steps, p.elapsed_seconds, {}, {}};
        for (size_t i = 0; i < p.kl.size(); ++i) {
          progress.kl[(*heads)->layers()[i]] = p.kl[i];
          progress.ce[(*heads)->layers()[i]] = p.ce[i];
        }
        result.kl = progress.kl;
        result.ce = progress.ce;
        result.seconds = p.elapsed_seconds;
        if (on_progress.is_none()) return;
        bool stop = false;
        const bool ok = bridge.Call([&] {
          py::object r = on_progress(progress);
          stop = !r.is_none() && !py::bool_(r);
        });
        user_stop = user_stop || !ok || stop;
      });
      if (!taken.ok()) return taken.status();
      result.steps = *taken;
      return (*heads)->Save(result.out_dir);
    }();
  }
  bridge.RethrowIfFailed();
  ThrowIfError(status);
  return result;
}

CalibrationResult CalibrateBinding(const std::string& model_dir, const TokenArray& tokens,
                                   double target_agreement, std::optional<int64_t> split,
                                   int64_t seq_len, int64_t max_tokens, int curve_points,
                                   bool write, const std::string& precision,
                                   const py::object& on_progress) {
  const std::vector<int32_t> ids = Tokens(tokens);
  CalibrationOptions o;
  o.precision = ValueOrThrow(ParseComputePrecision(precision));
  o.target_agreement = target_agreement;
  o.max_layer = split.value_or(-1);
  o.seq_len = seq_len;
  o.max_tokens = max_tokens;
  o.curve_points = curve_points;
  PyBridge bridge;
  o.on_progress = Forward(bridge, on_progress);
  absl::StatusOr<CalibrationResult> result;
  {
    py::gil_scoped_release release;
    result = [&]() -> absl::StatusOr<CalibrationResult> {
      auto loaded = Load(model_dir, /*need_heads=*/true);
      if (!loaded.ok()) return loaded.status();
      auto r = Calibrate(*loaded->model, *loaded->heads, ids, o);
      if (!r.ok() || !write) return r;
      loaded->heads->set_thresholds(r->Chosen());
      if (absl::Status s = loaded->heads->Save(model_dir); !s.ok()) return s;
      return r;
    }();
  }
  return Finish(bridge, std::move(result));
}

PerplexityResult EvaluateBinding(const std::string& model_dir, const TokenArray& tokens,
                                 std::optional<TokenArray> unigram_from, int64_t seq_len,
                                 int64_t max_tokens, const std::string& precision,
                                 const py::object& on_progress) {
  const ComputePrecision p = ValueOrThrow(ParseComputePrecision(precision));
  const std::vector<int32_t> ids = Tokens(tokens);
  const std::vector<int32_t> unigram = unigram_from ? Tokens(*unigram_from) : std::vector<int32_t>{};
  PyBridge bridge;
  const ProgressCallback progress = Forward(bridge, on_progress);
  absl::StatusOr<PerplexityResult> result;
  {
    py::gil_scoped_release release;
    result = [&]() -> absl::StatusOr<PerplexityResult> {
      auto loaded = Load(model_dir, /*need_heads=*/false);
      if (!loaded.ok()) return loaded.status();
      return EvaluatePerplexity(*loaded->model, loaded->heads.get(), ids, unigram, seq_len,
                                max_tokens, progress, p);
    }();
  }
  return Finish(bridge, std::move(result));
}

ThresholdEvaluation EvaluateThresholdsBinding(
    const std::string& model_dir, const TokenArray& tokens,
    std::optional<std::map<int64_t, double>> thresholds, std::optional<std::string> measure,
    int64_t seq_len, int64_t max_tokens, const std::string& precision,
    const py::object& on_progress) {
  const ComputePrecision p = ValueOrThrow(ParseComputePrecision(precision));
  const std::vector<int32_t> ids = Tokens(tokens);
  std::optional<ConfidenceMeasure> m;
  if (measure) m = ValueOrThrow(ParseConfidenceMeasure(*measure));
  PyBridge bridge;
  const ProgressCallback progress = Forward(bridge, on_progress);
  absl::StatusOr<ThresholdEvaluation> result;
  {
    py::gil_scoped_release release;
    result = [&]() -> absl::StatusOr<ThresholdEvaluation> {
      auto loaded = Load(model_dir, /*need_heads=*/true);
      if (!loaded.ok()) return loaded.status();
      ExitThresholds t = loaded->heads->thresholds();
      if (thresholds) {
        if (!m && t.by_layer.empty()) m = ConfidenceMeasure::kMaxProb;
        t.by_layer = *thresholds;
      } else if (t.by_layer.empty()) {
        return absl::FailedPreconditionError(
            "exits.json has no calibrated thresholds: pass thresholds=");
      } else if (m && *m != t.measure) {
        return absl::InvalidArgumentError(
            "the calibrated thresholds are for another measure: pass thresholds= too");
      }
      if (m) t.measure = *m;
      return EvaluateThresholds(*loaded->model, *loaded->heads, t, ids, seq_len, max_tokens,
                                progress, p);
    }();
  }
  return Finish(bridge, std::move(result));
}

}  // namespace

void BindExits(py::module_& m) {
  py::class_<Progress>(m, "Progress",
                       "Progress of a long call: `done` of `total` units (tokens for evaluation\n"
                       "and calibration, steps for training) after elapsed_seconds of wall time.")
      .def_readonly("done", &Progress::done)
      .def_readonly("total", &Progress::total)
      .def_readonly("elapsed_seconds", &Progress::elapsed_seconds)
      .def_property_readonly("fraction",
                             [](const Progress& p) {
                               return p.total > 0 ? static_cast<double>(p.done) / p.total : 0.0;
                             })
      .def("__repr__", [](const Progress& p) {
        return "Progress(done=" + std::to_string(p.done) + ", total=" + std::to_string(p.total) +
               ")";
      });

  py::class_<TrainProgress>(m, "TrainProgress",
                            "Progress of train_exits after a step: `done` of `total` steps,\n"
                            "elapsed_seconds, and this step's kl and ce {layer: nats}.")
      .def_readonly("done", &TrainProgress::done)
      .def_readonly("total", &TrainProgress::total)
      .def_readonly("elapsed_seconds", &TrainProgress::elapsed_seconds)
      .def_readonly("kl", &TrainProgress::kl)
      .def_readonly("ce", &TrainProgress::ce)
      .def("__repr__", [](const TrainProgress& p) {
        return "TrainProgress(done=" + std::to_string(p.done) + ", total=" +
               std::to_string(p.total) + ")";
      });

  py::class_<TrainExitsResult>(m, "TrainExitsResult",
                               "steps taken; kl and ce: {layer: loss of the last step} (nats);\n"
                               "seconds of training; out_dir where the heads were written.")
      .def_readonly("steps", &TrainExitsResult::steps)
      .def_readonly("kl", &TrainExitsResult::kl)
      .def_readonly("ce", &TrainExitsResult::ce)
      .def_readonly("seconds", &TrainExitsResult::seconds)
      .def_readonly("out_dir", &TrainExitsResult::out_dir)
      .def("__repr__", [](const TrainExitsResult& r) {
        return "TrainExitsResult(steps=" + std::to_string(r.steps) + ", out_dir='" + r.out_dir +
               "')";
      });

  py::class_<CurvePoint>(m, "CurvePoint",
                         "One point of an exit's standalone curve: at `threshold`, `coverage`\n"
                         "of all tokens pass and `agreement` of those equal the full model's token.")
      .def_readonly("threshold", &CurvePoint::threshold)
      .def_readonly("coverage", &CurvePoint::coverage)
      .def_readonly("agreement", &CurvePoint::agreement)
      .def("__repr__", [](const CurvePoint& p) {
        return "CurvePoint(threshold=" + py::repr(py::float_(p.threshold)).cast<std::string>() +
               ", coverage=" + py::repr(py::float_(p.coverage)).cast<std::string>() +
               ", agreement=" + py::repr(py::float_(p.agreement)).cast<std::string>() + ")";
      });

  py::class_<MeasureCalibration>(
      m, "MeasureCalibration",
      "Calibration under one confidence measure: the chosen thresholds {layer: t} (inf =\n"
      "never exit there), the share of tokens each exit then decides, the total edge\n"
      "share (coverage) and overall agreement of the cascade, and each exit's\n"
      "standalone curve {layer: [CurvePoint, ...]} (thresholds ascending).")
      .def_property_readonly("measure",
                             [](const MeasureCalibration& c) {
                               return ConfidenceMeasureName(c.measure);
                             })
      .def_readonly("thresholds", &MeasureCalibration::thresholds)
      .def_readonly("exit_share", &MeasureCalibration::exit_share)
      .def_readonly("coverage", &MeasureCalibration::coverage)
      .def_readonly("agreement", &MeasureCalibration::agreement)
      .def_readonly("curves", &MeasureCalibration::curves)
      .def("__repr__", [](const MeasureCalibration& c) {
        return std::string("MeasureCalibration(measure='") + ConfidenceMeasureName(c.measure) +
               "', coverage=" + py::repr(py::float_(c.coverage)).cast<std::string>() +
               ", agreement=" + py::repr(py::float_(c.agreement)).cast<std::string>() + ")";
      });

  py::class_<CalibrationResult>(
      m, "CalibrationResult",
      "tokens evaluated; target_agreement; top1_agreement {layer: share of tokens where\n"
      "the exit's argmax equals the full model's}; measures (one MeasureCalibration per\n"
      "confidence measure); best (index of the highest coverage); chosen (that one).")
      .def_readonly("tokens", &CalibrationResult::tokens)
      .def_readonly("target_agreement", &CalibrationResult::target_agreement)
      .def_readonly("top1_agreement", &CalibrationResult::top1_agreement)
      .def_readonly("measures", &CalibrationResult::measures)
      .def_readonly("best", &CalibrationResult::best)
      .def_property_readonly("chosen",
                             [](const CalibrationResult& r) { return r.measures.at(r.best); })
      .def("table", &FormatCalibration, "The text table `tandem calibrate` prints.")
      .def("__repr__", [](const CalibrationResult& r) {
        const MeasureCalibration& b = r.measures.at(r.best);
        return "CalibrationResult(tokens=" + std::to_string(r.tokens) + ", best='" +
               ConfidenceMeasureName(b.measure) +
               "', coverage=" + py::repr(py::float_(b.coverage)).cast<std::string>() + ")";
      });

  py::class_<PerplexityResult>(
      m, "PerplexityResult",
      "Mean negative log-likelihoods (nats per token) over `tokens` predicted tokens:\n"
      "full_nll, exit_nll {layer: nll}, unigram_nll (0 when no unigram was fitted); the\n"
      "*_perplexity properties are their exp.")
      .def_readonly("tokens", &PerplexityResult::tokens)
      .def_readonly("full_nll", &PerplexityResult::full_nll)
      .def_readonly("exit_nll", &PerplexityResult::exit_nll)
      .def_readonly("unigram_nll", &PerplexityResult::unigram_nll)
      .def_property_readonly("full_perplexity",
                             [](const PerplexityResult& r) { return std::exp(r.full_nll); })
      .def_property_readonly("exit_perplexity",
                             [](const PerplexityResult& r) {
                               std::map<int64_t, double> out;
                               for (const auto& [l, nll] : r.exit_nll) out[l] = std::exp(nll);
                               return out;
                             })
      .def_property_readonly("unigram_perplexity",
                             [](const PerplexityResult& r) -> std::optional<double> {
                               if (r.unigram_nll == 0.0) return std::nullopt;
                               return std::exp(r.unigram_nll);
                             })
      .def("__repr__", [](const PerplexityResult& r) {
        return "PerplexityResult(tokens=" + std::to_string(r.tokens) + ", full_perplexity=" +
               py::repr(py::float_(std::exp(r.full_nll))).cast<std::string>() + ")";
      });

  py::class_<ThresholdEvaluation>(
      m, "ThresholdEvaluation",
      "The edge's cascade at fixed thresholds, teacher-forced over `tokens` tokens:\n"
      "coverage (share decided at the edge), agreement (overall, with the full model's\n"
      "own token for the rest), exit_share {layer: share}.")
      .def_readonly("tokens", &ThresholdEvaluation::tokens)
      .def_readonly("coverage", &ThresholdEvaluation::coverage)
      .def_readonly("agreement", &ThresholdEvaluation::agreement)
      .def_readonly("exit_share", &ThresholdEvaluation::exit_share)
      .def("__repr__", [](const ThresholdEvaluation& r) {
        return "ThresholdEvaluation(tokens=" + std::to_string(r.tokens) +
               ", coverage=" + py::repr(py::float_(r.coverage)).cast<std::string>() +
               ", agreement=" + py::repr(py::float_(r.agreement)).cast<std::string>() + ")";
      });

  m.def("_train_exits", &TrainExits, py::arg("model_dir"), py::arg("tokens"), py::arg("exits"),
        py::arg("adapter_rank"), py::arg("steps"), py::arg("batch_size"), py::arg("seq_len"),
        py::arg("learning_rate"), py::arg("warmup_steps"), py::arg("kl_weight"),
        py::arg("ce_weight"), py::arg("max_minutes"), py::arg("bf16"), py::arg("seed"),
        py::arg("out_dir"), py::arg("on_progress"));
  m.def("_calibrate", &CalibrateBinding, py::arg("model_dir"), py::arg("tokens"),
        py::arg("target_agreement"), py::arg("split"), py::arg("seq_len"), py::arg("max_tokens"),
        py::arg("curve_points"), py::arg("write"), py::arg("precision"),
        py::arg("on_progress"));
  m.def("_evaluate", &EvaluateBinding, py::arg("model_dir"), py::arg("tokens"),
        py::arg("unigram_from"), py::arg("seq_len"), py::arg("max_tokens"),
        py::arg("precision"), py::arg("on_progress"));
  m.def("_evaluate_thresholds", &EvaluateThresholdsBinding, py::arg("model_dir"),
        py::arg("tokens"), py::arg("thresholds"), py::arg("measure"), py::arg("seq_len"),
        py::arg("max_tokens"), py::arg("precision"), py::arg("on_progress"));
}

}  // namespace tandem::python
