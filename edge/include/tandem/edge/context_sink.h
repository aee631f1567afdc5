// ContextSink: where the edge hands every token's hidden state at the split S
// (DESIGN.md, "One decode step on the edge", step 4). The cloud context uploader
// implements it and streams the rows to the cloud in the background; tests use
// RecordingSink.
//
// Contract:
//  - Rows arrive in position order with no gaps and no repeats within one
//    sequence: the first call after OnBegin() starts at position 0 (the prompt),
//    each later call starts where the previous one ended.
//  - A token that exited early at e < S reaches S one step later (deferred exact
//    KV), so its row comes with the next step's rows; a row may also come later
//    than the token it belongs to was shown to the user.
//  - In collaborative mode the row of a position that needs the cloud is handed
//    over *before* the continuation request for it is made.
//
// Threads: every method is called on the thread that runs the decode step (the
// caller of EdgeSession::Generate / EdgeSequence::Start, Step, Flush), inside
// that step — implementations should only copy or enqueue, never block on I/O.
#ifndef TANDEM_EDGE_CONTEXT_SINK_H_
#define TANDEM_EDGE_CONTEXT_SINK_H_

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/types/span.h"
#include "tandem/sampling.h"

namespace tandem::edge {

// What a sink learns when a sequence begins.
struct SequenceInfo {
  SamplingParams sampling;  // how the sequence's tokens are sampled
  int64_t capacity = 0;     // positions the sequence may reach
};

class ContextSink {
 public:
  virtual ~ContextSink() = default;

  // A new sequence begins at position 0: whatever the sink held for the
  // previous one is obsolete (the cloud must drop its context).
  virtual void OnBegin(const SequenceInfo& info) { (void)info; }

  // The token ids fed into the sequence at first_position, ... (the prompt at
  // Start, then one id per Step), before their rows are computed. Ids arrive
  // in order with no gaps; a sink that can resync by token ids keeps them.
  virtual void OnInput(int64_t first_position, absl::Span<const int32_t> ids) {
    (void)first_position;
    (void)ids;
  }

  // `hidden_at_split` is [N, D] (the model's compute dtype): the hidden states at
  // the split of positions first_position .. first_position + N - 1. The tensor
  // is borrowed for the duration of the call only — copy what must be kept.
  virtual void OnContext(int64_t first_position, const at::Tensor& hidden_at_split) = 0;

  // The edge rolled back (a rejected draft, DESIGN.md step 3): every position
  // >= `position` is forgotten — ids and rows alike — and the next OnInput /
  // OnContext continue at `position`. Default: nothing.
  virtual void OnTruncate(int64_t position) { (void)position; }

  // The sequence ended (generation finished, stopped or cancelled). Positions
  // >= `next_position` were never handed over (the last emitted token is not fed
  // back, and a row still deferred at an early exit stays on the edge unless
  // EdgeSequence::Flush ran). Default: nothing.
  virtual void OnFinish(int64_t next_position) { (void)next_position; }
};

// Keeps a copy of every row it is handed, for tests and debugging.
// Thread-compatible: read it only when no decode step is running.
class RecordingSink : public ContextSink {
 public:
  void OnBegin(const SequenceInfo& info) override;
  void OnContext(int64_t first_position, const at::Tensor& hidden_at_split) override;
  void OnTruncate(int64_t position) override;
  void OnFinish(int64_t next_position) override;

  // Rows received since the last OnBegin, concatenated: [positions, D], fp32.
  // Undefined when nothing arrived.
  at::Tensor Rows() const;
  // First position of every OnContext call since the last OnBegin, and its rows.
  const std::vector<int64_t>& first_positions() const { return first_positions_; }
  const std::vector<int64_t>& row_counts() const { return row_counts_; }
  int64_t begins() const { return begins_; }
  int64_t truncations() const { return truncations_; }
  int64_t finishes() const { return finishes_; }
  // Position the next row is expected at (rows received since OnBegin).
  int64_t next_position() const { return next_position_; }
  // True when every call so far continued exactly where the previous ended.
  bool in_order() const { return in_order_; }

 private:
  std::vector<at::Tensor> chunks_;
  std::vector<int64_t> first_positions_;
  std::vector<int64_t> row_counts_;
  int64_t begins_ = 0;
  int64_t truncations_ = 0;
  int64_t finishes_ = 0;
  int64_t next_position_ = 0;
  bool in_order_ = true;
};

}  // namespace tandem::edge

#endif  // TANDEM_EDGE_CONTEXT_SINK_H_
