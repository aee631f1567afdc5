// Plain value types the edge bindings hand to Python.
#ifndef TANDEM_PYTHON_EDGE_TYPES_H_
#define TANDEM_PYTHON_EDGE_TYPES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tandem/edge/edge_session.h"

namespace tandem::python {

// One streamed token as Python sees it (tandem.TokenRecord).
struct TokenRecord {
  int32_t id = 0;              // -1: a text-only record (held-back text at the end)
  std::string text;
  int64_t position = 0;
  std::string decided_by;      // "exit", "fallback", "cloud"; "text" when id == -1
  std::optional<int64_t> layer;  // deciding exit layer; None for the cloud and text records
  float confidence = 0.0f;     // deciding head's confidence; NaN for the cloud
  float probability = 0.0f;
  double seconds = 0.0;
  bool provisional = false;    // eager delivery: streamed before the cloud's verdict
  bool draft_accepted = false; // decided_by "cloud": the cloud confirmed the edge's draft
};

TokenRecord ToRecord(const edge::TokenInfo& info);

// An eager-delivery rollback as Python sees it (tandem.Rollback): what the
// C++ Rollback says plus the text taken back.
struct RollbackRecord {
  int64_t position = 0;
  int64_t tokens = 0;
  int64_t bytes = 0;
  std::string text;  // the last `bytes` bytes of the text streamed so far
};

// What EdgeSession.generate returns (tandem.GenerationResult).
struct GenerationResult {
  std::string text;
  std::vector<int32_t> ids;
  std::vector<TokenRecord> tokens;  // one per generated token that stands (no text-only records)
  std::vector<RollbackRecord> rollbacks;  // eager delivery, in order
  edge::GenerationSummary stats;
};

}  // namespace tandem::python

#endif  // TANDEM_PYTHON_EDGE_TYPES_H_
