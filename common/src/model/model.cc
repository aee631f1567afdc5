#include "tandem/model.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "tandem/safetensors.h"
#include "tandem/status_macros.h"

namespace tandem {
namespace {

// y = x W^T + b for x [N, in]. A single row goes through addmv/mv, which avoids
// gemm's per-call setup (about 4x faster for decode-sized products here).
at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (x.size(0) == 1) {
    at::Tensor row = x.select(0, 0);
    return (b.defined() ? at::addmv(b, w, row) : at::mv(w, row)).unsqueeze(0);
  }
  return b.defined() ? at::addmm(b, x, w.t()) : at::mm(x, w.t());
}

}  // namespace

std::vector<double> RotaryInverseFrequencies(const ModelConfig& c) {
  std::vector<double> inv(c.head_dim / 2);
  for (int64_t i = 0; i < c.head_dim / 2; ++i) {
    inv[i] = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / c.head_dim);
  }
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "linear") {
    for (double& f : inv) f /= s.factor;
  } else if (s.type == "llama3") {
    // Llama 3.1: long wavelengths are divided by `factor`, short ones kept, and
    // the band between is interpolated smoothly.
    const double old_len = static_cast<double>(s.original_max_position_embeddings);
    const double low_wavelen = old_len / s.low_freq_factor;
    const double high_wavelen = old_len / s.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_wavelen) {
        f /= s.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth =
            (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1.0 - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  return inv;
}

namespace {

absl::Status ValidatePositions(const at::Tensor& positions, int64_t rows, int64_t* start) {
  if (!positions.defined() || positions.dim() != 1 || positions.scalar_type() != at::kLong ||
      positions.size(0) != rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("positions must be an int64 vector of ", rows, " entries"));
  }
  at::Tensor p = positions.contiguous();
  const int64_t* data = p.data_ptr<int64_t>();
  for (int64_t i = 0; i < rows; ++i) {
    if (data[i] != data[0] + i) {
      return absl::InvalidArgumentError("positions must be consecutive and increasing");
    }
  }
  *start = rows > 0 ? data[0] : 0;
  if (*start < 0) return absl::InvalidArgumentError("positions must be non-negative");
  return absl::OkStatus();
}

}  // namespace

Model::Model(ModelConfig config, ModelOptions options)
    : config_(std::move(config)), options_(options) {
  layer_begin_ = options_.layer_begin;
  layer_end_ = options_.layer_end < 0 ? config_.num_hidden_layers : options_.layer_end;
  std::vector<double> inv = RotaryInverseFrequencies(config_);
  inv_freq_ = at::empty({static_cast<int64_t>(inv.size())}, at::kFloat);
  for (size_t i = 0; i < inv.size(); ++i) inv_freq_[i] = static_cast<float>(inv[i]);
  attention_scale_ = 1.0 / std::sqrt(static_cast<double>(config_.head_dim));
}

absl::StatusOr<at::Tensor> Model::Embed(const at::Tensor& ids) const {
  if (!options_.load_embedding || !embedding_.defined()) {
    // (A tied head may hold the embedding matrix without it being "loaded".)
    return absl::FailedPreconditionError("Embed: the embedding was not loaded");
  }
  if (!ids.defined() || ids.scalar_type() != at::kLong || ids.dim() < 1 || ids.dim() > 2) {
    return absl::InvalidArgumentError("Embed: ids must be int64 [T] or [B, T]");
  }
  if (ids.numel() > 0) {
    const int64_t lo = ids.min().item<int64_t>();
    const int64_t hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("Embed: token id ", lo < 0 ? lo : hi,
                                                     " outside the vocabulary of ",
                                                     config_.vocab_size));
    }
  }
  try {
    return at::embedding(embedding_, ids);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("Embed: ", e.what_without_backtrace()));
  }
}

at::Tensor Model::RmsNorm(const at::Tensor& x, const at::Tensor& weight) const {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + config_.rms_norm_eps);
  return (weight.to(at::kFloat) * normed).to(x.scalar_type());
}

std::pair<at::Tensor, at::Tensor> Model::RotaryTables(const at::Tensor& positions) const {
  at::Tensor angles = at::outer(positions.to(at::kFloat), inv_freq_);  // [T, hd/2]
  return {angles.cos(), angles.sin()};
}

