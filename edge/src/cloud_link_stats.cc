#include "tandem/edge/cloud_link_stats.h"

namespace tandem::edge {

CloudLinkStats operator-(const CloudLinkStats& a, const CloudLinkStats& b) {
  CloudLinkStats d;
  d.bytes_up = a.bytes_up - b.bytes_up;
  d.bytes_down = a.bytes_down - b.bytes_down;
  d.context_bytes = a.context_bytes - b.context_bytes;
  d.continue_bytes = a.continue_bytes - b.continue_bytes;
  d.context_rows = a.context_rows - b.context_rows;
  d.requests = a.requests - b.requests;
  d.cloud_tokens = a.cloud_tokens - b.cloud_tokens;
  d.drafts_accepted = a.drafts_accepted - b.drafts_accepted;
  d.drafts_rejected = a.drafts_rejected - b.drafts_rejected;
  d.failed_requests = a.failed_requests - b.failed_requests;
  d.abandoned_requests = a.abandoned_requests - b.abandoned_requests;
  d.connects = a.connects - b.connects;
  d.connect_failures = a.connect_failures - b.connect_failures;
  d.resyncs = a.resyncs - b.resyncs;
  d.resync_token_positions = a.resync_token_positions - b.resync_token_positions;
  d.resync_hidden_positions = a.resync_hidden_positions - b.resync_hidden_positions;
  d.late_rejections = a.late_rejections - b.late_rejections;
  d.request_seconds = a.request_seconds - b.request_seconds;
  d.cloud_compute_seconds = a.cloud_compute_seconds - b.cloud_compute_seconds;
  d.last_error = a.last_error == b.last_error ? "" : a.last_error;
  return d;
}

}  // namespace tandem::edge
