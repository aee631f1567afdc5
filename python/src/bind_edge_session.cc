// tandem.EdgeSession: the edge SDK (edge/include/tandem/edge/edge_session.h)
// from Python. generate() runs with the GIL released; Ctrl-C and exceptions
// raised by on_token stop generation within one decode step.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "edge_types.h"
#include "numpy_convert.h"
#include "py_callbacks.h"
#include "tandem/edge/edge_session.h"
#include "tandem/thread_pool.h"
#include "tandem/weight_format.h"

namespace py = pybind11;

namespace tandem::python {
namespace {

class PyEdgeSession {
 public:
  PyEdgeSession(std::unique_ptr<ThreadPool> pool, std::unique_ptr<edge::EdgeSession> session)
      : pool_(std::move(pool)), session_(std::move(session)) {}

  edge::EdgeSession& get() const {
    if (!session_) throw std::runtime_error("FailedPrecondition: the session is closed");
    return *session_;
  }
  // Frees the model and cache now instead of at garbage collection.
  void Close() {
    std::unique_ptr<edge::EdgeSession> s = std::move(session_);
    std::unique_ptr<ThreadPool> p = std::move(pool_);
    py::gil_scoped_release release;
    s.reset();  // before the pool it borrows
    p.reset();
  }

 private:
  // The decode path's threads (weights= given), borrowed by the session:
  // declared first so it is destroyed last.
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<edge::EdgeSession> session_;
};

std::vector<std::string> StopStrings(const py::object& stop) {
  if (stop.is_none()) return {};
  if (py::isinstance<py::str>(stop)) return {stop.cast<std::string>()};
  return stop.cast<std::vector<std::string>>();
}

// Thresholds as given: a dict {layer: threshold}, one number for every exit,
// or None.
struct ThresholdArg {
  std::map<int64_t, double> by_layer;
  std::optional<double> uniform;
};

ThresholdArg ParseThresholds(const py::object& thresholds) {
  ThresholdArg t;
  if (thresholds.is_none()) return t;
  if (py::isinstance<py::dict>(thresholds)) {
    t.by_layer = thresholds.cast<std::map<int64_t, double>>();
  } else {
    t.uniform = thresholds.cast<double>();
  }
  return t;
}

edge::EdgeOptions MakeOptions(const std::string& model_dir, std::optional<int64_t> split,
                              std::optional<std::vector<int64_t>> exits,
                              const std::map<int64_t, double>& thresholds,
                              std::optional<std::string> measure, const py::object& cloud,
                              const std::string& fallback, int threads, int64_t max_context,
                              bool allow_fresh_heads, const std::optional<std::string>& weights) {
  edge::EdgeOptions o;
  if (weights) o.weights = ValueOrThrow(ParseWeightFormat(*weights));
  o.model_dir = model_dir;
  if (split) {
    if (*split <= 0) throw py::value_error("split must be > 0 (None = exits.json's)");
    o.split = *split;
  }
  if (exits) o.exit_layers = *exits;
  o.thresholds = thresholds;
  if (measure) o.measure = ValueOrThrow(ParseConfidenceMeasure(*measure));
  if (fallback == "deepest") {
    o.fallback = edge::StandaloneFallback::kDeepest;
  } else if (fallback == "most_confident") {
    o.fallback = edge::StandaloneFallback::kMostConfident;
  } else {
    throw py::value_error("fallback must be 'deepest' or 'most_confident', got '" + fallback + "'");
  }
  if (threads < 0) throw py::value_error("threads must be >= 0");
  o.compute_threads = threads;
  if (max_context < 0) throw py::value_error("max_context must be >= 0");
  o.max_context = max_context;
  o.allow_fresh_heads = allow_fresh_heads;
  if (!cloud.is_none()) {
    if (py::isinstance<py::str>(cloud)) {
      o.cloud.address = cloud.cast<std::string>();
      if (o.cloud.address.empty()) throw py::value_error("cloud address is empty");
    } else {
      o.cloud = cloud.cast<edge::CloudOptions>();
    }
  }
  return o;
}

std::unique_ptr<PyEdgeSession> Create(const std::string& model_dir, std::optional<int64_t> split,
                                      std::optional<std::vector<int64_t>> exits,
                                      const py::object& thresholds,
                                      std::optional<std::string> measure, const py::object& cloud,
                                      const std::string& fallback, int threads,
                                      int64_t max_context, bool allow_fresh_heads,
                                      const std::optional<std::string>& weights,
                                      int decode_threads) {
  const ThresholdArg t = ParseThresholds(thresholds);
  edge::EdgeOptions o = MakeOptions(model_dir, split, exits, t.by_layer, measure, cloud, fallback,
                                    threads, max_context, allow_fresh_heads, weights);
  if (decode_threads < 1) throw py::value_error("decode_threads must be >= 1");
  std::unique_ptr<ThreadPool> pool;
  if (o.weights && decode_threads > 1) {
    pool = std::make_unique<ThreadPool>(decode_threads);
    o.thread_pool = pool.get();
  }
  absl::StatusOr<std::unique_ptr<edge::EdgeSession>> s;
  {
    py::gil_scoped_release release;
    s = edge::EdgeSession::Create(o);
    if (s.ok() && t.uniform) {
      // One number applies to every exit the session ended up with (S
      // included), known only once exits.json has been read: create again
      // with the thresholds spelled out.
      o.exit_layers = (*s)->engine().exit_layers();
      for (int64_t e : o.exit_layers) o.thresholds[e] = *t.uniform;
      s->reset();
      s = edge::EdgeSession::Create(o);
    }
  }
  return std::make_unique<PyEdgeSession>(std::move(pool), ValueOrThrow(std::move(s)));
}

GenerationResult Generate(PyEdgeSession& self, const py::object& prompt, int32_t max_new_tokens,
                          float temperature, int32_t top_k, float top_p, uint64_t seed,
                          const py::object& stop, bool stop_at_eos, bool add_special_tokens,
                          const py::object& on_token, const std::string& delivery,
                          const py::object& on_rollback) {
  edge::EdgeSession& session = self.get();
  edge::GenerateOptions o;
  o.max_new_tokens = max_new_tokens;
  o.sampling.temperature = temperature;
  o.sampling.top_k = top_k;
  o.sampling.top_p = top_p;
  o.sampling.seed = seed;
  o.stop_strings = StopStrings(stop);
  o.stop_at_eos = stop_at_eos;
  o.add_special_tokens = add_special_tokens;
  if (delivery == "confirmed") {
    o.delivery = edge::GenerateOptions::Delivery::kConfirmed;
  } else if (delivery == "eager") {
    o.delivery = edge::GenerateOptions::Delivery::kEager;
  } else {
    throw py::value_error("delivery must be 'confirmed' or 'eager', got '" + delivery + "'");
  }
  const bool is_text = py::isinstance<py::str>(prompt);
  std::string text;
  std::vector<int32_t> ids;
  if (is_text) {
    text = prompt.cast<std::string>();
  } else {
    ids = prompt.cast<std::vector<int32_t>>();
  }

  PyBridge bridge;
  GenerationResult result;
  std::string streamed;  // every byte of text on_token has seen, less rollbacks
  auto callback = [&](const edge::TokenInfo& info) {
    TokenRecord record = ToRecord(info);
    streamed += info.text;
    bool keep_going;
    if (!on_token.is_none()) {
      bool stop_requested = false;
      keep_going = bridge.Call([&] {
        py::object r = on_token(record);
        stop_requested = !r.is_none() && !py::bool_(r);
      });
      keep_going = keep_going && !stop_requested;
    } else {
      keep_going = bridge.Poll();
    }
    if (info.id >= 0) result.tokens.push_back(std::move(record));
    return keep_going;
  };
  // Eager delivery: called on this thread between two on_token calls; the
  // records of the rolled-back tokens are the last ones in result.tokens.
  auto rollback = [&](const edge::Rollback& rb) {
    RollbackRecord record;
    record.position = rb.position;
    record.tokens = rb.tokens;
    record.bytes = rb.bytes;
    const size_t bytes =
        std::min(streamed.size(), static_cast<size_t>(std::max<int64_t>(rb.bytes, 0)));
    record.text = streamed.substr(streamed.size() - bytes);
    streamed.resize(streamed.size() - bytes);
    const size_t drop =
        std::min(result.tokens.size(), static_cast<size_t>(std::max<int64_t>(rb.tokens, 0)));
    result.tokens.resize(result.tokens.size() - drop);
    if (!on_rollback.is_none()) bridge.Call([&] { on_rollback(record); });
    result.rollbacks.push_back(std::move(record));
  };
  absl::StatusOr<edge::GenerationSummary> summary;
  {
    py::gil_scoped_release release;
    summary = is_text ? session.Generate(text, o, callback, rollback)
                      : session.GenerateIds(ids, o, callback, rollback);
  }
  bridge.RethrowIfFailed();
  result.stats = ValueOrThrow(std::move(summary));
  result.text = result.stats.text;
  result.ids = result.stats.ids;
  return result;
}

}  // namespace

void BindEdgeSession(py::module_& m) {
  py::class_<PyEdgeSession>(
      m, "EdgeSession",
      R"doc(An edge device's half of a split model, generating text token by token.

Loads layers [0, split) of the checkpoint in `model_dir`, its exit heads
(tandem_exits.safetensors + exits.json) and tokenizer, and one KV cache of
`max_context` positions. Each token is decided by the first exit whose
confidence passes its threshold; when none does by the split, the cloud decides
it (collaborative mode, `cloud` given) or the deepest exit does (standalone).
A slow, failing or dead cloud is never an error: those tokens are decided on the
edge (TokenRecord.decided_by == 'fallback') and stats.cloud counts the failures.

Args:
  model_dir: Hugging Face checkpoint directory with exit heads.
  split: S, the first layer not on the edge (None: exits.json's split or its
    deepest exit). Must be in (0, num_layers].
  exits: exit layers in (0, S] (None: every head <= S); S is always one.
  thresholds: {layer: threshold} or one number for every exit (None: the
    calibrated ones in exits.json; an exit with no threshold never decides).
    On the measure's scale: max_prob and margin in [0, 1], neg_entropy <= 0 nats.
  measure: 'max_prob', 'margin' or 'neg_entropy' (None: the calibrated one).
  cloud: None (standalone), 'host:port', or a CloudOptions.
  fallback: 'deepest' or 'most_confident' exit when no exit passes.
  threads: intra-op threads, set PROCESS-WIDE (0 = leave as is).
  max_context: KV positions (0 = the model's max_position_embeddings).
  allow_fresh_heads: without trained heads, start untrained ones (give thresholds).
  weights: None = libtorch (the fp32 reference); 'fp32', 'fp16', 'bf16', 'int8'
    or 'int4' = the SIMD decode path with weights converted to that format at
    load (fp32 agrees with libtorch within 1e-4; fewer bytes decode faster where
    memory bandwidth limits; int4 agrees measurably less).
  decode_threads: threads of the decode path (weights given), the calling one
    included; the session owns them.

Raises ValueError (bad split, exits, measure, thresholds), LookupError
(tandem.NotFoundError: no checkpoint, tokenizer or exit heads), RuntimeError.

Thread-safety: one generate at a time per session (a concurrent second call
raises RuntimeError); cancel() and stats may be used from any thread. The GIL is
released while generating, so other Python threads run.)doc")
      .def(py::init(&Create), py::arg("model_dir"), py::arg("split") = py::none(),
           py::arg("exits") = py::none(), py::arg("thresholds") = py::none(),
           py::arg("measure") = py::none(), py::arg("cloud") = py::none(),
           py::arg("fallback") = "deepest", py::arg("threads") = 0, py::arg("max_context") = 0,
           py::arg("allow_fresh_heads") = false, py::arg("weights") = py::none(),
           py::arg("decode_threads") = 1)
      .def("generate", &Generate, py::arg("prompt"), py::arg("max_new_tokens") = 64,
           py::arg("temperature") = 0.0f, py::arg("top_k") = 0, py::arg("top_p") = 1.0f,
           py::arg("seed") = 0, py::arg("stop") = py::none(), py::arg("stop_at_eos") = true,
           py::arg("add_special_tokens") = true, py::arg("on_token") = py::none(),
           py::arg("delivery") = "confirmed", py::arg("on_rollback") = py::none(),
           R"doc(Generates a continuation of `prompt`; returns a GenerationResult.

Args:
  prompt: text, or a list of token ids (then records carry no text and stop
    strings are ignored).
  max_new_tokens: at most this many tokens (the prompt is not counted).
  temperature: 0 = greedy (argmax); else softmax temperature of the deciding head.
  top_k: keep the k most likely tokens (0 = all). top_p: nucleus mass (1 = all).
  seed: sampling seed (same seed, same output).
  stop: a string or list of strings; generation stops when the text contains one
    (not included in the output).
  stop_at_eos: stop at the tokenizer's EOS (not included).
  add_special_tokens: add BOS etc. to a text prompt.
  on_token: called with each TokenRecord as it is decided, on this thread and
    with the GIL held; returning False stops generation (stop_reason 'callback').
    An exception it raises stops generation and propagates.
  delivery: collaborative mode, what on_token sees. 'confirmed' (default):
    only tokens whose fate is known (decided by an exit, verified by the cloud,
    or kept after verification failed), in order; under greedy decoding the text
    equals the blocking policy's (CloudOptions.max_in_flight=0). 'eager': every
    token as soon as it is decoded, drafts included (TokenRecord.provisional);
    when the cloud replaces a streamed draft, on_rollback gets a Rollback saying
    what to take back, then the replacement and what follows stream. Under greedy
    decoding the final text is the same in both. Standalone: no difference.
  on_rollback: called with each Rollback (eager only), on this thread with the
    GIL held, before the replacement token's on_token. An exception it raises
    stops generation at the next token and propagates.

Raises ValueError (empty prompt, prompt longer than the context, bad sampling
options, bad delivery), RuntimeError (another generate is running, libtorch failure),
KeyboardInterrupt (Ctrl-C; generation stops within one decode step).)doc")
      .def(
          "cancel", [](PyEdgeSession& self) { self.get().Cancel(); },
          "Asks the running generate (in another thread) to stop before its next decode\n"
          "step; it returns normally with stats.stop_reason == 'cancelled'.")
      .def_property_readonly(
          "stats",
          [](const PyEdgeSession& self) { return self.get().stats(); },
          "SessionStats: cumulative over this session's generate calls.")
      .def_property_readonly(
          "cloud_stats",
          [](const PyEdgeSession& self) -> std::optional<edge::CloudLinkStats> {
            const edge::CloudLink* link = self.get().cloud_link();
            if (link == nullptr) return std::nullopt;
            return link->stats();
          },
          "CloudLinkStats of the session's cloud link since it was created (None in\n"
          "standalone mode).")
      .def_property_readonly(
          "split", [](const PyEdgeSession& self) { return self.get().engine().split(); },
          "S: the edge holds layers [0, S).")
      .def_property_readonly(
          "exits", [](const PyEdgeSession& self) { return self.get().engine().exit_layers(); },
          "Exit layers E (ascending; the last is S).")
      .def_property_readonly(
          "thresholds",
          [](const PyEdgeSession& self) { return self.get().engine().policy().thresholds; },
          "{layer: threshold} in effect (inf = that exit never decides early).")
      .def_property_readonly(
          "measure",
          [](const PyEdgeSession& self) {
            return ConfidenceMeasureName(self.get().engine().policy().measure);
          },
          "The confidence measure: 'max_prob', 'margin' or 'neg_entropy'.")
      .def_property_readonly(
          "collaborative",
          [](const PyEdgeSession& self) { return self.get().cloud_link() != nullptr; })
      .def("close", &PyEdgeSession::Close,
           "Frees the model, KV cache and cloud link now (the session is unusable after).")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyEdgeSession& self, py::args) { self.Close(); });
}

}  // namespace tandem::python
