// KVCache: keys and values of a contiguous range of decoder layers for one
// sequence, preallocated to a fixed capacity.
//
// Each layer keeps its own length: with deferred early-exit KV (see DESIGN.md) a
// token may already be in layers [0, e) while layers [e, S) receive it one step
// later. Positions in a layer are always 0, 1, ..., length-1 with no gaps.
//
// Thread-compatible: one writer at a time; never shared between sessions.
#ifndef TANDEM_KV_CACHE_H_
#define TANDEM_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tandem {

struct ModelConfig;

class KVCache {
 public:
  // A cache for layers [layer_begin, layer_end) of `config`, holding up to
  // `capacity` positions per layer, in `dtype` (the model's compute dtype).
  // Memory is allocated here, once: 2 * layers * kv_heads * capacity * head_dim.
  static absl::StatusOr<std::unique_ptr<KVCache>> Create(const ModelConfig& config,
                                                         int64_t layer_begin,
                                                         int64_t layer_end,
                                                         int64_t capacity,
                                                         at::ScalarType dtype);
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

  int64_t layer_begin() const { return layer_begin_; }
  int64_t layer_end() const { return layer_end_; }
  int64_t capacity() const { return capacity_; }
  bool HoldsLayer(int64_t layer) const { return layer >= layer_begin_ && layer < layer_end_; }

  // Number of positions stored for `layer` (absolute layer index).
  int64_t length(int64_t layer) const { return lengths_[layer - layer_begin_]; }
  // Smallest length over all layers: positions every layer has.
  int64_t min_length() const;

  // Appends `k`, `v` ([kv_heads, rows, head_dim]) to `layer` at its current end
  // and returns views of all keys / values [kv_heads, length, head_dim] including
  // the new rows. OutOfRange when capacity would be exceeded.
  absl::Status Append(int64_t layer, const at::Tensor& k, const at::Tensor& v,
                      at::Tensor* keys, at::Tensor* values);

  // Views of the stored keys / values of `layer`: [kv_heads, length, head_dim].
  at::Tensor keys(int64_t layer) const;
  at::Tensor values(int64_t layer) const;

  // Raw fp32 storage of `layer`'s keys (`values` false) or values (true) for
  // the decode path (fast_decoder.h): [kv_heads, capacity, head_dim],
  // contiguous, valid while the cache lives. nullptr unless the cache holds
  // fp32 and `layer` is one of its layers. Writing positions >= length(layer)
  // and then calling Extend is how the decode path appends.
  float* mutable_data(int64_t layer, bool values);
  // Marks `rows` more positions of `layer` as stored (after writing them
  // through mutable_data). OutOfRange past the capacity, InvalidArgument for a
  // layer the cache does not hold.
  absl::Status Extend(int64_t layer, int64_t rows);

  // Forgets every position >= `length` in every layer (rollback). Layers already
  // shorter are unchanged.
  void Truncate(int64_t length);
  void Clear() { Truncate(0); }

  // Bytes allocated (capacity) and bytes holding data (sum of lengths).
  int64_t allocated_bytes() const;
  int64_t used_bytes() const;

 private:
  KVCache() = default;
  int64_t layer_begin_ = 0;
  int64_t layer_end_ = 0;
  int64_t capacity_ = 0;
  int64_t bytes_per_position_per_layer_ = 0;
  // [layers, 2 (k, v), kv_heads, capacity, head_dim]
  at::Tensor storage_;
  std::vector<int64_t> lengths_;
};

}  // namespace tandem

#endif  // TANDEM_KV_CACHE_H_
