// Model: a Llama-family decoder (RMSNorm, rotary embeddings, grouped-query
// attention, SwiGLU MLP, optional q/k/v/o and MLP biases, tied or separate LM
// head) in libtorch. The same object serves inference (under at::NoGradGuard /
// InferenceMode) and training (autograd through the parameters).
//
// The forward pass is split so edge, cloud and exit heads can each run what they
// hold: Embed() ids -> hidden, ForwardLayers() a range [a, b) of layers on rows at
// explicit positions (optionally reading/appending a KVCache), Logits() final norm
// + LM head. A Model may load only some of the checkpoint (ModelOptions): calling a
// part it did not load is a FailedPrecondition error.
//
// Thread-safety: the weights are immutable after Load, so const methods may run
// concurrently from many threads as long as each uses its own KVCache.
#ifndef TANDEM_MODEL_H_
#define TANDEM_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tandem/generation_config.h"
#include "tandem/kv_cache.h"
#include "tandem/model_config.h"

namespace tandem {

// Which parts of a checkpoint to load and how to compute.
struct ModelOptions {
  // Compute (and weight) dtype: at::kFloat is the reference; at::kBFloat16 is
  // ~4x faster on CPUs with AVX-512 BF16 and loses ~3 significant digits. Norms,
  // softmax and rotary angles are computed in fp32 either way.
  at::ScalarType dtype = at::kFloat;
  // Decoder layers to load: [layer_begin, layer_end); layer_end < 0 means all.
  int64_t layer_begin = 0;
  int64_t layer_end = -1;
  // The token embedding (needed by Embed, and by Logits when embeddings are tied).
  bool load_embedding = true;
  // The final norm and LM head (needed by Logits and by exit heads).
  bool load_head = true;
};

// One sequence's rows inside a packed batch (Model::ForwardLayersPacked): `rows`
// consecutive rows at positions first_position .. first_position + rows - 1,
// attending to (and appended to) `cache`.
struct PackedSegment {
  int64_t rows = 0;
  int64_t first_position = 0;
  KVCache* cache = nullptr;
};

// Weights of one decoder layer. Bias tensors are undefined when absent.
struct DecoderLayerWeights {
  at::Tensor input_norm;
  at::Tensor q_proj, q_bias, k_proj, k_bias, v_proj, v_bias, o_proj, o_bias;
  at::Tensor post_attention_norm;
  at::Tensor gate_proj, gate_bias, up_proj, up_bias, down_proj, down_bias;
};

// Rotary inverse frequencies [head_dim / 2] of `config`, with its rope_scaling
// applied (none, "linear" or Llama 3's "llama3"), in double precision. Both
// execution paths (Model, FastDecoder) take their angles from here.
std::vector<double> RotaryInverseFrequencies(const ModelConfig& config);

class Model {
 public:
  // Loads `dir` (config.json + *.safetensors, HF layout, and
  // generation_config.json when present). Weights are converted to
  // options.dtype; missing or mis-shaped tensors are InvalidArgument naming the
  // tensor; only the requested layers are read from disk.
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::string& dir,
                                                     const ModelOptions& options = {});
  // A randomly initialised model (normal(0, 0.02) projections, unit norms),
  // seeded, for training from scratch and for tests.
  static absl::StatusOr<std::unique_ptr<Model>> CreateRandom(const ModelConfig& config,
                                                             const ModelOptions& options,
                                                             uint64_t seed);
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  // generation_config.json beside config.json (stop ids, default sampling);
  // empty for a model without one and for CreateRandom.
  const GenerationConfig& generation_config() const { return generation_config_; }
  const ModelOptions& options() const { return options_; }
  int64_t layer_begin() const { return layer_begin_; }
  int64_t layer_end() const { return layer_end_; }

  // ids: int64 [T] or [B, T] -> hidden [T, D] or [B, T, D] in the compute dtype.
  // Ids outside the vocabulary are InvalidArgument.
  absl::StatusOr<at::Tensor> Embed(const at::Tensor& ids) const;

  // Runs layers [begin, end) on `hidden` ([T, D] or [B, T, D]) whose rows are at
  // `positions` (int64 [T], shared by the batch). Each row attends causally to
  // every position <= its own.
  //  - With `cache` (B must be 1): for each layer the rows are appended at the end
  //    of that layer's cache, so positions must equal length(layer), ... +T-1, and
  //    attention also sees the cached positions.
  //  - Without cache: positions must be 0..T-1 (a whole sequence; training).
  absl::StatusOr<at::Tensor> ForwardLayers(int64_t begin, int64_t end, const at::Tensor& hidden,
                                           const at::Tensor& positions, KVCache* cache) const;

