// Python bindings of Model, KVCache and full-model generation. Every call that
// computes releases the GIL; every error arrives as a Python exception.
#include <algorithm>
#include <vector>

#include <ATen/ATen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "numpy_convert.h"
#include "tandem/generate.h"
#include "tandem/model.h"

namespace py = pybind11;

namespace tandem::python {
namespace {

absl::StatusOr<at::ScalarType> ParseDType(const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  return absl::InvalidArgumentError("dtype must be float32, bfloat16 or float16, got " + name);
}

py::dict ConfigDict(const ModelConfig& c) {
  py::dict d;
  d["model_type"] = c.model_type;
  d["vocab_size"] = c.vocab_size;
  d["hidden_size"] = c.hidden_size;
  d["intermediate_size"] = c.intermediate_size;
  d["num_hidden_layers"] = c.num_hidden_layers;
  d["num_attention_heads"] = c.num_attention_heads;
  d["num_key_value_heads"] = c.num_key_value_heads;
  d["head_dim"] = c.head_dim;
  d["max_position_embeddings"] = c.max_position_embeddings;
  d["rope_theta"] = c.rope_theta;
  d["rms_norm_eps"] = c.rms_norm_eps;
  d["tie_word_embeddings"] = c.tie_word_embeddings;
  d["attention_bias"] = c.attention_bias;
  return d;
}

at::Tensor Positions(int64_t start, int64_t rows) {
  return at::arange(start, start + rows, at::kLong);
}

}  // namespace

void BindModel(py::module_& m) {
  py::class_<KVCache>(m, "KVCache", "Per-sequence key/value cache of a range of layers.")
      .def("length", &KVCache::length, py::arg("layer"))
      .def_property_readonly("min_length", &KVCache::min_length)
      .def_property_readonly("capacity", &KVCache::capacity)
      .def_property_readonly("allocated_bytes", &KVCache::allocated_bytes)
      .def_property_readonly("used_bytes", &KVCache::used_bytes)
      .def("truncate", &KVCache::Truncate, py::arg("length"));

  py::class_<Model>(m, "Model", "A Llama-family decoder loaded from a Hugging Face directory.")
      .def_static(
          "load",
          [](const std::string& path, const std::string& dtype, int64_t layer_begin,
             int64_t layer_end, bool load_embedding, bool load_head) {
            ModelOptions o;
            o.dtype = ValueOrThrow(ParseDType(dtype));
            o.layer_begin = layer_begin;
            o.layer_end = layer_end;
            o.load_embedding = load_embedding;
            o.load_head = load_head;
            py::gil_scoped_release release;
            return ValueOrThrow(Model::Load(path, o));
          },
          py::arg("path"), py::arg("dtype") = "float32", py::arg("layer_begin") = 0,
          py::arg("layer_end") = -1, py::arg("load_embedding") = true,
          py::arg("load_head") = true)
      .def_property_readonly("config", [](const Model& self) { return ConfigDict(self.config()); })
      .def_property_readonly("weight_bytes", &Model::weight_bytes)
      .def(
          "embed",
          [](const Model& self, const py::array& ids) {
            at::Tensor t = ToTensor(ids);
            at::Tensor out;
            {
              py::gil_scoped_release release;
              at::InferenceMode guard;
              out = ValueOrThrow(self.Embed(t));
            }
            return ToNumpy(out);
          },
          py::arg("ids"), "ids int64 [T] -> hidden float32 [T, D]")
      .def(
          "forward_layers",
          [](const Model& self, int64_t begin, int64_t end, const py::array& hidden,
             int64_t start, KVCache* cache) {
            at::Tensor h = ToTensor(hidden);
            at::Tensor out;
            {
              py::gil_scoped_release release;
              at::InferenceMode guard;
              out = ValueOrThrow(
                  self.ForwardLayers(begin, end, h, Positions(start, h.size(-2)), cache));
            }
            return ToNumpy(out);
          },
          py::arg("begin"), py::arg("end"), py::arg("hidden"), py::arg("start") = 0,
          py::arg("cache") = nullptr,
          "Runs layers [begin, end) on hidden [T, D] (rows at positions start..start+T-1).")
      .def(
          "logits_from_hidden",
          [](const Model& self, const py::array& hidden) {
            at::Tensor h = ToTensor(hidden);
            at::Tensor out;
            {
              py::gil_scoped_release release;
              at::InferenceMode guard;
              out = ValueOrThrow(self.Logits(h));
            }
            return ToNumpy(out);
          },
          py::arg("hidden"), "Final norm + LM head.")
      .def(
          "logits",
          [](const Model& self, const py::array& ids, KVCache* cache) {
            at::Tensor t = ToTensor(ids);
            at::Tensor out;
            {
              py::gil_scoped_release release;
              at::InferenceMode guard;
              const int64_t start = cache != nullptr ? cache->min_length() : 0;
              at::Tensor h = ValueOrThrow(self.Embed(t));
              h = ValueOrThrow(self.ForwardLayers(0, self.config().num_hidden_layers, h,
                                                  Positions(start, t.size(-1)), cache));
              out = ValueOrThrow(self.Logits(h));
            }
            return ToNumpy(out);
          },
          py::arg("ids"), py::arg("cache") = nullptr,
          "Full model: ids int64 [T] -> logits float32 [T, V]; with a cache the ids "
          "continue the cached sequence.")
      .def(
          "hidden_states",
          [](const Model& self, const py::object& ids_in, const std::vector<int64_t>& layers,
             bool as_torch) {
            py::array ids = py::array::ensure(ids_in);
            if (!ids || (ids.dtype().kind() != 'i' && ids.dtype().kind() != 'u')) {
              throw py::value_error("ids must be integers, [T] or [B, T]");
            }
            at::Tensor t = ToTensor(ids.cast<py::array_t<int64_t, py::array::forcecast>>());
            const int64_t num_layers = self.config().num_hidden_layers;
            std::vector<int64_t> wanted = layers;
            std::sort(wanted.begin(), wanted.end());
            wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
            if (wanted.empty()) throw py::value_error("layers is empty");
            if (wanted.front() < 0 || wanted.back() > num_layers) {
              throw py::value_error("layers must be in [0, " + std::to_string(num_layers) + "]");
            }
            std::vector<at::Tensor> states;
            {
              py::gil_scoped_release release;
              at::InferenceMode guard;
              at::Tensor h = ValueOrThrow(self.Embed(t));
              const at::Tensor positions = at::arange(t.size(-1), at::kLong);
              int64_t at_layer = 0;
              for (int64_t l : wanted) {
                if (l > at_layer) {
                  h = ValueOrThrow(self.ForwardLayers(at_layer, l, h, positions, nullptr));
                  at_layer = l;
                }
                states.push_back(h);
              }
            }
            py::dict out;
            py::object from_numpy;
            if (as_torch) from_numpy = py::module_::import("torch").attr("from_numpy");
            for (size_t i = 0; i < wanted.size(); ++i) {
              py::array a = ToNumpy(states[i]);
              out[py::int_(wanted[i])] = as_torch ? from_numpy(a) : py::object(a);
            }
            return out;
          },
          py::arg("ids"), py::arg("layers"), py::arg("as_torch") = false,
          R"doc(Hidden states of a batch of ids at the given layers, as {layer: array}.

ids: int [T] or [B, T] (each row a sequence starting at position 0; no cache).
layers: each in [0, num_hidden_layers]: 0 is the embedding output, l the output
  of decoder layer l - 1 (what an exit head at l sees); L is the last layer's
  output before the final norm.
Returns float32 [T, D] or [B, T, D] per layer (NumPy; torch.Tensor sharing the
memory with as_torch=True). Needs the embedding and layers [0, max(layers)).
Raises ValueError (ids outside the vocabulary, bad layers, layers the model did
not load), RuntimeError (FailedPrecondition: no embedding loaded).)doc")
      .def(
          "new_cache",
          [](const Model& self, int64_t capacity) { return ValueOrThrow(self.NewCache(capacity)); },
          py::arg("capacity"))
      .def(
          "save",
          [](const Model& self, const std::string& dir, const std::string& dtype) {
            at::ScalarType t = ValueOrThrow(ParseDType(dtype));
            py::gil_scoped_release release;
            ThrowIfError(self.Save(dir, t));
          },
          py::arg("dir"), py::arg("dtype") = "float32");

  m.def(
      "generate",
      [](const Model& model, const std::vector<int32_t>& prompt_ids, int32_t max_new_tokens,
         float temperature, int32_t top_k, float top_p, uint64_t seed, int32_t eos_id) {
        GenerateParams p;
        p.max_new_tokens = max_new_tokens;
        p.sampling.temperature = temperature;
        p.sampling.top_k = top_k;
        p.sampling.top_p = top_p;
        p.sampling.seed = seed;
        py::gil_scoped_release release;
        return ValueOrThrow(GenerateFullIds(model, prompt_ids, p, eos_id)).ids;
      },
      py::arg("model"), py::arg("prompt_ids"), py::arg("max_new_tokens") = 32,
      py::arg("temperature") = 0.0f, py::arg("top_k") = 0, py::arg("top_p") = 1.0f,
      py::arg("seed") = 0, py::arg("eos_id") = -1,
      "Full-model generation from token ids; returns the generated ids.");
}

}  // namespace tandem::python