namespace {
// Rotates pairs (x[i], x[i + hd/2]) by the angles in cos/sin ([T, hd/2]); x is
// [B, heads, T, hd]. This is HF's rotate_half convention.
at::Tensor ApplyRotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor x1 = x.narrow(-1, 0, half);
  at::Tensor x2 = x.narrow(-1, half, half);
  at::Tensor c = cos.to(x.scalar_type());
  at::Tensor s = sin.to(x.scalar_type());
  return at::cat({x1 * c - x2 * s, x2 * c + x1 * s}, -1);
}
}  // namespace

at::Tensor Model::Attention(int64_t layer, const at::Tensor& x, const at::Tensor& positions,
                            KVCache* cache, absl::Status* status) const {
  const DecoderLayerWeights& w = layers_[layer - layer_begin_];
  const int64_t batch = x.size(0), rows = x.size(1);
  const int64_t heads = config_.num_attention_heads, kv_heads = config_.num_key_value_heads;
  const int64_t hd = config_.head_dim;
  at::Tensor x2 = x.reshape({batch * rows, x.size(2)});
  at::Tensor q = Linear(x2, w.q_proj, w.q_bias).view({batch, rows, heads, hd}).transpose(1, 2);
  at::Tensor k = Linear(x2, w.k_proj, w.k_bias).view({batch, rows, kv_heads, hd}).transpose(1, 2);
  at::Tensor v = Linear(x2, w.v_proj, w.v_bias).view({batch, rows, kv_heads, hd}).transpose(1, 2);
  auto [cos, sin] = RotaryTables(positions);
  q = ApplyRotary(q, cos, sin);
  k = ApplyRotary(k, cos, sin);
  at::Tensor out = AttendSequence(layer, q, k, v, positions, cache, status);
  if (!status->ok()) return {};
  return Linear(out, w.o_proj, w.o_bias).view({batch, rows, -1});
}

at::Tensor Model::AttendSequence(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                 const at::Tensor& v, const at::Tensor& positions,
                                 KVCache* cache, absl::Status* status) const {
  const int64_t batch = q.size(0), rows = q.size(2);
  const int64_t heads = config_.num_attention_heads, kv_heads = config_.num_key_value_heads;
  const int64_t hd = config_.head_dim, group = heads / kv_heads;
  at::Tensor keys = k, values = v;
  int64_t key_count = rows;
  if (cache != nullptr) {
    *status = cache->Append(layer, k[0], v[0], &keys, &values);
    if (!status->ok()) return {};
    keys = keys.unsqueeze(0);
    values = values.unsqueeze(0);
    key_count = keys.size(2);
  }
  // Query head h uses key head h / group: fold the group into the row axis so
  // the keys are shared without copying them.
  at::Tensor qg = q.reshape({batch, kv_heads, group * rows, hd});
  at::Tensor scores =
      at::matmul(qg, keys.transpose(-1, -2)).to(at::kFloat) * attention_scale_;  // [B,KV,G*T,P]
  const bool need_mask = rows > 1 || config_.sliding_window > 0 || cache == nullptr;
  if (need_mask && key_count > 0) {
    // Cached keys sit at positions 0 .. key_count - 1; uncached ones at `positions`.
    at::Tensor key_positions = cache != nullptr ? at::arange(key_count, at::kLong) : positions;
    at::Tensor row_pos = positions.view({rows, 1});
    at::Tensor key_pos = key_positions.view({1, -1});
    at::Tensor allowed = key_pos <= row_pos;
    if (config_.sliding_window > 0) {
      allowed = allowed & (key_pos > row_pos - config_.sliding_window);
    }
    at::Tensor mask = allowed.logical_not().repeat({group, 1});  // [G*T, P]
    scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
  }
  at::Tensor probs = at::softmax(scores, -1).to(q.scalar_type());
  return at::matmul(probs, values)  // [B, KV, G*T, hd]
      .view({batch, heads, rows, hd})
      .transpose(1, 2)
      .reshape({batch * rows, heads * hd});
}

at::Tensor Model::Mlp(const DecoderLayerWeights& w, const at::Tensor& x) const {
  at::Tensor x2 = x.reshape({-1, x.size(-1)});
  at::Tensor gate = Linear(x2, w.gate_proj, w.gate_bias);
  at::Tensor up = Linear(x2, w.up_proj, w.up_bias);
  return Linear(at::silu(gate) * up, w.down_proj, w.down_bias).view(x.sizes());
}

