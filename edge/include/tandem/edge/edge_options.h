// EdgeOptions: how an edge device is configured — which checkpoint, where the
// split is, which exits it uses and how confident they must be. Construction
// options (fixed for a session's life); per-request ones are GenerateOptions
// in edge_session.h. Plain struct: every field has a default.
#ifndef TANDEM_EDGE_EDGE_OPTIONS_H_
#define TANDEM_EDGE_EDGE_OPTIONS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tandem/edge/cloud_options.h"
#include "tandem/exit_heads.h"
#include "tandem/thread_pool.h"
#include "tandem/weight_format.h"

namespace tandem::edge {

class ContextSink;

// What standalone mode emits when no exit's confidence passes its threshold by
// the split (and, in collaborative mode, when the cloud does not answer in time).
enum class StandaloneFallback {
  // The head at the split S: it has seen the most layers, so it usually agrees
  // best with the full model.
  kDeepest,
  // The exit whose confidence is highest (ties go to the deeper exit). Only
  // meaningful when the exits' confidences are comparable (same measure — they
  // always are — and similarly calibrated heads).
  kMostConfident,
};
const char* StandaloneFallbackName(StandaloneFallback f);

struct EdgeOptions {
  // Checkpoint directory in Hugging Face layout (config.json, *.safetensors, a
  // tokenizer) with exit heads beside it (tandem_exits.safetensors +
  // exits.json, written by `tandem train-exits` / `tandem calibrate`). Required.
  std::string model_dir;

  // The split S: the edge holds decoder layers [0, S) and never reads layers
  // [S, L) from disk. 0 = exits.json's "split" if it has one, else its deepest
  // exit layer. A deeper split decides more tokens on the edge and costs more
  // edge memory and compute per token; must be in (0, L].
  int64_t split = 0;

  // Exit layers E ⊆ (0, S], each with a trained head. Empty = every head layer
  // in exits.json that is <= S. S is always an exit (added if missing). More
  // exits give more chances to stop early, but each costs one LM-head product
  // (vocab x hidden) per token that reaches it.
  std::vector<int64_t> exit_layers;

  // Per-exit thresholds overriding exits.json's calibrated ones (layer ->
  // threshold, on the scale of `measure`: max_prob and margin in [0, 1],
  // neg_entropy in nats, <= 0). A token leaves at exit e when its confidence
  // >= threshold. Lower = more tokens on the edge, less agreement with the full
  // model. An exit with no threshold from either source never lets a token
  // leave early (the conservative choice for uncalibrated heads).
  std::map<int64_t, double> thresholds;

  // Confidence measure; empty = the one exits.json was calibrated with
  // (max_prob when uncalibrated). Choosing a different measure than the
  // calibrated one discards exits.json's thresholds (they do not transfer).
  std::optional<ConfidenceMeasure> measure;

  // What to emit when no exit passes by S (see StandaloneFallback).
  StandaloneFallback fallback = StandaloneFallback::kDeepest;

  // Intra-op threads for the tensor library. 0 = leave the process's setting
  // alone. > 0 sets it PROCESS-WIDE (libtorch has no per-session setting):
  // more threads cut per-token latency until memory bandwidth saturates.
  int compute_threads = 0;

  // The edge's execution path. Empty = libtorch (the reference, fp32). A
  // format = the SIMD decode path (fast_decoder.h): layers [0, S), the
  // embedding, the LM head and the exit heads run from weights converted at
  // load into that format — fp32 (agrees with libtorch within 1e-4), fp16 /
  // bf16 (half the bytes), int8 (block 32, ~quarter) or int4 (block 32,
  // ~eighth; measurably lower agreement: see the README). Fewer bytes per
  // token mean faster decoding where memory bandwidth is the limit.
  std::optional<WeightFormat> weights;

  // Threads the decode path (`weights` set) runs its kernels on. Borrowed:
  // owned by the application, must outlive the session; nullptr = the
  // decoding thread alone. The library starts no compute threads of its own.
  ThreadPool* thread_pool = nullptr;

  // Positions the session's KV cache holds (prompt + generated tokens). 0 = the
  // model's max_position_embeddings. Memory: 2 * S * kv_heads * head_dim * 4
  // bytes per position (fp32), allocated once at Create.
  int64_t max_context = 0;

  // When the directory has no exit heads, start fresh ones at `exit_layers`
  // (each = final norm + LM head applied at that layer; see ExitHeads::Create)
  // instead of failing. Useful for random or untrained models; their
  // confidences are uncalibrated, so give `thresholds` explicitly.
  bool allow_fresh_heads = false;

  // Receives every token's hidden state at S (context_sink.h). Borrowed: must
  // outlive the session. nullptr = the states are dropped (pure standalone).
  // In collaborative mode it still receives them (after the cloud link).
  ContextSink* context_sink = nullptr;

  // Collaborative mode: the cloud server to ask when no exit is confident
  // (cloud_options.h). An empty cloud.address = standalone mode.
  CloudOptions cloud;
};

}  // namespace tandem::edge

#endif  // TANDEM_EDGE_EDGE_OPTIONS_H_
