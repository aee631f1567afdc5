#include "tandem/fast_decoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "decode/kernels.h"
#include "decode/quantize.h"
#include "tandem/status_macros.h"

namespace tandem {
namespace decode {

// One decoder layer on the decode path. q, k and v are one matrix (rows
// [q | k | v]) and so are gate and up ([gate | up]): one parallel loop each.
struct LayerWeights {
  std::vector<float> input_norm, post_norm;
  QuantizedMatrix qkv, o, gate_up, down;
  std::vector<float> qkv_bias, o_bias, gate_up_bias, down_bias;  // empty when absent
};

}  // namespace decode

namespace {

using decode::PadToBlock;
using decode::QuantizedMatrix;

// A tensor as a contiguous fp32 copy.
std::vector<float> ToFloats(const at::Tensor& t) {
  at::Tensor f = t.detach().to(at::kFloat).contiguous();
  return std::vector<float>(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
}

// Matrices stacked along the output rows, then converted.
QuantizedMatrix Stack(WeightFormat format, const std::vector<at::Tensor>& parts) {
  at::Tensor all = at::cat(parts, 0).to(at::kFloat).contiguous();
  return QuantizedMatrix(format, all.data_ptr<float>(), all.size(0), all.size(1));
}

std::vector<float> StackBias(const std::vector<at::Tensor>& parts) {
  for (const at::Tensor& p : parts) {
    if (!p.defined()) return {};
  }
  return ToFloats(at::cat(parts, 0));
}

void AddBias(const std::vector<float>& bias, float* y, int64_t rows, int64_t stride) {
  if (bias.empty()) return;
  const int64_t n = static_cast<int64_t>(bias.size());
  for (int64_t r = 0; r < rows; ++r) {
    float* row = y + r * stride;
    for (int64_t i = 0; i < n; ++i) row[i] += bias[i];
  }
}

// Rotates pairs (x[i], x[i + half]) by angle i of the row (HF rotate_half).
void Rotate(float* x, const float* cos, const float* sin, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] - b * sin[i];
    x[i + half] = b * cos[i] + a * sin[i];
  }
}

}  // namespace

DecodeWorkspace::~DecodeWorkspace() = default;
FastDecoder::~FastDecoder() = default;

const char* FastDecoder::KernelTarget() { return decode::KernelTargetName(); }