  // Runs layers [begin, end) on `hidden` [R, D] = the rows of several sequences,
  // concatenated in segment order (the segments' rows sum to R). Dense work
  // (RMSNorm, q/k/v/o projections, MLP) runs on all R rows at once; rotary and
  // attention run per segment against that segment's own cache, to which its
  // rows are appended exactly as ForwardLayers does with a cache (each layer's
  // length must equal first_position). Every segment needs its own distinct
  // cache holding [begin, end), rows >= 1 and room for its rows. Everything is
  // validated before any cache is touched: an invalid segment is
  // InvalidArgument (OutOfRange past a cache's capacity) with no cache mutated.
  // On InternalError (a libtorch failure mid-way) the caches may hold some of
  // the rows in some layers: truncate them to first_position before reuse.
  // Returns [R, D] in the compute dtype.
  absl::StatusOr<at::Tensor> ForwardLayersPacked(int64_t begin, int64_t end,
                                                 const at::Tensor& hidden,
                                                 absl::Span<const PackedSegment> segments) const;

  // Final RMSNorm + LM head: hidden [..., D] -> logits [..., V] (fp32).
  absl::StatusOr<at::Tensor> Logits(const at::Tensor& hidden) const;
  // The LM head alone applied to already-normalised hidden states (exit heads
  // share it): [..., D] -> [..., V] (fp32).
  absl::StatusOr<at::Tensor> LmHead(const at::Tensor& normed) const;
  // RMSNorm with the given weight, computed in fp32, returned in x's dtype.
  at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight) const;

  // A KV cache for this model's loaded layers (or [begin, end) of them).
  absl::StatusOr<std::unique_ptr<KVCache>> NewCache(int64_t capacity) const;
  absl::StatusOr<std::unique_ptr<KVCache>> NewCache(int64_t capacity, int64_t begin,
                                                    int64_t end) const;

  // Every loaded weight under its HF name, for training and saving.
  std::vector<std::pair<std::string, at::Tensor>> NamedParameters() const;
  // Writes config.json + model.safetensors into `dir` (created if needed), in
  // `dtype` (at::kFloat, at::kHalf or at::kBFloat16). Requires a fully loaded model.
  absl::Status Save(const std::string& dir, at::ScalarType dtype = at::kFloat) const;

  // Approximate bytes of weights held.
  int64_t weight_bytes() const;

 private:
  Model(ModelConfig config, ModelOptions options);
  enum class WeightKind { kMatrix, kNorm, kBias };
  // Supplies the tensor called `name` with `shape` (from a checkpoint or a random
  // initialiser), already in the compute dtype.
  using WeightFetcher = std::function<absl::StatusOr<at::Tensor>(
      const std::string& name, const std::vector<int64_t>& shape, WeightKind kind)>;
  absl::Status BuildWeights(const WeightFetcher& fetch);
  at::Tensor Attention(int64_t layer, const at::Tensor& x, const at::Tensor& positions,
                       KVCache* cache, absl::Status* status) const;
  // The attention core of one sequence, after the projections and rotary:
  // appends k/v to the cache (if any), then softmax(q k^T) v. q [B, heads, T, hd],
  // k/v [B, kv_heads, T, hd] -> [B * T, heads * hd], before the output projection.
  at::Tensor AttendSequence(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, const at::Tensor& positions, KVCache* cache,
                            absl::Status* status) const;
  at::Tensor Mlp(const DecoderLayerWeights& w, const at::Tensor& x) const;
  // cos/sin tables [T, head_dim/2] for the given positions, fp32.
  std::pair<at::Tensor, at::Tensor> RotaryTables(const at::Tensor& positions) const;

  ModelConfig config_;
  GenerationConfig generation_config_;
  ModelOptions options_;
  int64_t layer_begin_ = 0;
  int64_t layer_end_ = 0;
  at::Tensor embedding_;   // [V, D] or undefined
  at::Tensor final_norm_;  // [D] or undefined
  at::Tensor lm_head_;     // [V, D]; aliases embedding_ when tied
  std::vector<DecoderLayerWeights> layers_;  // layers_[i] is layer layer_begin_ + i
  at::Tensor inv_freq_;    // [head_dim/2] fp32, scaling applied
  double attention_scale_ = 1.0;
};

}  // namespace tandem

#endif  // TANDEM_MODEL_H_
