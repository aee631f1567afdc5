// Python bindings of Tokenizer.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "numpy_convert.h"
#include "tandem/tokenizer.h"

namespace py = pybind11;

namespace tandem::python {

void BindTokenizer(py::module_& m) {
  py::class_<Tokenizer>(m, "Tokenizer",
                        "HF-compatible tokenizer (tokenizer.json or tokenizer.model).")
      .def_static(
          "load",
          [](const std::string& path) {
            py::gil_scoped_release release;
            return ValueOrThrow(Tokenizer::Load(path));
          },
          py::arg("path"))
      .def(
          "encode",
          [](const Tokenizer& self, const std::string& text, bool add_special_tokens) {
            py::gil_scoped_release release;
            return ValueOrThrow(self.Encode(text, add_special_tokens));
          },
          py::arg("text"), py::arg("add_special_tokens") = true)
      .def(
          "decode",
          [](const Tokenizer& self, const std::vector<int32_t>& ids, bool skip_special_tokens) {
            std::string text;
            {
              py::gil_scoped_release release;
              text = ValueOrThrow(self.Decode(ids, skip_special_tokens));
            }
            return py::str(text);
          },
          py::arg("ids"), py::arg("skip_special_tokens") = false)
      .def_property_readonly("vocab_size", &Tokenizer::vocab_size)
      .def_property_readonly("bos_id", &Tokenizer::bos_id)
      .def_property_readonly("eos_id", &Tokenizer::eos_id);
}

}  // namespace tandem::python
