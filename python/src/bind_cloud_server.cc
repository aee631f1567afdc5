// tandem.CloudServer: an in-process tandem-cloud continuation server
// (cloud/include/tandem/cloud/server.h) as a context manager.
#include <cmath>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "numpy_convert.h"
#include "tandem/cloud/server.h"

namespace py = pybind11;

namespace tandem::python {
namespace {

class PyCloudServer {
 public:
  explicit PyCloudServer(std::unique_ptr<cloud::CloudServer> server)
      : server_(std::move(server)), address_(server_->address()), port_(server_->port()) {}
  ~PyCloudServer() {
    py::gil_scoped_release release;
    server_.reset();  // shuts down with no grace if still running
  }

  cloud::CloudServer& get() const {
    if (!server_) throw std::runtime_error("FailedPrecondition: the server was shut down");
    return *server_;
  }
  void Shutdown(double grace) {
    if (!(grace >= 0.0) || !std::isfinite(grace)) throw py::value_error("grace must be >= 0");
    if (!server_) return;
    std::unique_ptr<cloud::CloudServer> s = std::move(server_);
    py::gil_scoped_release release;
    s->Shutdown(absl::Seconds(grace));
    s.reset();
  }
  bool running() const { return server_ != nullptr; }
  const std::string& address() const { return address_; }
  int port() const { return port_; }

