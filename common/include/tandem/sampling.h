// Sampler: picks the next token from a logits vector — greedy, or temperature
// sampling restricted by top-k and top-p (nucleus), seeded and reproducible: the
// same params, seed and logits sequence give the same tokens on every run.
//
// Thread-compatible (one sampler per generation).
#ifndef TANDEM_SAMPLING_H_
#define TANDEM_SAMPLING_H_

#include <cstdint>
#include <random>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tandem {

struct SamplingParams {
  // 0 means greedy (argmax; ties go to the lowest id). Otherwise logits are
  // divided by the temperature before the softmax.
  float temperature = 0.0f;
  // Keep only the k most likely tokens (0 = no limit).
  int32_t top_k = 0;
  // Keep the smallest set of most likely tokens whose probability reaches top_p
  // (1 = no limit).
  float top_p = 1.0f;
  uint64_t seed = 0;
  // Only ids in [0, vocab_limit) can be chosen (0 = every id). Set it to the
  // tokenizer's size when the LM head has more rows than the tokenizer has ids
  // (Qwen2.5: 152,064 rows, 151,665 ids): the extra rows are padding that no
  // text can express. The distribution is renormalised over the allowed ids.
  int32_t vocab_limit = 0;

  // InvalidArgument for negative temperature / top_k / vocab_limit, or top_p
  // outside (0, 1].
  absl::Status Validate() const;
};

// A distribution over token ids: the ids with non-zero probability, sorted by
// probability descending (ties: lower id first); `probs[i]` is the probability
// of `ids[i]` and the probs sum to 1. An id not listed has probability 0.
struct TokenDistribution {
  std::vector<int32_t> ids;
  std::vector<float> probs;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // `logits` is a float tensor of V values (any shape with V elements).
  // Returns the chosen id; `probability`, if given, receives its probability
  // under the temperature-scaled softmax over the allowed ids (before top-k /
  // top-p); greedy reports the plain softmax's.
  //
  // Non-finite logits: a NaN or +inf anywhere (allowed id or not) means the
  // model's computation went wrong, and is InvalidArgument naming the first
  // such id — in every mode, greedy included, so a broken model never emits a
  // token silently. -inf is a masked id (probability 0); when every allowed id
  // is -inf there is nothing to sample, also InvalidArgument.
  absl::StatusOr<int32_t> Sample(const at::Tensor& logits, float* probability = nullptr);

  // The distribution Sample() draws from: softmax at the temperature, then
  // top-k and top-p, renormalized over what is kept. Greedy (temperature 0):
  // the argmax alone, with probability 1. Errors as Sample(). Does not touch
  // the generator. O(V log V) for temperature > 0 (a sort of the vocabulary).
  absl::StatusOr<TokenDistribution> Distribution(const at::Tensor& logits) const;

  // Draws an id from `d` with this sampler's generator (one uniform draw).
  // `d` must be non-empty (an empty one returns -1); its probs need not sum
  // exactly to 1 (they are used relative to their sum).
  int32_t SampleFrom(const TokenDistribution& d);

  // A uniform double in [0, 1) from this sampler's generator.
  double Uniform();

  // Replaces the parameters; the generator keeps its state (the seed of `p` is
  // not applied). Lets one token be sampled with other parameters and the
  // session's parameters be restored afterwards without losing reproducibility.
  void set_params(const SamplingParams& p) { params_ = p; }
  const SamplingParams& params() const { return params_; }

 private:
  // What Sample() and Distribution() share: `probs` receives the unnormalized
  // softmax weights exp((x - max) / T) of all V ids (T = 1 under greedy),
  // `*total` their sum and `*best` the argmax. For temperature > 0, `order`
  // receives the ids by probability descending (ties: lower id first) and
  // `*keep` how many of them top-k / top-p keep; under greedy `order` is left
  // untouched and `*keep` is 1.
  absl::Status Weigh(const at::Tensor& logits, std::vector<float>* probs,
                     std::vector<int32_t>* order, int64_t* keep, int32_t* best,
                     double* total) const;

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> probs_;      // scratch, reused across calls
  std::vector<int32_t> order_;    // scratch
};

}  // namespace tandem

#endif  // TANDEM_SAMPLING_H_