absl::StatusOr<std::map<int64_t, FastExitHead>> ConvertExitHeads(const ExitHeads& heads) {
  std::map<int64_t, FastExitHead> out;
  try {
    for (const auto& [name, t] : heads.NamedParameters()) {
      // exits.<layer>.norm.weight / .adapter.down.weight / .adapter.up.weight
      const size_t dot = name.find('.', 6);
      if (name.rfind("exits.", 0) != 0 || dot == std::string::npos) {
        return absl::InternalError(absl::StrCat("unexpected exit-head tensor ", name));
      }
      const int64_t layer = std::stoll(name.substr(6, dot - 6));
      const std::string field = name.substr(dot + 1);
      FastExitHead& head = out[layer];
      if (field == "norm.weight") {
        head.norm = ToFloats(t);
      } else if (field == "adapter.down.weight") {
        head.rank = t.size(0);
        head.down = ToFloats(t);
      } else if (field == "adapter.up.weight") {
        head.up = ToFloats(t);
      } else {
        return absl::InternalError(absl::StrCat("unexpected exit-head tensor ", name));
      }
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("ConvertExitHeads: ", e.what_without_backtrace()));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<FastDecoder>> FastDecoder::FromModel(
    const Model& model, const FastDecoderOptions& options) {
  const ModelConfig& c = model.config();
  const int64_t begin = options.layer_begin;
  const int64_t end = options.layer_end < 0 ? c.num_hidden_layers : options.layer_end;
  if (begin < model.layer_begin() || end > model.layer_end() || begin > end) {
    return absl::InvalidArgumentError(absl::StrCat(
        "FastDecoder: layers [", begin, ", ", end, ") are not all loaded in the model ([",
        model.layer_begin(), ", ", model.layer_end(), "))"));
  }
  if ((options.load_embedding && !model.options().load_embedding) ||
      (options.load_head && !model.options().load_head)) {
    return absl::InvalidArgumentError(
        "FastDecoder: the embedding / head asked for is not loaded in the model");
  }
  std::map<std::string, at::Tensor> params;
  for (auto& [name, t] : model.NamedParameters()) params[name] = t;
  auto get = [&](const std::string& name) -> at::Tensor {
    auto it = params.find(name);
    return it == params.end() ? at::Tensor() : it->second;
  };
  auto decoder = std::unique_ptr<FastDecoder>(new FastDecoder());
  FastDecoder& f = *decoder;
  f.config_ = c;
  f.generation_config_ = model.generation_config();
  f.options_ = options;
  f.layer_begin_ = begin;
  f.layer_end_ = end;
  f.d_ = c.hidden_size;
  f.d_pad_ = PadToBlock(c.hidden_size);
  f.q_dim_ = c.num_attention_heads * c.head_dim;
  f.kv_dim_ = c.num_key_value_heads * c.head_dim;
  f.qkv_pad_ = PadToBlock(f.q_dim_ + 2 * f.kv_dim_);
  f.ff_pad_ = PadToBlock(c.intermediate_size);
  for (double v : RotaryInverseFrequencies(c)) f.inv_freq_.push_back(static_cast<float>(v));
  f.attention_scale_ = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  const WeightFormat fmt = options.format;
  try {
    const bool need_embedding = options.load_embedding || (options.load_head && c.tie_word_embeddings);
    if (need_embedding) {
      at::Tensor e = get("model.embed_tokens.weight");
      if (!e.defined()) return absl::InvalidArgumentError("FastDecoder: no embedding in the model");
      f.embedding_ = std::make_unique<QuantizedMatrix>(Stack(fmt, {e}));
    }
    if (options.load_head) {
      at::Tensor norm = get("model.norm.weight");
      if (!norm.defined()) return absl::InvalidArgumentError("FastDecoder: no final norm");
      f.final_norm_ = ToFloats(norm);
      if (!c.tie_word_embeddings) {
        at::Tensor head = get("lm_head.weight");
        if (!head.defined()) return absl::InvalidArgumentError("FastDecoder: no lm_head");
        f.lm_head_ = std::make_unique<QuantizedMatrix>(Stack(fmt, {head}));
      }
    }
    for (int64_t l = begin; l < end; ++l) {
      const std::string p = absl::StrCat("model.layers.", l, ".");
      auto w = [&](const char* name) { return get(p + name); };
      decode::LayerWeights layer;
      layer.input_norm = ToFloats(w("input_layernorm.weight"));
      layer.post_norm = ToFloats(w("post_attention_layernorm.weight"));
      layer.qkv = Stack(fmt, {w("self_attn.q_proj.weight"), w("self_attn.k_proj.weight"),
                              w("self_attn.v_proj.weight")});
      layer.o = Stack(fmt, {w("self_attn.o_proj.weight")});
      layer.gate_up = Stack(fmt, {w("mlp.gate_proj.weight"), w("mlp.up_proj.weight")});
      layer.down = Stack(fmt, {w("mlp.down_proj.weight")});
      layer.qkv_bias = StackBias(
          {w("self_attn.q_proj.bias"), w("self_attn.k_proj.bias"), w("self_attn.v_proj.bias")});
      if (w("self_attn.o_proj.bias").defined()) layer.o_bias = ToFloats(w("self_attn.o_proj.bias"));
      layer.gate_up_bias = StackBias({w("mlp.gate_proj.bias"), w("mlp.up_proj.bias")});
      if (w("mlp.down_proj.bias").defined()) layer.down_bias = ToFloats(w("mlp.down_proj.bias"));
      f.layers_.push_back(std::move(layer));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("FastDecoder: ", e.what_without_backtrace()));
  }
  return decoder;
}

absl::StatusOr<std::unique_ptr<FastDecoder>> FastDecoder::Load(
    const std::string& dir, const FastDecoderOptions& options) {
  ModelOptions model_options;
  model_options.dtype = at::kFloat;
  model_options.layer_begin = options.layer_begin;
  model_options.layer_end = options.layer_end;
  model_options.load_embedding = options.load_embedding;
  model_options.load_head = options.load_head;
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::Load(dir, model_options));
  return FromModel(*model, options);
}

int64_t FastDecoder::weight_bytes() const {
  int64_t total = step_bytes(layer_begin_, layer_end_, lm_head_ != nullptr || !final_norm_.empty());
  if (embedding_ != nullptr && lm_head_ != nullptr) total += embedding_->bytes();
  return total;
}

int64_t FastDecoder::step_bytes(int64_t begin, int64_t end, bool head) const {
  int64_t total = 0;
  auto floats = [](const std::vector<float>& v) { return static_cast<int64_t>(v.size()) * 4; };
  for (int64_t l = std::max(begin, layer_begin_); l < std::min(end, layer_end_); ++l) {
    const decode::LayerWeights& w = layers_[l - layer_begin_];
    total += w.qkv.bytes() + w.o.bytes() + w.gate_up.bytes() + w.down.bytes();
    total += floats(w.input_norm) + floats(w.post_norm) + floats(w.qkv_bias) + floats(w.o_bias) +
             floats(w.gate_up_bias) + floats(w.down_bias);
  }
  if (head) {
    total += floats(final_norm_);
    if (lm_head_ != nullptr) {
      total += lm_head_->bytes();
    } else if (embedding_ != nullptr) {
      total += embedding_->bytes();
    }
  }
  return total;
}

std::unique_ptr<DecodeWorkspace> FastDecoder::NewWorkspace(int64_t max_rows,
                                                           ThreadPool* pool) const {
  auto ws = std::unique_ptr<DecodeWorkspace>(new DecodeWorkspace());
  ws->max_rows_ = std::max<int64_t>(1, max_rows);
  ws->pool_ = pool;
  const int64_t r = ws->max_rows_;
  ws->hidden_.assign(r * d_pad_, 0.0f);
  ws->normed_.assign(r * d_pad_, 0.0f);
  ws->qkv_.assign(r * qkv_pad_, 0.0f);
  ws->attn_.assign(r * PadToBlock(q_dim_), 0.0f);
  ws->gate_up_.assign(r * PadToBlock(2 * config_.intermediate_size), 0.0f);
  ws->act_.assign(r * ff_pad_, 0.0f);
  ws->out_.assign(r * d_pad_, 0.0f);
  ws->rotary_.assign(r * config_.head_dim, 0.0f);
  return ws;
}

absl::StatusOr<std::unique_ptr<KVCache>> FastDecoder::NewCache(int64_t capacity) const {
  return NewCache(capacity, layer_begin_, layer_end_);
}

absl::StatusOr<std::unique_ptr<KVCache>> FastDecoder::NewCache(int64_t capacity, int64_t begin,
                                                               int64_t end) const {
  if (begin < layer_begin_ || end > layer_end_) {
    return absl::InvalidArgumentError("NewCache: layers outside the held range");
  }
  try {
    return KVCache::Create(config_, begin, end, capacity, at::kFloat);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("NewCache: ", e.what_without_backtrace()));
  }
}