absl::StatusOr<at::Tensor> Model::ForwardLayers(int64_t begin, int64_t end,
                                                const at::Tensor& hidden,
                                                const at::Tensor& positions,
                                                KVCache* cache) const {
  if (begin < layer_begin_ || end > layer_end_ || begin > end) {
    return absl::InvalidArgumentError(absl::StrCat("ForwardLayers: [", begin, ", ", end,
                                                   ") is outside the loaded layers [",
                                                   layer_begin_, ", ", layer_end_, ")"));
  }
  if (!hidden.defined() || (hidden.dim() != 2 && hidden.dim() != 3) ||
      hidden.size(-1) != config_.hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ForwardLayers: hidden must be [T, ", config_.hidden_size, "] or [B, T, ",
        config_.hidden_size, "]"));
  }
  at::Tensor x = hidden.dim() == 2 ? hidden.unsqueeze(0) : hidden;
  const int64_t rows = x.size(1);
  int64_t start = 0;
  TANDEM_RETURN_IF_ERROR(ValidatePositions(positions, rows, &start));
  if (cache != nullptr) {
    if (x.size(0) != 1) return absl::InvalidArgumentError("ForwardLayers: a cache needs B = 1");
    for (int64_t l = begin; l < end; ++l) {
      if (!cache->HoldsLayer(l)) {
        return absl::InvalidArgumentError(absl::StrCat("ForwardLayers: cache lacks layer ", l));
      }
      if (cache->length(l) != start) {
        return absl::InvalidArgumentError(absl::StrCat(
            "ForwardLayers: layer ", l, " holds ", cache->length(l),
            " positions but the rows start at position ", start));
      }
      if (start + rows > cache->capacity()) {
        return absl::OutOfRangeError(absl::StrCat("ForwardLayers: position ", start + rows - 1,
                                                  " exceeds the cache capacity ",
                                                  cache->capacity()));
      }
    }
  } else if (start != 0) {
    return absl::InvalidArgumentError("ForwardLayers: without a cache positions start at 0");
  }
  try {
    x = x.to(options_.dtype);
    for (int64_t l = begin; l < end; ++l) {
      const DecoderLayerWeights& w = layers_[l - layer_begin_];
      absl::Status status;
      at::Tensor attn = Attention(l, RmsNorm(x, w.input_norm), positions, cache, &status);
      TANDEM_RETURN_IF_ERROR(status);
      x = x + attn;
      x = x + Mlp(w, RmsNorm(x, w.post_attention_norm));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("ForwardLayers: ", e.what_without_backtrace()));
  }
  return hidden.dim() == 2 ? x.squeeze(0) : x;
}

