#include "server/metrics.h"


#include <algorithm>
#include <utility>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tandem::cloud {

// ServerStats as metric families, built at each scrape so they are never stale
// and need no hook in the code that counts them.
class ServerMetrics::StatsCollectable : public prometheus::Collectable {
 public:
  explicit StatsCollectable(std::function<ServerStats()> stats) : stats_(std::move(stats)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    const ServerStats s = stats_();
    std::vector<prometheus::MetricFamily> out;
    auto add = [&out](const char* name, prometheus::MetricType type, const char* help,
                      double value) {
      prometheus::MetricFamily family;
      family.name = absl::StrCat("tandem_", name);
      family.help = help;
      family.type = type;
      prometheus::ClientMetric metric;
      if (type == prometheus::MetricType::Counter) {
        metric.counter.value = value;
      } else {
        metric.gauge.value = value;
      }
      family.metric.push_back(std::move(metric));
      out.push_back(std::move(family));
    };
    using T = prometheus::MetricType;
    add("sessions", T::Gauge, "sessions held", s.context.sessions);
    add("streams_active", T::Gauge, "open session streams", s.streams_active);
    add("memory_bytes", T::Gauge, "KV caches + queued rows (accounted bytes)",
        s.context.memory_bytes);
    add("queued_rows", T::Gauge, "uploaded rows not yet run", s.context.queued_rows);
    add("streams_opened_total", T::Counter, "session streams accepted", s.streams_opened);
    add("streams_refused_total", T::Counter, "session streams refused over the stream caps",
        s.streams_refused);
    add("streams_idle_ended_total", T::Counter,
        "session streams ended idle (no message, no Open, or session gone)",
        s.streams_idle_ended);
    add("sessions_evicted_total", T::Counter, "sessions evicted (memory, LRU)", s.context.evicted);
    add("sessions_expired_total", T::Counter, "sessions expired (idle TTL)", s.context.expired);
    add("tokens_served_total", T::Counter, "Continue answers", s.context.tokens_served);
    add("rows_received_total", T::Counter, "context rows accepted", s.context.rows_received);
    add("rows_run_total", T::Counter, "rows run through the cloud layers", s.context.rows_run);
    add("batches_total", T::Counter, "scheduler iterations", s.context.batches);
    add("compute_seconds_total", T::Counter, "scheduler time in the model",
        s.context.compute_seconds);
    add("bytes_in_total", T::Counter, "client message bytes", s.bytes_in);
    add("bytes_out_total", T::Counter, "server message bytes", s.bytes_out);
    add("resyncs_total", T::Counter, "ResyncRequired sent", s.resyncs_sent);
    add("errors_total", T::Counter, "Error messages sent", s.errors_sent);
    add("auth_failures_total", T::Counter, "calls refused for a bad API key", s.auth_failures);
    add("resident_bytes", T::Gauge, "the server process's resident memory (VmRSS)",
        s.resident_bytes);
    add("rows_abandoned_total", T::Counter,
        "queued rows dropped because their stream ended", s.context.abandoned_rows);
    add("continues_abandoned_total", T::Counter,
        "Continues cancelled because their stream ended", s.context.abandoned_continues);
    add("quota_refusals_total", T::Counter, "requests refused by a per-identity quota",
        s.context.quota_refusals);
    add("memory_trims_total", T::Counter, "freed heap returned to the system (malloc_trim)",
        s.context.memory_trims);
    add("going_away_total", T::Counter, "GoingAway messages sent (drain)", s.going_away_sent);
    add("drain_refusals_total", T::Counter, "Continues refused while draining",
        s.drain_refusals);
    add("cloud_only_active", T::Gauge, "cloud-only generations running", s.cloud_only_active);
    add("cloud_only_requests_total", T::Counter, "cloud-only generations admitted",
        s.cloud_only_requests);
    add("cloud_only_tokens_total", T::Counter, "tokens streamed in cloud-only mode",
        s.cloud_only_tokens);
    return out;
  }

 private:
  std::function<ServerStats()> stats_;
};

namespace {

// 0.5 ms .. 10 s: a decode step on the shipped model is a few ms; queueing
// under load reaches seconds.
prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10};
}

}  // namespace

ServerMetrics::ServerMetrics(std::function<ServerStats()> stats)
    : registry_(std::make_shared<prometheus::Registry>()),
      stats_(std::make_shared<StatsCollectable>(std::move(stats))) {
  compute_ = &prometheus::BuildHistogram()
                  .Name("tandem_token_compute_seconds")
                  .Help("wall time of the scheduler iteration that produced each served token "
                        "(shared by the tokens batched with it)")
                  .Register(*registry_)
                  .Add({}, LatencyBuckets());
  queue_wait_ = &prometheus::BuildHistogram()
                     .Name("tandem_queue_wait_seconds")
                     .Help("time a Continue waited before the iteration that answered it")
                     .Register(*registry_)
                     .Add({}, LatencyBuckets());
  latency_ = &prometheus::BuildHistogram()
                  .Name("tandem_continue_latency_seconds")
                  .Help("from a Continue's arrival to its token (queue wait + compute)")
                  .Register(*registry_)
                  .Add({}, LatencyBuckets());
  refusals_ = &prometheus::BuildCounter()
                   .Name("tandem_refusals_total")
                   .Help("calls and requests refused, by reason (status code)")
                   .Register(*registry_);
}

ServerMetrics::~ServerMetrics() {
  if (http_ != nullptr) http_->Stop();  // before the metrics it reads go away
}

absl::Status ServerMetrics::Serve(const std::string& address) {
  if (http_ != nullptr) return absl::FailedPreconditionError("metrics are already served");
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http =
      MetricsHttpServer::Start(address, [this] { return Text(); });
  if (!http.ok()) return http.status();
  http_ = std::move(*http);
  return absl::OkStatus();
}

int ServerMetrics::port() const { return http_ != nullptr ? http_->port() : 0; }

void ServerMetrics::ObserveToken(double compute_seconds, double latency_seconds) {
  compute_->Observe(compute_seconds);
  latency_->Observe(latency_seconds);
  queue_wait_->Observe(std::max(0.0, latency_seconds - compute_seconds));
}

void ServerMetrics::CountRefusal(absl::StatusCode code) {
  refusals_->Add({{"reason", absl::AsciiStrToLower(absl::StatusCodeToString(code))}}).Increment();
}

std::string ServerMetrics::Text() const {
  std::vector<prometheus::MetricFamily> families = stats_->Collect();
  std::vector<prometheus::MetricFamily> more = registry_->Collect();
  families.insert(families.end(), std::make_move_iterator(more.begin()),
                  std::make_move_iterator(more.end()));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace tandem::cloud