void FastDecoder::Linear(const QuantizedMatrix& w, const float* x, int64_t rows,
                         int64_t x_stride, float* y, int64_t y_stride, ThreadPool* pool) const {
  const decode::MatrixView view = w.view();
  const int64_t m = w.rows();
  const int threads = pool != nullptr ? pool->threads() : 1;
  // Below ~64 output rows a second thread costs more in hand-off than it saves.
  if (threads == 1 || m < 64) {
    decode::MatMul(view, x, rows, x_stride, y, y_stride, 0, m);
    return;
  }
  // Four chunks per thread: a thread that is descheduled (a loaded machine)
  // holds up at most the chunk it claimed; the others take the rest.
  const int64_t pieces = 4 * threads;
  const int64_t chunk = std::max<int64_t>(16, ((m + pieces - 1) / pieces + 3) / 4 * 4);
  pool->ParallelFor((m + chunk - 1) / chunk, [&](int64_t t) {
    const int64_t lo = t * chunk, hi = std::min(m, lo + chunk);
    decode::MatMul(view, x, rows, x_stride, y, y_stride, lo, hi);
  });
}

absl::Status FastDecoder::Embed(absl::Span<const int32_t> ids, float* out) const {
  if (embedding_ == nullptr || !options_.load_embedding) {
    return absl::FailedPreconditionError("Embed: the embedding was not loaded");
  }
  for (int32_t id : ids) {
    if (id < 0 || id >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("Embed: token id ", id,
                                                     " outside the vocabulary of ",
                                                     config_.vocab_size));
    }
  }
  std::vector<float> row(embedding_->padded_cols());
  const decode::MatrixView view = embedding_->view();
  for (size_t i = 0; i < ids.size(); ++i) {
    decode::DequantizeRow(view, ids[i], row.data());
    std::memcpy(out + i * d_, row.data(), d_ * sizeof(float));
  }
  return absl::OkStatus();
}

