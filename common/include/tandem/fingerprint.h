// SplitFingerprint: the identity an edge and a cloud compare before they
// collaborate (DESIGN.md, "On the wire"). Two halves may work together only if
// they run the same network split at the same layer; the fingerprint hashes
//   - the architecture (ModelConfig::Fingerprint),
//   - the split S,
//   - the trained values of the final norm, which both halves load (so two
//     checkpoints of one architecture — base vs fine-tuned — refuse each other).
// Exit heads are not included: they only decide on the edge whether to ask; the
// cloud's answer does not depend on them.
//
// Stable across platforms and dtypes that preserve the norm's fp32 values
// (fp32, and fp16/bf16 files loaded into either compute dtype hash the same as
// long as both sides loaded the same file). Changing the scheme is a wire change.
#ifndef TANDEM_FINGERPRINT_H_
#define TANDEM_FINGERPRINT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "tandem/model.h"

namespace tandem {

// FailedPrecondition when `model` did not load its final norm.
absl::StatusOr<uint64_t> SplitFingerprint(const Model& model, int64_t split);

// 16 lowercase hex digits, for logs and error messages.
std::string FingerprintHex(uint64_t fingerprint);

}  // namespace tandem

#endif  // TANDEM_FINGERPRINT_H_
