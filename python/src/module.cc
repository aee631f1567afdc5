// The `tandem._tandem` extension module. One file per bound class.
#include <pybind11/pybind11.h>

#include "numpy_convert.h"

namespace tandem::python {
void BindModel(pybind11::module_& m);
void BindTokenizer(pybind11::module_& m);
}  // namespace tandem::python

PYBIND11_MODULE(_tandem, m) {
  m.doc() = "Tandem: cloud-edge collaborative LLM inference with early exit";
  pybind11::register_exception<tandem::python::NotFound>(m, "NotFoundError", PyExc_LookupError);
  tandem::python::BindModel(m);
  tandem::python::BindTokenizer(m);
}
