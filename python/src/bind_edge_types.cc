// Python views of the edge SDK's value types: CloudOptions (read-write), the
// per-token record, per-call and per-session statistics and the cloud link's
// counters (read-only snapshots, safe to keep after the session is gone).
#include <cmath>
#include <string>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "edge_types.h"
#include "numpy_convert.h"
#include "tandem/edge/cloud_link.h"
#include "tandem/edge/cloud_options.h"

namespace py = pybind11;

namespace tandem::python {
namespace {

absl::Duration Seconds(double s) {
  if (!(s >= 0.0) || !std::isfinite(s)) {
    throw py::value_error("a duration must be a finite number of seconds >= 0");
  }
  return absl::Seconds(s);
}

edge::ResyncPolicy ParseResync(const std::string& name) {
  if (name == "auto") return edge::ResyncPolicy::kAuto;
  if (name == "hidden_states") return edge::ResyncPolicy::kHiddenStates;
  if (name == "token_ids") return edge::ResyncPolicy::kTokenIds;
  throw py::value_error("resync must be 'auto', 'hidden_states' or 'token_ids', got '" + name +
                        "'");
}

std::string Str(const py::object& o) { return py::repr(o).cast<std::string>(); }

}  // namespace

TokenRecord ToRecord(const edge::TokenInfo& info) {
  TokenRecord r;
  r.id = info.id;
  r.text = info.text;
  r.position = info.position;
  r.probability = info.probability;
  r.seconds = info.seconds;
  r.confidence = info.confidence;
  r.provisional = info.provisional;
  r.draft_accepted = info.draft_accepted;
  if (info.id < 0) {
    r.decided_by = "text";
    r.confidence = std::nanf("");
  } else {
    r.decided_by = edge::TokenSourceName(info.source);
    if (info.source != edge::TokenSource::kCloud) r.layer = info.exit_layer;
  }
  return r;
}

void BindEdgeTypes(py::module_& m) {
  py::class_<edge::CloudOptions>(
      m, "CloudOptions",
      "How an EdgeSession reaches a tandem-cloud server (collaborative mode).\n\n"
      "Durations are float seconds. See edge/include/tandem/edge/cloud_options.h for\n"
      "each field's trade-off.\n\n"
      "Pipelined speculative verification: when no exit is confident the edge drafts\n"
      "the token from its fallback exit, sends it for verification and decodes on\n"
      "top of it without waiting.\n"
      "max_in_flight: drafts awaiting a verdict at once, in [0, 4096]; 0 = the\n"
      "    blocking policy (wait for every verdict). To hide a round trip it must\n"
      "    cover RTT / (edge seconds per token) drafts.\n"
      "adaptive_depth: halve the window at each rollback, grow it by one at each\n"
      "    accepted draft, between min_in_flight (in [1, 4096]) and max_in_flight.\n"
      "draft_top_k: under sampling, the draft distribution is cut to this many\n"
      "    tokens (in [1, 64]) and sent with the draft (8 bytes a token) so the cloud\n"
      "    can apply the speculative sampling rule.\n"
      "Out-of-range values raise ValueError when the EdgeSession is created.")
      .def(py::init([](const std::string& address, const std::string& codec,
                       double request_timeout, double connect_timeout, const std::string& resync,
                       int64_t upload_batch_rows, double upload_max_delay,
                       const std::string& api_key, const std::string& tls_root_certs_file,
                       const std::string& tls_server_name, int64_t max_message_bytes,
                       int32_t max_in_flight, bool adaptive_depth, int32_t min_in_flight,
                       int32_t draft_top_k) {
             edge::CloudOptions o;
             o.address = address;
             o.codec = codec;
             o.request_timeout = Seconds(request_timeout);
             o.connect_timeout = Seconds(connect_timeout);
             o.resync = ParseResync(resync);
             o.upload_batch_rows = upload_batch_rows;
             o.upload_max_delay = Seconds(upload_max_delay);
             o.api_key = api_key;
             o.tls_root_certs_file = tls_root_certs_file;
             o.tls_server_name = tls_server_name;
             o.max_message_bytes = max_message_bytes;
             o.max_in_flight = max_in_flight;
             o.adaptive_depth = adaptive_depth;
             o.min_in_flight = min_in_flight;
             o.draft_top_k = draft_top_k;
             return o;
           }),
           py::arg("address") = "", py::arg("codec") = "int8", py::arg("request_timeout") = 1.0,
           py::arg("connect_timeout") = 2.0, py::arg("resync") = "auto",
           py::arg("upload_batch_rows") = 16, py::arg("upload_max_delay") = 0.02,
           py::arg("api_key") = "", py::arg("tls_root_certs_file") = "",
           py::arg("tls_server_name") = "", py::arg("max_message_bytes") = 4 << 20,
           py::arg("max_in_flight") = edge::CloudOptions().max_in_flight,
           py::arg("adaptive_depth") = edge::CloudOptions().adaptive_depth,
           py::arg("min_in_flight") = edge::CloudOptions().min_in_flight,
           py::arg("draft_top_k") = edge::CloudOptions().draft_top_k)
      .def_readwrite("address", &edge::CloudOptions::address, "host:port; empty = standalone")
      .def_readwrite("codec", &edge::CloudOptions::codec,
                     "hidden-state codec on the wire, e.g. 'int8', 'int4-g64+zstd'")
      .def_property(
          "request_timeout",
          [](const edge::CloudOptions& o) { return absl::ToDoubleSeconds(o.request_timeout); },
          [](edge::CloudOptions& o, double s) { o.request_timeout = Seconds(s); },
          "seconds a token may wait for the cloud before the edge decides it")
      .def_property(
          "connect_timeout",
          [](const edge::CloudOptions& o) { return absl::ToDoubleSeconds(o.connect_timeout); },
          [](edge::CloudOptions& o, double s) { o.connect_timeout = Seconds(s); })
      .def_property(
          "resync", [](const edge::CloudOptions& o) { return edge::ResyncPolicyName(o.resync); },
          [](edge::CloudOptions& o, const std::string& s) { o.resync = ParseResync(s); })
      .def_readwrite("upload_batch_rows", &edge::CloudOptions::upload_batch_rows)
      .def_property(
          "upload_max_delay",
          [](const edge::CloudOptions& o) { return absl::ToDoubleSeconds(o.upload_max_delay); },
          [](edge::CloudOptions& o, double s) { o.upload_max_delay = Seconds(s); })
      .def_readwrite("api_key", &edge::CloudOptions::api_key)
      .def_readwrite("tls_root_certs_file", &edge::CloudOptions::tls_root_certs_file)
      .def_readwrite("tls_server_name", &edge::CloudOptions::tls_server_name)
      .def_readwrite("max_message_bytes", &edge::CloudOptions::max_message_bytes)
      .def_readwrite("max_in_flight", &edge::CloudOptions::max_in_flight,
                     "drafts awaiting a verdict at once; 0 = blocking")
      .def_readwrite("adaptive_depth", &edge::CloudOptions::adaptive_depth,
                     "adapt the window between min_in_flight and max_in_flight (AIMD)")
      .def_readwrite("min_in_flight", &edge::CloudOptions::min_in_flight)
      .def_readwrite("draft_top_k", &edge::CloudOptions::draft_top_k,
                     "tokens of the draft distribution sent under sampling")
      .def("__repr__", [](const edge::CloudOptions& o) {
        return "CloudOptions(address=" + Str(py::str(o.address)) +
               ", codec=" + Str(py::str(o.codec)) +
               ", max_in_flight=" + std::to_string(o.max_in_flight) + ")";
      });

  py::class_<TokenRecord>(
      m, "TokenRecord",
      "One generated token.\n\n"
      "id: token id (-1 for a final text-only record carrying held-back text, which\n"
      "    EdgeSession.stream yields but GenerationResult.tokens omits).\n"
      "text: text that became final with this token (may be empty).\n"
      "position: position of the token in the sequence (prompt starts at 0).\n"
      "decided_by: 'exit' (an exit head was confident), 'fallback' (no exit was and\n"
      "    the edge decided alone), 'cloud' (the cloud's continuation), 'text'.\n"
      "layer: the deciding exit layer (None for the cloud).\n"
      "confidence: the deciding head's confidence on the session's measure (NaN for\n"
      "    the cloud). probability: probability of `id` under that head.\n"
      "seconds: wall time of the decode step that produced it.\n"
      "provisional: streamed before the cloud's verdict (delivery='eager' only): a\n"
      "    draft of the fallback exit that a later Rollback may take back; it stays\n"
      "    True on a record whose draft was confirmed afterwards.\n"
      "draft_accepted: decided_by 'cloud' and the cloud confirmed the edge's draft\n"
      "    (False: the cloud replaced it, or the token was not the cloud's).")
      .def_readonly("id", &TokenRecord::id)
      .def_property_readonly("text", [](const TokenRecord& r) { return Utf8(r.text); })
      .def_readonly("position", &TokenRecord::position)
      .def_readonly("decided_by", &TokenRecord::decided_by)
      .def_readonly("layer", &TokenRecord::layer)
      .def_readonly("confidence", &TokenRecord::confidence)
      .def_readonly("probability", &TokenRecord::probability)
      .def_readonly("seconds", &TokenRecord::seconds)
      .def_readonly("provisional", &TokenRecord::provisional)
      .def_readonly("draft_accepted", &TokenRecord::draft_accepted)
      .def("__repr__", [](const TokenRecord& r) {
        return "TokenRecord(id=" + std::to_string(r.id) + ", text=" + Str(Utf8(r.text)) +
               ", decided_by='" + r.decided_by + "', layer=" +
               (r.layer ? std::to_string(*r.layer) : std::string("None")) +
               ", confidence=" + Str(py::float_(r.confidence)) +
               (r.provisional ? ", provisional=True" : "") + ")";
      });

  py::class_<RollbackRecord>(
      m, "Rollback",
      "delivery='eager': the cloud replaced a draft that was already streamed, so\n"
      "the stream takes back its tail; the replacement and what follows stream next.\n\n"
      "position: position of the first token taken back (the replaced draft's).\n"
      "tokens: streamed TokenRecords taken back (the last `tokens` ones).\n"
      "bytes: UTF-8 bytes of streamed text taken back, from the end.\n"
      "text: the text taken back (the last `bytes` bytes streamed); a UI removes\n"
      "    len(text) characters.")
      .def_readonly("position", &RollbackRecord::position)
      .def_readonly("tokens", &RollbackRecord::tokens)
      .def_readonly("bytes", &RollbackRecord::bytes)
      .def_property_readonly("text", [](const RollbackRecord& r) { return Utf8(r.text); })
      .def("__repr__", [](const RollbackRecord& r) {
        return "Rollback(position=" + std::to_string(r.position) +
               ", tokens=" + std::to_string(r.tokens) + ", text=" + Str(Utf8(r.text)) + ")";
      });

  py::class_<edge::SpeculationStats>(
      m, "SpeculationStats",
      "Pipelined verification over one generate call (collaborative mode; zeros in\n"
      "standalone mode).\n\n"
      "drafts: tokens submitted to the cloud for verification.\n"
      "accepted / rejected: drafts the cloud confirmed / replaced (each rejection is\n"
      "    one rollback of the sequence). unverified: drafts kept without a verdict\n"
      "    (deadline, link down). Drafts a rollback discarded get no verdict, so\n"
      "    accepted + rejected + unverified <= drafts.\n"
      "rolled_back: tokens a rollback dropped (the replaced drafts and what was\n"
      "    decoded on top of them); wasted_steps: decode steps whose work was\n"
      "    discarded (rolled_back - rejected).\n"
      "wait_seconds: wall time the decode thread blocked waiting for verdicts.\n"
      "mean_in_flight: drafts awaiting a verdict, averaged over decode steps.\n"
      "final_window: the adaptive window's limit at the end.")
      .def_readonly("drafts", &edge::SpeculationStats::drafts)
      .def_readonly("accepted", &edge::SpeculationStats::accepted)
      .def_readonly("rejected", &edge::SpeculationStats::rejected)
      .def_readonly("unverified", &edge::SpeculationStats::unverified)
      .def_readonly("rolled_back", &edge::SpeculationStats::rolled_back)
      .def_readonly("wasted_steps", &edge::SpeculationStats::wasted_steps)
      .def_readonly("wait_seconds", &edge::SpeculationStats::wait_seconds)
      .def_readonly("mean_in_flight", &edge::SpeculationStats::mean_in_flight)
      .def_readonly("final_window", &edge::SpeculationStats::final_window)
      .def("__repr__", [](const edge::SpeculationStats& s) {
        return "SpeculationStats(drafts=" + std::to_string(s.drafts) +
               ", accepted=" + std::to_string(s.accepted) +
               ", rejected=" + std::to_string(s.rejected) +
               ", unverified=" + std::to_string(s.unverified) +
               ", rolled_back=" + std::to_string(s.rolled_back) +
               ", mean_in_flight=" + Str(py::float_(s.mean_in_flight)) + ")";
      });

  py::class_<edge::CloudLinkStats>(
      m, "CloudLinkStats",
      "What the cloud link did (collaborative mode). Bytes are serialized gRPC\n"
      "messages; seconds are wall time.")
      .def_readonly("bytes_up", &edge::CloudLinkStats::bytes_up)
      .def_readonly("bytes_down", &edge::CloudLinkStats::bytes_down)
      .def_readonly("context_bytes", &edge::CloudLinkStats::context_bytes)
      .def_readonly("continue_bytes", &edge::CloudLinkStats::continue_bytes)
      .def_readonly("context_rows", &edge::CloudLinkStats::context_rows)
      .def_readonly("requests", &edge::CloudLinkStats::requests)
      .def_readonly("cloud_tokens", &edge::CloudLinkStats::cloud_tokens)
      .def_readonly("failed_requests", &edge::CloudLinkStats::failed_requests)
      .def_readonly("connects", &edge::CloudLinkStats::connects)
      .def_readonly("connect_failures", &edge::CloudLinkStats::connect_failures)
      .def_readonly("resyncs", &edge::CloudLinkStats::resyncs)
      .def_readonly("resync_token_positions", &edge::CloudLinkStats::resync_token_positions)
      .def_readonly("resync_hidden_positions", &edge::CloudLinkStats::resync_hidden_positions)
      .def_readonly("request_seconds", &edge::CloudLinkStats::request_seconds)
      .def_readonly("cloud_compute_seconds", &edge::CloudLinkStats::cloud_compute_seconds)
      .def_readonly("last_error", &edge::CloudLinkStats::last_error)
      .def("__repr__", [](const edge::CloudLinkStats& s) {
        return "CloudLinkStats(requests=" + std::to_string(s.requests) +
               ", cloud_tokens=" + std::to_string(s.cloud_tokens) +
               ", failed_requests=" + std::to_string(s.failed_requests) +
               ", bytes_up=" + std::to_string(s.bytes_up) +
               ", bytes_down=" + std::to_string(s.bytes_down) + ")";
      });

  py::class_<edge::GenerationSummary>(
      m, "GenerationStats",
      "Statistics of one generate call. Token counts: exit_tokens {layer: n} (an exit\n"
      "was confident), fallback_tokens {layer: n}, cloud_tokens; they sum to\n"
      "generated_tokens. Seconds are wall time; bytes_to_sink are raw fp32 bytes of\n"
      "hidden states at the split handed to the context uploader. cloud:\n"
      "CloudLinkStats of this call; speculation: SpeculationStats.\n"
      "With delivery='eager', tokens are counted by how they were decided when\n"
      "streamed (a draft confirmed later stays a 'fallback' token) and rolled-back\n"
      "tokens are not counted.")
      .def_readonly("prompt_tokens", &edge::GenerationSummary::prompt_tokens)
      .def_readonly("generated_tokens", &edge::GenerationSummary::generated_tokens)
      .def_property_readonly("stop_reason",
                             [](const edge::GenerationSummary& s) {
                               return edge::StopReasonName(s.stop_reason);
                             })
      .def_property_readonly("exit_tokens",
                             [](const edge::GenerationSummary& s) { return s.counts.exited; })
      .def_property_readonly("fallback_tokens",
                             [](const edge::GenerationSummary& s) { return s.counts.fallback; })
      .def_property_readonly("cloud_tokens",
                             [](const edge::GenerationSummary& s) { return s.counts.cloud; })
      .def_property_readonly(
          "edge_tokens",
          [](const edge::GenerationSummary& s) { return s.counts.total() - s.counts.cloud; })
      .def_readonly("prefill_seconds", &edge::GenerationSummary::prefill_seconds)
      .def_readonly("decode_seconds", &edge::GenerationSummary::decode_seconds)
      .def_readonly("total_seconds", &edge::GenerationSummary::total_seconds)
      .def_readonly("bytes_to_sink", &edge::GenerationSummary::bytes_to_sink)
      .def_readonly("cloud", &edge::GenerationSummary::cloud)
      .def_readonly("speculation", &edge::GenerationSummary::speculation)
      .def("__repr__", [](const edge::GenerationSummary& s) {
        return std::string("GenerationStats(generated_tokens=") +
               std::to_string(s.generated_tokens) + ", stop_reason='" +
               edge::StopReasonName(s.stop_reason) + "', exit_tokens=" +
               Str(py::cast(s.counts.exited)) + ", fallback_tokens=" +
               Str(py::cast(s.counts.fallback)) + ", cloud_tokens=" +
               std::to_string(s.counts.cloud) + ", total_seconds=" +
               Str(py::float_(s.total_seconds)) + ")";
      });

  py::class_<edge::SessionStats>(
      m, "SessionStats",
      "Cumulative over a session's generate calls; seconds are wall time.\n"
      "mean_confidence: deciding layer -> mean confidence of the tokens it decided.")
      .def_readonly("generations", &edge::SessionStats::generations)
      .def_readonly("prompt_tokens", &edge::SessionStats::prompt_tokens)
      .def_readonly("generated_tokens", &edge::SessionStats::generated_tokens)
      .def_property_readonly("exit_tokens",
                             [](const edge::SessionStats& s) { return s.counts.exited; })
      .def_property_readonly("fallback_tokens",
                             [](const edge::SessionStats& s) { return s.counts.fallback; })
      .def_property_readonly("cloud_tokens",
                             [](const edge::SessionStats& s) { return s.counts.cloud; })
      .def_property_readonly("mean_confidence",
                             [](const edge::SessionStats& s) {
                               std::map<int64_t, double> mean;
                               for (const auto& [layer, sum] : s.confidence_sum) {
                                 int64_t n = 0;
                                 if (auto it = s.counts.exited.find(layer);
                                     it != s.counts.exited.end()) {
                                   n += it->second;
                                 }
                                 if (auto it = s.counts.fallback.find(layer);
                                     it != s.counts.fallback.end()) {
                                   n += it->second;
                                 }
                                 if (n > 0) mean[layer] = sum / n;
                               }
                               return mean;
                             })
      .def_readonly("prefill_seconds", &edge::SessionStats::prefill_seconds)
      .def_readonly("decode_seconds", &edge::SessionStats::decode_seconds)
      .def_readonly("decode_steps", &edge::SessionStats::decode_steps)
      .def_property_readonly("seconds_per_token", &edge::SessionStats::seconds_per_token)
      .def_readonly("bytes_to_sink", &edge::SessionStats::bytes_to_sink)
      .def("__repr__", [](const edge::SessionStats& s) {
        return "SessionStats(generations=" + std::to_string(s.generations) +
               ", generated_tokens=" + std::to_string(s.generated_tokens) +
               ", cloud_tokens=" + std::to_string(s.counts.cloud) + ")";
      });

  py::class_<GenerationResult>(
      m, "GenerationResult",
      "What EdgeSession.generate returns: text (exactly the concatenation of the\n"
      "streamed text, less what rollbacks took back), ids (generated ids, EOS\n"
      "excluded), tokens (a TokenRecord per generated token that stands: a rollback\n"
      "removes the records it takes back), rollbacks (the Rollback records of\n"
      "delivery='eager', in order; empty otherwise) and stats (GenerationStats).")
      .def_property_readonly("text", [](const GenerationResult& r) { return Utf8(r.text); })
      .def_readonly("ids", &GenerationResult::ids)
      .def_readonly("tokens", &GenerationResult::tokens)
      .def_readonly("rollbacks", &GenerationResult::rollbacks)
      .def_readonly("stats", &GenerationResult::stats)
      .def("__repr__", [](const GenerationResult& r) {
        return "GenerationResult(text=" + Str(Utf8(r.text)) + ", tokens=" +
               std::to_string(r.tokens.size()) + ")";
      });
}

}  // namespace tandem::python
