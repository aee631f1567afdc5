// Running long C++ calls with the GIL released while still honouring Ctrl-C
// and Python callbacks.
//
// A PyBridge lives on the stack of a binding that releases the GIL. The C++
// loop calls Poll() (and Call() for a user callback) from the thread that made
// the binding call; each briefly re-acquires the GIL, runs Python's pending
// signal handlers (PyErr_CheckSignals: a SIGINT becomes KeyboardInterrupt
// there, on the main thread) and remembers the first Python exception. The C++
// loop then stops (its callback returns false, or its cancel hook fires) and,
// once the GIL is back, RethrowIfFailed() raises that exception in Python.
#ifndef TANDEM_PYTHON_PY_CALLBACKS_H_
#define TANDEM_PYTHON_PY_CALLBACKS_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <utility>

#include <pybind11/pybind11.h>

namespace tandem::python {

class PyBridge {
 public:
  // Polls signals at most this often (a GIL round trip each time).
  explicit PyBridge(std::chrono::milliseconds interval = std::chrono::milliseconds(20))
      : interval_(interval) {}
  PyBridge(const PyBridge&) = delete;
  PyBridge& operator=(const PyBridge&) = delete;

  // Call WITHOUT the GIL. True while nothing has failed; false once a signal
  // handler or a callback raised (or Stop() was called).
  bool Poll();
  // Call WITHOUT the GIL: runs fn() (which may touch Python objects) with the
  // GIL held and polls signals. Returns false if fn or a handler raised.
  template <typename Fn>
  bool Call(Fn&& fn) {
    if (failed_.load()) return false;
    pybind11::gil_scoped_acquire gil;
    try {
      fn();
    } catch (pybind11::error_already_set& e) {
      Fail(std::move(e));
      return false;
    } catch (const std::exception& e) {
      // A C++ exception out of a Python-facing helper: report it as RuntimeError.
      PyErr_SetString(PyExc_RuntimeError, e.what());
      Fail(pybind11::error_already_set());
      return false;
    }
    return CheckSignalsLocked();
  }
  bool failed() const { return failed_.load(); }
  // Call WITH the GIL: raises the remembered Python exception, if any.
  void RethrowIfFailed();

 private:
  bool CheckSignalsLocked();
  void Fail(pybind11::error_already_set&& e);

  const std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point last_poll_{};
  std::atomic<bool> failed_{false};
  std::unique_ptr<pybind11::error_already_set> error_;  // set once, under the GIL
};

}  // namespace tandem::python

#endif  // TANDEM_PYTHON_PY_CALLBACKS_H_
