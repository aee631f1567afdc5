// One Bind* function per bound concept; module.cc calls them all.
#ifndef TANDEM_PYTHON_BINDINGS_H_
#define TANDEM_PYTHON_BINDINGS_H_

#include <pybind11/pybind11.h>

namespace tandem::python {

void BindModel(pybind11::module_& m);
void BindTokenizer(pybind11::module_& m);
void BindCodec(pybind11::module_& m);
void BindEdgeTypes(pybind11::module_& m);
void BindEdgeSession(pybind11::module_& m);
void BindCloudServer(pybind11::module_& m);
void BindExits(pybind11::module_& m);

}  // namespace tandem::python

#endif  // TANDEM_PYTHON_BINDINGS_H_
