// FastDecoder: the edge's decode path (DESIGN.md, "Two execution paths, one
// model definition"). The same Llama-family network as Model (model.h) —
// RMSNorm, rotary (HF rotate_half convention, same frequency scaling),
// grouped-query attention, SwiGLU, optional biases, tied or separate LM head —
// run by SIMD kernels (Google Highway, dispatched at run time to the CPU's
// best instruction set) on weights converted at load into an edge format
// (weight_format.h), with no per-op dispatch and activations preallocated in a
// DecodeWorkspace.
//
// Exactness: with WeightFormat::kF32 the logits agree with Model's fp32
// forward within 1e-4 (tests/common/fast_decoder_test.cc). The other formats
// trade agreement for bytes; `tandem eval-formats` / the tests report it.
//
// The KV cache is a KVCache (kv_cache.h) in fp32, created by NewCache, with
// per-layer lengths and Truncate for rollback exactly as Model uses it, so the
// edge's deferred-KV bookkeeping is the same on both paths.
//
// Thread-safety: immutable after creation; const methods may run concurrently
// from many threads as long as each call uses its own DecodeWorkspace and
// KVCache. A workspace's ThreadPool is used by one call at a time.
#ifndef TANDEM_FAST_DECODER_H_
#define TANDEM_FAST_DECODER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tandem/exit_heads.h"
#include "tandem/generation_config.h"
#include "tandem/kv_cache.h"
#include "tandem/model.h"
#include "tandem/model_config.h"
#include "tandem/thread_pool.h"
#include "tandem/weight_format.h"

namespace tandem {

namespace decode {
class QuantizedMatrix;
struct LayerWeights;
}  // namespace decode

struct FastDecoderOptions {
  // Storage of every weight matrix (projections, embedding, LM head). Norms,
  // biases and exit-head adapters stay fp32.
  WeightFormat format = WeightFormat::kF32;
  // Decoder layers to hold: [layer_begin, layer_end); layer_end < 0 = all.
  int64_t layer_begin = 0;
  int64_t layer_end = -1;
  // The token embedding (Embed) and the final norm + LM head (Logits, exits).
  bool load_embedding = true;
  bool load_head = true;
};

class FastDecoder;

// Preallocated activations of one caller (one sequence or one thread) and the
// thread pool its calls use. Sized for `max_rows` rows per call; calls with
// more rows are processed in chunks of max_rows. Single-threaded.
class DecodeWorkspace {
 public:
  DecodeWorkspace(const DecodeWorkspace&) = delete;
  DecodeWorkspace& operator=(const DecodeWorkspace&) = delete;
  ~DecodeWorkspace();
  int64_t max_rows() const { return max_rows_; }
  ThreadPool* pool() const { return pool_; }

 private:
  friend class FastDecoder;
  DecodeWorkspace() = default;
  int64_t max_rows_ = 0;
  ThreadPool* pool_ = nullptr;
  // Row strides are padded to 32 floats; see fast_decoder.cc for the layout.
  std::vector<float> hidden_, normed_, qkv_, attn_, gate_up_, act_, out_, scores_, rotary_;
};

// An exit head on the decode path (exit_heads.h): its own RMSNorm weight and
// optional low-rank adapter (fp32), then the decoder's LM head.
struct FastExitHead {
  std::vector<float> norm;  // [D]
  int64_t rank = 0;
  std::vector<float> down;  // [rank, D]
  std::vector<float> up;    // [D, rank]
};
// The heads of `heads`, by exit layer.
absl::StatusOr<std::map<int64_t, FastExitHead>> ConvertExitHeads(const ExitHeads& heads);

class FastDecoder {
 public:
  // Converts a loaded Model's weights (any compute dtype; the layer range,
  // embedding and head asked for must be loaded in `model`).
  static absl::StatusOr<std::unique_ptr<FastDecoder>> FromModel(
      const Model& model, const FastDecoderOptions& options);
  // Reads `dir` (HF layout, as Model::Load) and converts. Only the requested
  // layers are read from disk; the fp32 copy is freed before returning.
  static absl::StatusOr<std::unique_ptr<FastDecoder>> Load(const std::string& dir,
                                                           const FastDecoderOptions& options);
  ~FastDecoder();
  FastDecoder(const FastDecoder&) = delete;
  FastDecoder& operator=(const FastDecoder&) = delete;