absl::Status FastDecoder::ForwardLayers(int64_t begin, int64_t end, float* hidden, int64_t rows,
                                        int64_t first_position, KVCache* cache,
                                        DecodeWorkspace* ws) const {
  if (begin < layer_begin_ || end > layer_end_ || begin > end) {
    return absl::InvalidArgumentError(absl::StrCat("ForwardLayers: [", begin, ", ", end,
                                                   ") is outside the held layers [",
                                                   layer_begin_, ", ", layer_end_, ")"));
  }
  if (rows < 1 || hidden == nullptr) {
    return absl::InvalidArgumentError("ForwardLayers: needs at least one row");
  }
  if (first_position < 0) return absl::InvalidArgumentError("positions must be non-negative");
  if (cache == nullptr || ws == nullptr) {
    return absl::InvalidArgumentError("ForwardLayers: needs a cache and a workspace");
  }
  for (int64_t l = begin; l < end; ++l) {
    if (!cache->HoldsLayer(l)) {
      return absl::InvalidArgumentError(absl::StrCat("ForwardLayers: cache lacks layer ", l));
    }
    if (cache->mutable_data(l, false) == nullptr) {
      return absl::InvalidArgumentError("ForwardLayers: the decode path needs an fp32 cache");
    }
    if (cache->length(l) != first_position) {
      return absl::InvalidArgumentError(absl::StrCat("ForwardLayers: layer ", l, " holds ",
                                                     cache->length(l),
                                                     " positions but the rows start at position ",
                                                     first_position));
    }
  }
  if (first_position + rows > cache->capacity()) {
    return absl::OutOfRangeError(absl::StrCat("ForwardLayers: position ",
                                              first_position + rows - 1,
                                              " exceeds the cache capacity ", cache->capacity()));
  }
  if (begin == end) return absl::OkStatus();
  for (int64_t done = 0; done < rows; done += ws->max_rows_) {
    const int64_t n = std::min(ws->max_rows_, rows - done);
    RunChunk(begin, end, hidden + done * d_, n, first_position + done, cache, ws);
  }
  return absl::OkStatus();
}

