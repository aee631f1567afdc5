// Speculative verification: deciding whether a provisional (draft) token that
// a cheaper model proposed can stand for a token of the full model.
//
// The rule is speculative sampling (Leviathan, Kalman, Matias 2023, "Fast
// Inference from Transformers via Speculative Decoding", Algorithm 1; Chen et
// al. 2023, "Accelerating Large Language Model Decoding with Speculative
// Sampling"): with p the full model's distribution and q the draft's, a draft
// x ~ q is accepted with probability min(1, p(x) / q(x)); otherwise the token is
// drawn from the residual normalize(max(0, p - q)). Whatever q is, the returned
// token is distributed exactly as p. Under greedy decoding (p one-hot at the
// argmax, q one-hot at x) it reduces to "accept iff x is the argmax, otherwise
// the argmax".
//
// Pure functions; thread-compatible (the Sampler passed in is used for draws).
#ifndef TANDEM_SPECULATIVE_H_
#define TANDEM_SPECULATIVE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tandem/sampling.h"

namespace tandem {

// The k most likely entries of `d` (which is sorted, see TokenDistribution),
// renormalized to sum to 1: what the edge draws its draft from and sends, so q
// is known exactly on both sides. k < 1 is treated as 1; an empty `d` gives an
// empty result.
TokenDistribution TruncateDistribution(const TokenDistribution& d, int k);

// The most entries a draft distribution may have on the wire (proto Draft).
inline constexpr int kMaxDraftEntries = 64;

// Checks a draft received from elsewhere before it is queued: `x` in
// [0, vocab_size), and `q` either empty (a greedy draft) or: ids and probs of
// equal length, at most `max_entries` of them, distinct ids in [0, vocab_size),
// probabilities finite and > 0 summing to 1 within 1e-3, `x` among the ids.
// InvalidArgument naming the first problem otherwise. O(n log n) in q's size,
// and the size is checked first, so a huge q costs nothing.
absl::Status ValidateDraft(const TokenDistribution& q, int32_t x, int64_t vocab_size,
                           int max_entries = kMaxDraftEntries);

// A draft: a provisional token and the distribution it was drawn from (empty
// for a greedy draft: one-hot at `token`).
struct DraftToken {
  int32_t token = 0;
  TokenDistribution distribution;
};

// The outcome of verifying one draft token.
struct DraftVerdict {
  int32_t token = 0;        // the token for the position: the draft if accepted
  bool accepted = false;    // token == the draft, kept by the rule
  float probability = 0;    // p(token) under the verifier's distribution
};

// Verifies draft `x`, drawn by the drafter from `q`, against the verifier's
// distribution `p` (from Sampler::Distribution), drawing with `sampler`'s
// generator: one uniform draw when p(x) < q(x), plus one draw from the residual
// on rejection; none when p(x) >= q(x) (certain acceptance).
//
// An empty `q` means a greedy draft: q = one-hot(x) — x is accepted with
// probability p(x) (under a greedy p: iff x is p's argmax).
//
// `q` is renormalized by its sum before use (the wire carries floats). Errors
// (InvalidArgument): `p` empty or malformed (lengths differ); `q` with ids and
// probs of different lengths, a negative or repeated id, a probability that is
// not finite and > 0, probs not summing to 1 within 1e-3, or `x` not among its
// ids; a negative `x`. `sampler` must not be null.
absl::StatusOr<DraftVerdict> VerifyDraft(const TokenDistribution& p, const TokenDistribution& q,
                                         int32_t x, Sampler* sampler);

}  // namespace tandem

#endif  // TANDEM_SPECULATIVE_H_
