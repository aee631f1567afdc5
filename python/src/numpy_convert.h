// NumPy <-> at::Tensor copies for the bindings, text, and Status -> Python exception.
#ifndef TANDEM_PYTHON_NUMPY_CONVERT_H_
#define TANDEM_PYTHON_NUMPY_CONVERT_H_

#include <stdexcept>

#include <ATen/core/Tensor.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tandem::python {

// Raising is safe with the GIL released: only C++ exceptions are thrown and
// pybind11 translates them once the GIL is back.

// Copies a NumPy array (any of int32/int64 for ids, float32/float64 for values)
// into a new CPU tensor: int64 for integer arrays, float32 for float arrays.
at::Tensor ToTensor(const pybind11::array& array);
// Copies a tensor into a new float32 (or int64 for integer tensors) NumPy array.
pybind11::array ToNumpy(const at::Tensor& tensor);

// Thrown for absl::StatusCode::kNotFound; registered as tandem.NotFoundError
// (a LookupError). Safe to throw without the GIL.
class NotFound : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// UTF-8 bytes -> str; invalid sequences become U+FFFD instead of raising
// (token text can end inside a character). Needs the GIL.
inline pybind11::str Utf8(const std::string& s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (o == nullptr) throw pybind11::error_already_set();
  return pybind11::reinterpret_steal<pybind11::str>(o);
}

// Thrown for absl::StatusCode::kCancelled (a progress callback returned
// False); registered as tandem.CancelledError (a RuntimeError).
class Cancelled : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Raises ValueError (InvalidArgument/OutOfRange), LookupError (NotFound),
// tandem.CancelledError (Cancelled), RuntimeError (everything else, prefixed
// with the status code's name) with the status message.
[[noreturn]] void Raise(const absl::Status& status);
inline void ThrowIfError(const absl::Status& status) {
  if (!status.ok()) Raise(status);
}
template <typename T>
T ValueOrThrow(absl::StatusOr<T> v) {
  if (!v.ok()) Raise(v.status());
  return std::move(v).value();
}

}  // namespace tandem::python

#endif  // TANDEM_PYTHON_NUMPY_CONVERT_H_
