// CloudLinkStats: what the edge's cloud link did (counters since it was
// created; EdgeSession reports the difference over one Generate).
#ifndef TANDEM_EDGE_CLOUD_LINK_STATS_H_
#define TANDEM_EDGE_CLOUD_LINK_STATS_H_

#include <cstdint>
#include <string>

namespace tandem::edge {

struct CloudLinkStats {
  int64_t bytes_up = 0;             // serialized messages sent
  int64_t bytes_down = 0;           // serialized messages received
  int64_t context_bytes = 0;        // of bytes_up: Context messages
  int64_t continue_bytes = 0;       // of bytes_up: Continue messages
  int64_t context_rows = 0;         // positions uploaded in Context messages
  int64_t requests = 0;             // drafts submitted for verification
  int64_t cloud_tokens = 0;         // verdicts the cloud gave in time
  int64_t drafts_accepted = 0;      // of cloud_tokens: the edge's draft stood
  int64_t drafts_rejected = 0;      // of cloud_tokens: the cloud's token replaced it
  int64_t failed_requests = 0;      // no verdict in time: errors, deadline, link down
  int64_t abandoned_requests = 0;   // rolled back by the edge before their verdict
  int64_t connects = 0;             // streams opened successfully
  int64_t connect_failures = 0;
  int64_t resyncs = 0;              // ResyncRequired handled
  int64_t resync_token_positions = 0;   // positions replayed as token ids
  int64_t resync_hidden_positions = 0;  // positions replayed as hidden states
  int64_t late_rejections = 0;      // rejections after the edge kept its draft: rows re-sent
  double request_seconds = 0.0;     // sum over verdicts given in time, submit to verdict
  double cloud_compute_seconds = 0.0;  // sum of the cloud's reported compute time
  std::string last_error;           // why the latest failed request failed

  // a - b, field by field (last_error: a's if it changed).
  friend CloudLinkStats operator-(const CloudLinkStats& a, const CloudLinkStats& b);
};

}  // namespace tandem::edge

#endif  // TANDEM_EDGE_CLOUD_LINK_STATS_H_