void FastDecoder::RunChunk(int64_t begin, int64_t end, float* hidden, int64_t rows,
                           int64_t first, KVCache* cache, DecodeWorkspace* ws) const {
  const ModelConfig& c = config_;
  const int64_t hd = c.head_dim, half = hd / 2;
  const int64_t heads = c.num_attention_heads, kv_heads = c.num_key_value_heads;
  const int64_t group = heads / kv_heads;
  const int64_t ff = c.intermediate_size;
  const int64_t attn_stride = PadToBlock(q_dim_);
  const int64_t gu_stride = PadToBlock(2 * ff);
  const float eps = static_cast<float>(c.rms_norm_eps);
  ThreadPool* pool = ws->pool_;
  const int threads = pool != nullptr ? pool->threads() : 1;
  float* x = ws->hidden_.data();
  for (int64_t r = 0; r < rows; ++r) std::memcpy(x + r * d_pad_, hidden + r * d_, d_ * 4);
  // Rotary tables for these positions, shared by every layer: angles in fp32
  // as Model computes them.
  float* rot = ws->rotary_.data();
  for (int64_t r = 0; r < rows; ++r) {
    const float pos = static_cast<float>(first + r);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = pos * inv_freq_[i];
      rot[r * hd + i] = std::cos(angle);
      rot[r * hd + half + i] = std::sin(angle);
    }
  }
  const int64_t capacity = cache->capacity();
  const int64_t max_keys = first + rows;
  if (static_cast<int64_t>(ws->scores_.size()) < 4 * threads * max_keys) {
    ws->scores_.resize(4 * threads * max_keys);
  }
  for (int64_t l = begin; l < end; ++l) {
    const decode::LayerWeights& w = layers_[l - layer_begin_];
    float* xn = ws->normed_.data();
    for (int64_t r = 0; r < rows; ++r) {
      decode::RmsNorm(x + r * d_pad_, w.input_norm.data(), d_, eps, xn + r * d_pad_);
    }
    float* qkv = ws->qkv_.data();
    Linear(w.qkv, xn, rows, d_pad_, qkv, qkv_pad_, pool);
    AddBias(w.qkv_bias, qkv, rows, qkv_pad_);
    float* keys = cache->mutable_data(l, false);
    float* values = cache->mutable_data(l, true);
    for (int64_t r = 0; r < rows; ++r) {
      float* row = qkv + r * qkv_pad_;
      const float* cs = rot + r * hd;
      for (int64_t h = 0; h < heads; ++h) Rotate(row + h * hd, cs, cs + half, half);
      for (int64_t h = 0; h < kv_heads; ++h) {
        float* k = row + q_dim_ + h * hd;
        Rotate(k, cs, cs + half, half);
        const int64_t slot = (h * capacity + first + r) * hd;
        std::memcpy(keys + slot, k, hd * 4);
        std::memcpy(values + slot, row + q_dim_ + kv_dim_ + h * hd, hd * 4);
      }
    }
    // Cannot fail: ForwardLayers checked the capacity and every layer's length.
    (void)cache->Extend(l, rows);
    // Attention: (row, head) pairs spread over the threads when there is
    // enough work to pay for the hand-off.
    float* attn = ws->attn_.data();
    const int64_t pairs = rows * heads;
    auto attend = [&](int64_t t, int64_t lo, int64_t hi) {
      float* scores = ws->scores_.data() + t * max_keys;  // one slice per task
      for (int64_t i = lo; i < hi; ++i) {
        const int64_t r = i / heads, h = i % heads;
        const int64_t pos = first + r;
        const int64_t start =
            c.sliding_window > 0 ? std::max<int64_t>(0, pos + 1 - c.sliding_window) : 0;
        const int64_t kvh = h / group;
        const int64_t base = (kvh * capacity + start) * hd;
        decode::AttendHead(qkv + r * qkv_pad_ + h * hd, keys + base, values + base,
                           pos + 1 - start, hd, attention_scale_, scores,
                           attn + r * attn_stride + h * hd);
      }
    };
    if (threads > 1 && pairs * max_keys * hd >= 32768) {
      const int64_t tasks = std::min<int64_t>(pairs, 4 * threads);
      const int64_t chunk = (pairs + tasks - 1) / tasks;
      pool->ParallelFor(tasks, [&](int64_t t) {
        attend(t, t * chunk, std::min(pairs, (t + 1) * chunk));
      });
    } else {
      attend(0, 0, pairs);
    }
    float* out = ws->out_.data();
    Linear(w.o, attn, rows, attn_stride, out, d_pad_, pool);
    AddBias(w.o_bias, out, rows, d_pad_);
    for (int64_t r = 0; r < rows; ++r) {
      float* xr = x + r * d_pad_;
      const float* o = out + r * d_pad_;
      for (int64_t i = 0; i < d_; ++i) xr[i] += o[i];
      decode::RmsNorm(xr, w.post_norm.data(), d_, eps, xn + r * d_pad_);
    }
    float* gu = ws->gate_up_.data();
    Linear(w.gate_up, xn, rows, d_pad_, gu, gu_stride, pool);
    AddBias(w.gate_up_bias, gu, rows, gu_stride);
    float* act = ws->act_.data();
    for (int64_t r = 0; r < rows; ++r) {
      decode::SwiGlu(gu + r * gu_stride, gu + r * gu_stride + ff, ff, act + r * ff_pad_);
    }
    Linear(w.down, act, rows, ff_pad_, out, d_pad_, pool);
    AddBias(w.down_bias, out, rows, d_pad_);
    for (int64_t r = 0; r < rows; ++r) {
      float* xr = x + r * d_pad_;
      const float* o = out + r * d_pad_;
      for (int64_t i = 0; i < d_; ++i) xr[i] += o[i];
    }
  }
  for (int64_t r = 0; r < rows; ++r) std::memcpy(hidden + r * d_, x + r * d_pad_, d_ * 4);
}

