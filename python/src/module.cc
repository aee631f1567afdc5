// The `tandem._tandem` extension module. One file per bound concept.
#include <pybind11/pybind11.h>

#include "bindings.h"
#include "numpy_convert.h"
#include "tandem/threads.h"

PYBIND11_MODULE(_tandem, m) {
  namespace py = pybind11;
  m.doc() = "Tandem: cloud-edge collaborative LLM inference with early exit";
  py::register_exception<tandem::python::NotFound>(m, "NotFoundError", PyExc_LookupError);
  py::register_exception<tandem::python::Cancelled>(m, "CancelledError", PyExc_RuntimeError);
  m.def(
      "set_threads", [](int threads) { return tandem::SetComputeThreads(threads); },
      py::arg("threads"),
      "Sets the intra-op threads of libtorch and OpenBLAS, process-wide; <= 0 means\n"
      "$OMP_NUM_THREADS if set, else every core. Returns the number in effect. Call\n"
      "before heavy work; not thread-safe.");
  tandem::python::BindModel(m);
  tandem::python::BindTokenizer(m);
  tandem::python::BindCodec(m);
  tandem::python::BindEdgeTypes(m);
  tandem::python::BindEdgeSession(m);
  tandem::python::BindCloudServer(m);
  tandem::python::BindExits(m);
}
