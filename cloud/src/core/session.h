// One cloud session's state (internal to the context manager). Every field is
// guarded by the SessionTable's mutex, except that while `in_flight` is true the
// scheduler thread alone uses `cache`, `prefix` and `sampler` (without the lock):
// nothing else touches them until the batch completes (Truncate waits for it;
// eviction and expiry skip sessions in flight; Close only marks the session dead).
#ifndef TANDEM_CLOUD_CORE_SESSION_H_
#define TANDEM_CLOUD_CORE_SESSION_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/time/time.h"
#include "core/rate_limiter.h"
#include "tandem/cloud/context_manager.h"
#include "tandem/kv_cache.h"
#include "tandem/sampling.h"

namespace tandem::cloud {

// Consecutive positions first .. first + rows - 1 waiting for layers [S, L):
// hidden states at S (AddContext, Continue), or token ids whose rows the
// scheduler first computes through [0, S) (AddTokens).
struct Chunk {
  int64_t first = 0;
  int64_t rows = 0;
  at::Tensor hidden;          // [rows, D] in the compute dtype; undefined for token ids
  std::vector<int32_t> ids;   // the token ids when `hidden` is undefined
  ContinueCallback done;      // set for a Continue (rows == 1): wants the next token
  std::optional<DraftToken> draft;          // a Continue's draft to verify
  std::optional<SamplingParams> sampling;   // a Continue's sampling override

  bool is_tokens() const { return !hidden.defined(); }
  bool is_continue() const { return static_cast<bool>(done); }
};

// Per identity (a session's owner): what its quotas count, and when the
// scheduler last served it (round-robin across identities).
struct OwnerState {
  int64_t sessions = 0;
  int64_t queued_rows = 0;   // waiting + in the running batch
  RowRateLimiter rate;
  uint64_t last_served = 0;  // SessionTable's iteration number
};

struct Session {
  Session(std::string id_in, std::string owner_in, OwnerState* owner_state_in,
          const SessionOptions& options, int64_t capacity_in)
      : id(std::move(id_in)),
        owner(std::move(owner_in)),
        owner_state(owner_state_in),
        capacity(capacity_in),
        return_logits(options.return_logits),
        sampler(options.sampling) {}

  const std::string id;
  const std::string owner;
  OwnerState* const owner_state;  // owned by the SessionTable, outlives the session
  const int64_t capacity;      // positions
  const bool return_logits;
  Sampler sampler;

  std::unique_ptr<KVCache> cache;   // layers [S, L); length == run_end
  // Layers [0, S) while the session is built from token ids (token-id resync):
  // allocated by the first AddTokens, freed once hidden-state context arrives
  // and every queued token chunk has run.
  std::unique_ptr<KVCache> prefix;

  std::deque<Chunk> queue;          // waiting: not taken by the scheduler yet
  int64_t run_end = 0;              // positions in `cache`
  int64_t next_position = 0;        // positions received: run + in flight + waiting
  int64_t token_end = 0;            // positions [0, token_end) arrived as token ids
  uint32_t branch = 0;              // speculation branch: +1 per rejected draft
  int64_t waiting_rows = 0;         // rows in `queue`
  int64_t waiting_continues = 0;    // Continue chunks in `queue`
  int64_t waiting_token_chunks = 0; // token chunks in `queue`
  int64_t flight_rows = 0;          // rows in the running batch
  int64_t flight_continues = 0;     // Continue chunks in the running batch
  bool in_flight = false;           // the scheduler is running this session's work
  bool in_ready = false;            // listed in SessionTable's ready queue
  uint64_t attachment = 0;          // the latest stream's token (ContextManager::Attach)
  bool dead = false;                // closed / evicted / expired / failed: not in the table
  int64_t bytes = 0;                // what the table accounts for it (SessionBytes)
  absl::Time last_activity;

  // The session may take more token ids: every position so far came as token ids
  // and their [0, S) cache still exists (or nothing is held yet).
  bool AcceptsTokens() const {
    return next_position == token_end && (next_position == 0 || prefix != nullptr);
  }
  // No Continue is waiting or running and the scheduler is not using it.
  bool Idle() const { return !in_flight && waiting_continues == 0 && flight_continues == 0; }
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_CORE_SESSION_H_