absl::Status FastDecoder::Logits(const float* hidden, int64_t rows, float* logits,
                                 DecodeWorkspace* ws, const FastExitHead* exit) const {
  if (final_norm_.empty() || (embedding_ == nullptr && lm_head_ == nullptr)) {
    return absl::FailedPreconditionError("Logits: the head was not loaded");
  }
  if (ws == nullptr) return absl::InvalidArgumentError("Logits: needs a workspace");
  if (exit != nullptr &&
      (static_cast<int64_t>(exit->norm.size()) != d_ ||
       static_cast<int64_t>(exit->down.size()) != exit->rank * d_ ||
       static_cast<int64_t>(exit->up.size()) != exit->rank * d_)) {
    return absl::InvalidArgumentError("Logits: the exit head does not match the model");
  }
  const QuantizedMatrix& head = lm_head_ != nullptr ? *lm_head_ : *embedding_;
  const float* norm = exit != nullptr ? exit->norm.data() : final_norm_.data();
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const int64_t v = config_.vocab_size;
  std::vector<float> low_rank(exit != nullptr ? exit->rank : 0);
  for (int64_t done = 0; done < rows; done += ws->max_rows_) {
    const int64_t n = std::min(ws->max_rows_, rows - done);
    float* xn = ws->normed_.data();
    for (int64_t r = 0; r < n; ++r) {
      float* row = xn + r * d_pad_;
      decode::RmsNorm(hidden + (done + r) * d_, norm, d_, eps, row);
      if (exit != nullptr && exit->rank > 0) {
        // x + up (down x), the adapter in fp32 (rank is small: plain loops).
        for (int64_t k = 0; k < exit->rank; ++k) {
          float s = 0.0f;
          const float* dk = exit->down.data() + k * d_;
          for (int64_t i = 0; i < d_; ++i) s += dk[i] * row[i];
          low_rank[k] = s;
        }
        for (int64_t i = 0; i < d_; ++i) {
          float s = 0.0f;
          const float* ui = exit->up.data() + i * exit->rank;
          for (int64_t k = 0; k < exit->rank; ++k) s += ui[k] * low_rank[k];
          row[i] += s;
        }
      }
    }
    Linear(head, xn, n, d_pad_, logits + done * v, v, ws->pool_);
  }
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> FastDecoder::EmbedTensor(const at::Tensor& ids) const {
  if (!ids.defined() || ids.scalar_type() != at::kLong || ids.dim() != 1) {
    return absl::InvalidArgumentError("Embed: ids must be int64 [T]");
  }
  try {
    at::Tensor c = ids.contiguous();
    std::vector<int32_t> v(c.numel());
    for (int64_t i = 0; i < c.numel(); ++i) {
      const int64_t id = c.data_ptr<int64_t>()[i];
      v[i] = id < 0 || id >= config_.vocab_size ? -1 : static_cast<int32_t>(id);
      if (v[i] < 0) {
        return absl::InvalidArgumentError(absl::StrCat("Embed: token id ", id,
                                                       " outside the vocabulary of ",
                                                       config_.vocab_size));
      }
    }
    at::Tensor out = at::empty({c.numel(), d_}, at::kFloat);
    TANDEM_RETURN_IF_ERROR(Embed(v, out.data_ptr<float>()));
    return out;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("Embed: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<at::Tensor> FastDecoder::ForwardLayersTensor(int64_t begin, int64_t end,
                                                            const at::Tensor& hidden,
                                                            int64_t first_position,
                                                            KVCache* cache,
                                                            DecodeWorkspace* ws) const {
  if (!hidden.defined() || hidden.dim() != 2 || hidden.size(1) != d_) {
    return absl::InvalidArgumentError(
        absl::StrCat("ForwardLayers: hidden must be [T, ", d_, "]"));
  }
  try {
    at::Tensor x = hidden.to(at::kFloat).contiguous().clone();
    std::unique_ptr<DecodeWorkspace> temporary;
    if (ws == nullptr) {
      temporary = NewWorkspace(std::min<int64_t>(hidden.size(0), 8), nullptr);
      ws = temporary.get();
    }
    TANDEM_RETURN_IF_ERROR(ForwardLayers(begin, end, x.data_ptr<float>(), x.size(0),
                                         first_position, cache, ws));
    return x;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("ForwardLayers: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<at::Tensor> FastDecoder::LogitsTensor(const at::Tensor& hidden,
                                                     DecodeWorkspace* ws,
                                                     const FastExitHead* exit) const {
  if (!hidden.defined() || hidden.dim() < 1 || hidden.size(-1) != d_) {
    return absl::InvalidArgumentError("Logits: last dimension must be the hidden size");
  }
  try {
    at::Tensor x = hidden.to(at::kFloat).reshape({-1, d_}).contiguous();
    std::vector<int64_t> shape(hidden.sizes().begin(), hidden.sizes().end());
    shape.back() = config_.vocab_size;
    at::Tensor out = at::empty({x.size(0), config_.vocab_size}, at::kFloat);
    std::unique_ptr<DecodeWorkspace> temporary;
    if (ws == nullptr) {
      temporary = NewWorkspace(std::min<int64_t>(x.size(0), 8), nullptr);
      ws = temporary.get();
    }
    TANDEM_RETURN_IF_ERROR(Logits(x.data_ptr<float>(), x.size(0), out.data_ptr<float>(), ws, exit));
    return out.view(shape);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("Logits: ", e.what_without_backtrace()));
  }
}

}  // namespace tandem