absl::StatusOr<at::Tensor> Model::ForwardLayersPacked(
    int64_t begin, int64_t end, const at::Tensor& hidden,
    absl::Span<const PackedSegment> segments) const {
  if (begin < layer_begin_ || end > layer_end_ || begin > end) {
    return absl::InvalidArgumentError(absl::StrCat("ForwardLayersPacked: [", begin, ", ", end,
                                                   ") is outside the loaded layers [",
                                                   layer_begin_, ", ", layer_end_, ")"));
  }
  if (!hidden.defined() || hidden.dim() != 2 || hidden.size(1) != config_.hidden_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("ForwardLayersPacked: hidden must be [R, ", config_.hidden_size, "]"));
  }
  if (segments.empty()) return absl::InvalidArgumentError("ForwardLayersPacked: no segments");
  int64_t total = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    const PackedSegment& seg = segments[i];
    if (seg.rows < 1 || seg.first_position < 0 || seg.cache == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ForwardLayersPacked: segment ", i, " needs rows >= 1, first_position >= 0 and a cache"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (segments[j].cache == seg.cache) {
        return absl::InvalidArgumentError(absl::StrCat(
            "ForwardLayersPacked: segments ", j, " and ", i, " share a cache"));
      }
    }
    for (int64_t l = begin; l < end; ++l) {
      if (!seg.cache->HoldsLayer(l)) {
        return absl::InvalidArgumentError(
            absl::StrCat("ForwardLayersPacked: segment ", i, "'s cache lacks layer ", l));
      }
      if (seg.cache->length(l) != seg.first_position) {
        return absl::InvalidArgumentError(absl::StrCat(
            "ForwardLayersPacked: segment ", i, ": layer ", l, " holds ", seg.cache->length(l),
            " positions but its rows start at position ", seg.first_position));
      }
    }
    if (seg.first_position + seg.rows > seg.cache->capacity()) {
      return absl::OutOfRangeError(absl::StrCat(
          "ForwardLayersPacked: segment ", i, ": position ", seg.first_position + seg.rows - 1,
          " exceeds the cache capacity ", seg.cache->capacity()));
    }
    total += seg.rows;
  }
  if (total != hidden.size(0)) {
    return absl::InvalidArgumentError(absl::StrCat("ForwardLayersPacked: the segments hold ",
                                                   total, " rows but hidden has ",
                                                   hidden.size(0)));
  }
  try {
    const int64_t heads = config_.num_attention_heads, kv_heads = config_.num_key_value_heads;
    const int64_t hd = config_.head_dim;
    // Positions of every row (rotary runs on all rows at once) and of each
    // segment (its attention mask), once for all layers.
    std::vector<at::Tensor> segment_positions;
    std::vector<int64_t> offsets;
    segment_positions.reserve(segments.size());
    int64_t offset = 0;
    for (const PackedSegment& seg : segments) {
      segment_positions.push_back(
          at::arange(seg.first_position, seg.first_position + seg.rows, at::kLong));
      offsets.push_back(offset);
      offset += seg.rows;
    }
    auto [cos, sin] = RotaryTables(segment_positions.size() == 1 ? segment_positions[0]
                                                                 : at::cat(segment_positions));
    at::Tensor x = hidden.to(options_.dtype);
    std::vector<at::Tensor> outs(segments.size());
    for (int64_t l = begin; l < end; ++l) {
      const DecoderLayerWeights& w = layers_[l - layer_begin_];
      at::Tensor xn = RmsNorm(x, w.input_norm);
      // [heads, R, hd]: rotary's tables broadcast over the heads.
      at::Tensor q = ApplyRotary(
          Linear(xn, w.q_proj, w.q_bias).view({total, heads, hd}).transpose(0, 1), cos, sin);
      at::Tensor k = ApplyRotary(
          Linear(xn, w.k_proj, w.k_bias).view({total, kv_heads, hd}).transpose(0, 1), cos, sin);
      at::Tensor v = Linear(xn, w.v_proj, w.v_bias).view({total, kv_heads, hd}).transpose(0, 1);
      for (size_t i = 0; i < segments.size(); ++i) {
        const int64_t rows = segments[i].rows;
        auto part = [&](const at::Tensor& a) {
          return a.narrow(1, offsets[i], rows).unsqueeze(0);  // [1, H, T, hd]
        };
        absl::Status status;
        outs[i] = AttendSequence(l, part(q), part(k), part(v), segment_positions[i],
                                 segments[i].cache, &status);
        TANDEM_RETURN_IF_ERROR(status);
      }
      at::Tensor attn = outs.size() == 1 ? outs[0] : at::cat(outs, 0);
      x = x + Linear(attn, w.o_proj, w.o_bias);
      x = x + Mlp(w, RmsNorm(x, w.post_attention_norm));
    }
    return x;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("ForwardLayersPacked: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<at::Tensor> Model::LmHead(const at::Tensor& normed) const {
  if (!lm_head_.defined()) return absl::FailedPreconditionError("the LM head was not loaded");
  if (!normed.defined() || normed.size(-1) != config_.hidden_size) {
    return absl::InvalidArgumentError("LmHead: last dimension must be the hidden size");
  }
  try {
    at::Tensor x2 = normed.reshape({-1, config_.hidden_size}).to(options_.dtype);
    std::vector<int64_t> shape(normed.sizes().begin(), normed.sizes().end());
    shape.back() = config_.vocab_size;
    return Linear(x2, lm_head_, at::Tensor()).to(at::kFloat).view(shape);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("LmHead: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<at::Tensor> Model::Logits(const at::Tensor& hidden) const {
  if (!final_norm_.defined()) return absl::FailedPreconditionError("the final norm was not loaded");
  if (!hidden.defined() || hidden.size(-1) != config_.hidden_size) {
    return absl::InvalidArgumentError("Logits: last dimension must be the hidden size");
  }
  return LmHead(RmsNorm(hidden.to(options_.dtype), final_norm_));
}

absl::StatusOr<std::unique_ptr<KVCache>> Model::NewCache(int64_t capacity) const {
  return NewCache(capacity, layer_begin_, layer_end_);
}

absl::StatusOr<std::unique_ptr<KVCache>> Model::NewCache(int64_t capacity, int64_t begin,
                                                         int64_t end) const {
  if (begin < layer_begin_ || end > layer_end_) {
    return absl::InvalidArgumentError("NewCache: layers outside the loaded range");
  }
  return KVCache::Create(config_, begin, end, capacity, options_.dtype);
}

}  // namespace tandem