 private:
  std::unique_ptr<cloud::CloudServer> server_;
  std::string address_;
  int port_ = 0;
};

std::unique_ptr<PyCloudServer> Start(const std::string& model_dir, std::optional<int64_t> split,
                                     const std::string& host, int port, int64_t memory_budget,
                                     int64_t max_sessions, int64_t max_positions,
                                     double idle_ttl, int64_t max_batch_rows,
                                     const std::map<std::string, std::string>& api_keys,
                                     const std::string& tls_cert, const std::string& tls_key,
                                     bool token_resync, bool log) {
  if (port < 0 || port > 65535) throw py::value_error("port must be in [0, 65535]");
  if (!(idle_ttl >= 0.0) || !std::isfinite(idle_ttl)) {
    throw py::value_error("idle_ttl must be a finite number of seconds >= 0");
  }
  cloud::ServerOptions o;
  o.listen_address = host + ":" + std::to_string(port);
  o.model.model_dir = model_dir;
  if (split) {
    if (*split <= 0) throw py::value_error("split must be > 0 (None = exits.json's)");
    o.model.split = *split;
  }
  o.model.token_resync = token_resync;
  o.limits.memory_budget_bytes = memory_budget;
  o.limits.max_sessions = max_sessions;
  o.limits.max_positions = max_positions;
  o.limits.idle_ttl = idle_ttl > 0 ? absl::Seconds(idle_ttl) : absl::ZeroDuration();
  o.limits.max_batch_rows = max_batch_rows;
  // The file format is `identity key`; here the dict maps key -> identity as
  // ServerOptions does.
  o.api_keys = api_keys;
  o.tls_cert_file = tls_cert;
  o.tls_key_file = tls_key;
  if (log) o.log = &std::cerr;
  absl::StatusOr<std::unique_ptr<cloud::CloudServer>> s;
  {
    py::gil_scoped_release release;
    s = cloud::CloudServer::Start(o);
  }
  return std::make_unique<PyCloudServer>(ValueOrThrow(std::move(s)));
}

}  // namespace

void BindCloudServer(py::module_& m) {
  py::class_<cloud::ContextStats>(
      m, "ContextStats",
      "The cloud's session table: gauges (sessions, memory_bytes, queued_rows) and\n"
      "counters since start; compute_seconds is scheduler wall time in the model.")
      .def_readonly("sessions", &cloud::ContextStats::sessions)
      .def_readonly("memory_bytes", &cloud::ContextStats::memory_bytes)
      .def_readonly("queued_rows", &cloud::ContextStats::queued_rows)
      .def_readonly("opened", &cloud::ContextStats::opened)
      .def_readonly("closed", &cloud::ContextStats::closed)
      .def_readonly("evicted", &cloud::ContextStats::evicted)
      .def_readonly("expired", &cloud::ContextStats::expired)
      .def_readonly("failed", &cloud::ContextStats::failed)
      .def_readonly("rows_received", &cloud::ContextStats::rows_received)
      .def_readonly("rows_run", &cloud::ContextStats::rows_run)
      .def_readonly("tokens_served", &cloud::ContextStats::tokens_served)
      .def_readonly("batches", &cloud::ContextStats::batches)
      .def_readonly("compute_seconds", &cloud::ContextStats::compute_seconds);

  py::class_<cloud::ServerStats>(
      m, "ServerStats",
      "Counters of a CloudServer since it started (bytes are serialized gRPC messages);\n"
      "`context` holds the session table's (ContextStats).")
      .def_readonly("streams_opened", &cloud::ServerStats::streams_opened)
      .def_readonly("streams_active", &cloud::ServerStats::streams_active)
      .def_readonly("messages_in", &cloud::ServerStats::messages_in)
      .def_readonly("bytes_in", &cloud::ServerStats::bytes_in)
      .def_readonly("bytes_out", &cloud::ServerStats::bytes_out)
      .def_readonly("context_messages", &cloud::ServerStats::context_messages)
      .def_readonly("continue_requests", &cloud::ServerStats::continue_requests)
      .def_readonly("tokens_sent", &cloud::ServerStats::tokens_sent)
      .def_readonly("resyncs_sent", &cloud::ServerStats::resyncs_sent)
      .def_readonly("errors_sent", &cloud::ServerStats::errors_sent)
      .def_readonly("auth_failures", &cloud::ServerStats::auth_failures)
      .def_readonly("context", &cloud::ServerStats::context)
      .def("__repr__", [](const cloud::ServerStats& s) {
        return "ServerStats(streams_opened=" + std::to_string(s.streams_opened) +
               ", continue_requests=" + std::to_string(s.continue_requests) +
               ", tokens_sent=" + std::to_string(s.tokens_sent) +
               ", bytes_in=" + std::to_string(s.bytes_in) +
               ", bytes_out=" + std::to_string(s.bytes_out) + ")";
      });

  py::class_<PyCloudServer>(
      m, "CloudServer",
      R"doc(An in-process tandem-cloud continuation server, started at construction.

    with tandem.CloudServer("models/tandem-tiny") as cloud:
        edge = tandem.EdgeSession("models/tandem-tiny", cloud=cloud.address)

Loads the cloud's half of the checkpoint (layers [split, L), final norm, LM
head, and [0, split) unless token_resync=False) and serves gRPC on
host:port (port 0 picks a free one; see `address`). Serving runs on the
server's own threads, so the GIL is free while it serves.

Args:
  model_dir: the checkpoint directory (the edge's must have the same weights).
  split: S (None: exits.json's split or deepest exit); must match the edges'.
  host, port: where to listen. Use TLS (tls_cert + tls_key, PEM files) beyond
    loopback: hidden states can be inverted back to text.
  memory_budget: bytes of KV caches + queued rows over all sessions.
  max_sessions, max_positions (0 = the model's), idle_ttl (seconds; 0 = never
    expire), max_batch_rows: see ContextLimits in cloud/.../context_manager.h.
  api_keys: {key: identity}; when given, clients must send one.
  token_resync: also load [0, S) so edges can resync with token ids.
  log: structured JSON log lines on stderr.

Raises ValueError (bad options), LookupError (missing model or TLS files),
RuntimeError (the address cannot be bound: 'Unavailable: ...').
Thread-safety: every method may be called from any thread.)doc")
      .def(py::init(&Start), py::arg("model_dir"), py::arg("split") = py::none(),
           py::arg("host") = "127.0.0.1", py::arg("port") = 0,
           py::arg("memory_budget") = int64_t{1} << 30, py::arg("max_sessions") = 1024,
           py::arg("max_positions") = 0, py::arg("idle_ttl") = 600.0,
           py::arg("max_batch_rows") = 256,
           py::arg("api_keys") = std::map<std::string, std::string>(), py::arg("tls_cert") = "",
           py::arg("tls_key") = "", py::arg("token_resync") = true, py::arg("log") = false)
      .def_property_readonly("address", &PyCloudServer::address, "'host:port' to dial.")
      .def_property_readonly("port", &PyCloudServer::port, "The bound port.")
      .def_property_readonly("running", &PyCloudServer::running)
      .def(
          "stats", [](const PyCloudServer& self) { return self.get().stats(); },
          "ServerStats snapshot.")
      .def(
          "metrics_text", [](const PyCloudServer& self) { return self.get().MetricsText(); },
          "Prometheus text exposition of the stats (what the Stats RPC serves).")
      .def("shutdown", &PyCloudServer::Shutdown, py::arg("grace") = 1.0,
           "Refuses new sessions, answers queued requests for up to `grace` seconds, then\n"
           "closes every stream and stops. Idempotent. Edges carry on standalone.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyCloudServer& self, py::args) { self.Shutdown(1.0); })
      .def("__repr__", [](const PyCloudServer& self) {
        return "CloudServer(address='" + self.address() + "', running=" +
               (self.running() ? "True" : "False") + ")";
      });
}

}  // namespace tandem::python
