#include "tandem/kv_cache.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "tandem/model_config.h"

namespace tandem {

absl::StatusOr<std::unique_ptr<KVCache>> KVCache::Create(const ModelConfig& config,
                                                         int64_t layer_begin,
                                                         int64_t layer_end,
                                                         int64_t capacity,
                                                         at::ScalarType dtype) {
  if (layer_begin < 0 || layer_end > config.num_hidden_layers || layer_begin > layer_end) {
    return absl::InvalidArgumentError(absl::StrCat("KVCache: layer range [", layer_begin, ", ",
                                                   layer_end, ") is outside the model's ",
                                                   config.num_hidden_layers, " layers"));
  }
  if (capacity <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("KVCache: capacity must be positive, got ",
                                                   capacity));
  }
  auto cache = std::unique_ptr<KVCache>(new KVCache());
  cache->layer_begin_ = layer_begin;
  cache->layer_end_ = layer_end;
  cache->capacity_ = capacity;
  const int64_t layers = layer_end - layer_begin;
  cache->storage_ = at::zeros({layers, 2, config.num_key_value_heads, capacity, config.head_dim},
                              at::TensorOptions().dtype(dtype));
  cache->lengths_.assign(layers, 0);
  cache->bytes_per_position_per_layer_ =
      2 * config.num_key_value_heads * config.head_dim * at::elementSize(dtype);
  return cache;
}

int64_t KVCache::min_length() const {
  if (lengths_.empty()) return 0;
  return *std::min_element(lengths_.begin(), lengths_.end());
}

absl::Status KVCache::Append(int64_t layer, const at::Tensor& k, const at::Tensor& v,
                             at::Tensor* keys, at::Tensor* values) {
  if (!HoldsLayer(layer)) {
    return absl::InvalidArgumentError(absl::StrCat("KVCache: layer ", layer, " not in [",
                                                   layer_begin_, ", ", layer_end_, ")"));
  }
  const int64_t i = layer - layer_begin_;
  const int64_t rows = k.size(1);
  const int64_t start = lengths_[i];
  if (start + rows > capacity_) {
    return absl::OutOfRangeError(absl::StrCat("KVCache: ", start + rows,
                                              " positions exceed the capacity of ", capacity_));
  }
  at::Tensor layer_storage = storage_[i];
  layer_storage[0].narrow(1, start, rows).copy_(k);
  layer_storage[1].narrow(1, start, rows).copy_(v);
  lengths_[i] = start + rows;
  *keys = layer_storage[0].narrow(1, 0, start + rows);
  *values = layer_storage[1].narrow(1, 0, start + rows);
  return absl::OkStatus();
}

at::Tensor KVCache::keys(int64_t layer) const {
  const int64_t i = layer - layer_begin_;
  return storage_[i][0].narrow(1, 0, lengths_[i]);
}

at::Tensor KVCache::values(int64_t layer) const {
  const int64_t i = layer - layer_begin_;
  return storage_[i][1].narrow(1, 0, lengths_[i]);
}

float* KVCache::mutable_data(int64_t layer, bool values) {
  if (!HoldsLayer(layer) || storage_.scalar_type() != at::kFloat) return nullptr;
  const int64_t per_kind = storage_.size(2) * capacity_ * storage_.size(4);
  return storage_.data_ptr<float>() + ((layer - layer_begin_) * 2 + (values ? 1 : 0)) * per_kind;
}

absl::Status KVCache::Extend(int64_t layer, int64_t rows) {
  if (!HoldsLayer(layer)) {
    return absl::InvalidArgumentError(absl::StrCat("KVCache: layer ", layer, " not in [",
                                                   layer_begin_, ", ", layer_end_, ")"));
  }
  int64_t& length = lengths_[layer - layer_begin_];
  if (rows < 0 || length + rows > capacity_) {
    return absl::OutOfRangeError(absl::StrCat("KVCache: ", length + rows,
                                              " positions exceed the capacity of ", capacity_));
  }
  length += rows;
  return absl::OkStatus();
}

void KVCache::Truncate(int64_t length) {
  for (int64_t& l : lengths_) l = std::min(l, std::max<int64_t>(length, 0));
}

int64_t KVCache::allocated_bytes() const {
  return static_cast<int64_t>(lengths_.size()) * capacity_ * bytes_per_position_per_layer_;
}

int64_t KVCache::used_bytes() const {
  int64_t total = 0;
  for (int64_t l : lengths_) total += l;
  return total * bytes_per_position_per_layer_;
}

}  // namespace tandem
