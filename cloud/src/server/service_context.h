// What every stream handler of one server shares: the model, the context
// manager, the options, the counters and the log. Owned by CloudServer::Impl.
#ifndef TANDEM_CLOUD_SERVER_SERVICE_CONTEXT_H_
#define TANDEM_CLOUD_SERVER_SERVICE_CONTEXT_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "server/api_keys.h"
#include "server/metrics.h"
#include "server/structured_log.h"
#include "tandem/cloud/cloud_model.h"
#include "tandem/cloud/context_manager.h"
#include "tandem/cloud/server.h"

namespace tandem::cloud {

struct ServerCounters {
  std::atomic<int64_t> streams_opened{0};
  std::atomic<int64_t> streams_active{0};
  std::atomic<int64_t> messages_in{0};
  std::atomic<int64_t> bytes_in{0};
  std::atomic<int64_t> bytes_out{0};
  std::atomic<int64_t> context_messages{0};
  std::atomic<int64_t> continue_requests{0};
  std::atomic<int64_t> tokens_sent{0};
  std::atomic<int64_t> resyncs_sent{0};
  std::atomic<int64_t> errors_sent{0};
  std::atomic<int64_t> auth_failures{0};
  std::atomic<int64_t> streams_refused{0};     // over the stream caps
  std::atomic<int64_t> streams_idle_ended{0};  // ended by the reaper (idle, no Open, session gone)
  // Cloud-only mode (Continuation.Generate, server/cloud_only.h).
  std::atomic<int64_t> cloud_only_requests{0};
  std::atomic<int64_t> cloud_only_tokens{0};
  std::atomic<int64_t> cloud_only_active{0};          // gauge
  std::atomic<int64_t> cloud_only_reserved_bytes{0};  // gauge: their KV caches
  // Streams ended with a drain: GoingAway sent, Continues refused while draining.
  std::atomic<int64_t> going_away_sent{0};
  std::atomic<int64_t> drain_refusals{0};
};

struct ServiceContext {
  std::shared_ptr<const CloudModel> model;
  std::unique_ptr<ContextManager> contexts;
  ServerOptions options;
  std::unique_ptr<ApiKeyStore> keys;
  std::unique_ptr<ServerMetrics> metrics;  // may be null (tests, fuzzing)
  ServerCounters counters;
  StructuredLog log{nullptr};
  std::atomic<bool> draining{false};

  explicit ServiceContext(std::ostream* log_stream) : log(log_stream) {}

  void CountRefusal(absl::StatusCode code) {
    if (metrics != nullptr) metrics->CountRefusal(code);
  }
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_SERVER_SERVICE_CONTEXT_H_
