#include "numpy_convert.h"

#include <cstring>
#include <vector>

#include <ATen/ATen.h>

namespace py = pybind11;

namespace tandem::python {

at::Tensor ToTensor(const py::array& array) {
  std::vector<int64_t> shape(array.shape(), array.shape() + array.ndim());
  if (py::isinstance<py::array_t<int64_t>>(array) || py::isinstance<py::array_t<int32_t>>(array)) {
    auto a = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(array);
    at::Tensor t = at::empty(shape, at::kLong);
    std::memcpy(t.data_ptr(), a.data(), a.nbytes());
    return t;
  }
  auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(array);
  if (!a) throw py::value_error("expected a numeric array");
  at::Tensor t = at::empty(shape, at::kFloat);
  std::memcpy(t.data_ptr(), a.data(), a.nbytes());
  return t;
}

py::array ToNumpy(const at::Tensor& tensor) {
  std::vector<py::ssize_t> shape(tensor.sizes().begin(), tensor.sizes().end());
  if (at::isIntegralType(tensor.scalar_type(), /*includeBool=*/false)) {
    at::Tensor t = tensor.to(at::kLong).contiguous();
    py::array_t<int64_t> out(shape);
    std::memcpy(out.mutable_data(), t.data_ptr(), t.numel() * sizeof(int64_t));
    return out;
  }
  at::Tensor t = tensor.to(at::kFloat).contiguous();
  py::array_t<float> out(shape);
  std::memcpy(out.mutable_data(), t.data_ptr(), t.numel() * sizeof(float));
  return out;
}

void Raise(const absl::Status& status) {
  const std::string msg(status.message());
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      throw py::value_error(msg);
    case absl::StatusCode::kNotFound:
      throw NotFound(msg);
    case absl::StatusCode::kCancelled:
      throw Cancelled(msg);
    default:
      throw std::runtime_error(std::string(absl::StatusCodeToString(status.code())) + ": " + msg);
  }
}

}  // namespace tandem::python