  const ModelConfig& config() const { return config_; }
  // The source model's generation_config.json (stop ids, default sampling).
  const GenerationConfig& generation_config() const { return generation_config_; }
  const FastDecoderOptions& options() const { return options_; }
  int64_t layer_begin() const { return layer_begin_; }
  int64_t layer_end() const { return layer_end_; }
  // Bytes of weights held (matrices in their format + fp32 norms and biases).
  int64_t weight_bytes() const;
  // Bytes of weights one decode step reads for layers [begin, end) plus,
  // with `head`, the final norm and LM head (the roofline's numerator).
  int64_t step_bytes(int64_t begin, int64_t end, bool head) const;
  // The instruction set the kernels run on this CPU ("AVX3", "AVX2", ...).
  static const char* KernelTarget();

  // Activations for up to `max_rows` rows per call (>= 1), using `pool`
  // (borrowed, may be null = the calling thread only).
  std::unique_ptr<DecodeWorkspace> NewWorkspace(int64_t max_rows, ThreadPool* pool) const;
  // An fp32 KV cache for layers [begin, end) of the held range.
  absl::StatusOr<std::unique_ptr<KVCache>> NewCache(int64_t capacity) const;
  absl::StatusOr<std::unique_ptr<KVCache>> NewCache(int64_t capacity, int64_t begin,
                                                    int64_t end) const;

  // ids [T] -> out [T, D] fp32 (row-major, contiguous). InvalidArgument for an
  // id outside the vocabulary; FailedPrecondition without the embedding.
  absl::Status Embed(absl::Span<const int32_t> ids, float* out) const;

  // Runs layers [begin, end) on `hidden` ([rows, D] fp32, in place) at
  // positions first_position .. + rows - 1, appending to `cache` exactly as
  // Model::ForwardLayers does: each layer's length must equal first_position,
  // and everything is checked before any layer runs (InvalidArgument, or
  // OutOfRange past the capacity).
  absl::Status ForwardLayers(int64_t begin, int64_t end, float* hidden, int64_t rows,
                             int64_t first_position, KVCache* cache,
                             DecodeWorkspace* workspace) const;

  // Final RMSNorm (or an exit head's norm + adapter when `exit` is given) and
  // the LM head: hidden [rows, D] -> logits [rows, V] fp32.
  absl::Status Logits(const float* hidden, int64_t rows, float* logits,
                      DecodeWorkspace* workspace, const FastExitHead* exit = nullptr) const;

  // Tensor forms of the same calls, for code that holds at::Tensors (the edge
  // engine, tests). hidden [T, D] (any float dtype) -> [T, D] fp32; logits
  // [..., V] fp32. A null workspace uses a temporary one on this thread.
  absl::StatusOr<at::Tensor> EmbedTensor(const at::Tensor& ids) const;
  absl::StatusOr<at::Tensor> ForwardLayersTensor(int64_t begin, int64_t end,
                                                 const at::Tensor& hidden,
                                                 int64_t first_position, KVCache* cache,
                                                 DecodeWorkspace* workspace) const;
  absl::StatusOr<at::Tensor> LogitsTensor(const at::Tensor& hidden, DecodeWorkspace* workspace,
                                          const FastExitHead* exit = nullptr) const;

 private:
  FastDecoder() = default;
  void Linear(const decode::QuantizedMatrix& w, const float* x, int64_t rows, int64_t x_stride,
              float* y, int64_t y_stride, ThreadPool* pool) const;
  void RunChunk(int64_t begin, int64_t end, float* hidden, int64_t rows,
                int64_t first_position, KVCache* cache, DecodeWorkspace* ws) const;

  ModelConfig config_;
  GenerationConfig generation_config_;
  FastDecoderOptions options_;
  int64_t layer_begin_ = 0, layer_end_ = 0;
  int64_t d_ = 0, d_pad_ = 0, q_dim_ = 0, kv_dim_ = 0, qkv_pad_ = 0, ff_pad_ = 0;
  std::vector<float> inv_freq_;  // [head_dim / 2], scaling applied
  float attention_scale_ = 1.0f;
  std::unique_ptr<decode::QuantizedMatrix> embedding_;  // [V, D]
  std::unique_ptr<decode::QuantizedMatrix> lm_head_;    // [V, D]; null when tied
  std::vector<float> final_norm_;
  std::vector<decode::LayerWeights> layers_;
};

}  // namespace tandem

#endif  // TANDEM_FAST_DECODER_H_
