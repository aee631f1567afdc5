#include "py_callbacks.h"

namespace py = pybind11;

namespace tandem::python {

bool PyBridge::Poll() {
  if (failed_.load()) return false;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_poll_ < interval_) return true;
  last_poll_ = now;
  py::gil_scoped_acquire gil;
  return CheckSignalsLocked();
}

bool PyBridge::CheckSignalsLocked() {
  if (failed_.load()) return false;
  if (PyErr_CheckSignals() != 0) {
    Fail(py::error_already_set());
    return false;
  }
  return true;
}

void PyBridge::Fail(py::error_already_set&& e) {
  if (!error_) error_ = std::make_unique<py::error_already_set>(std::move(e));
  failed_.store(true);
}

void PyBridge::RethrowIfFailed() {
  if (!error_) return;
  std::unique_ptr<py::error_already_set> e = std::move(error_);
  throw py::error_already_set(std::move(*e));
}

}  // namespace tandem::python
