// The hidden-state codec (common/include/tandem/codec.h) on NumPy arrays:
// encode reads a C-contiguous float32 array in place (other inputs are
// converted once), decode's output array owns the decoder's buffer (no copy
// after decoding). The Python wrappers in tandem/codec.py add torch tensors.
#include <memory>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "numpy_convert.h"
#include "tandem/codec.h"

namespace py = pybind11;

namespace tandem::python {
namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

py::bytes Encode(const FloatArray& array, const std::string& spec_name) {
  const CodecSpec spec = ValueOrThrow(ParseCodecSpec(spec_name));
  if (array.ndim() < 1 || array.ndim() > 2) {
    throw py::value_error("codec: expected [dim] or [rows, dim], got " +
                          std::to_string(array.ndim()) + " dimensions");
  }
  const int64_t dim = array.shape(array.ndim() - 1);
  const int64_t rows = array.ndim() == 2 ? array.shape(0) : 1;
  std::string out;
  {
    py::gil_scoped_release release;
    out = ValueOrThrow(EncodeHidden(array.data(), rows, dim, spec));
  }
  return py::bytes(out);
}

py::array Decode(const py::bytes& buffer, int64_t expected_dim, int64_t max_rows) {
  if (expected_dim < 0) throw py::value_error("codec: expected_dim must be >= 0");
  if (max_rows < 0) throw py::value_error("codec: max_rows must be >= 0");
  char* data = nullptr;
  Py_ssize_t size = 0;
  if (PyBytes_AsStringAndSize(buffer.ptr(), &data, &size) != 0) throw py::error_already_set();
  absl::StatusOr<DecodedHidden> decoded;
  {
    // `buffer` is immutable and referenced by the caller: safe without the GIL.
    py::gil_scoped_release release;
    decoded = DecodeHidden(absl::string_view(data, static_cast<size_t>(size)), expected_dim,
                           max_rows);
  }
  DecodedHidden d = ValueOrThrow(std::move(decoded));
  auto* values = new std::vector<float>(std::move(d.values));
  py::capsule owner(values, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  return py::array_t<float>({static_cast<py::ssize_t>(d.rows), static_cast<py::ssize_t>(d.dim)},
                            values->data(), owner);
}

}  // namespace

void BindCodec(py::module_& m) {
  py::module_ c = m.def_submodule("_codec", "Hidden-state codec (see tandem.codec).");
  c.def("encode", &Encode, py::arg("array"), py::arg("spec"),
        "float32 [rows, dim] or [dim] -> bytes (see tandem.codec.encode).");
  c.def("decode", &Decode, py::arg("buffer"), py::arg("expected_dim") = 0,
        py::arg("max_rows") = 65536, "bytes -> float32 [rows, dim] (see tandem.codec.decode).");
  c.def(
      "canonical_name",
      [](const std::string& spec) { return CodecSpecName(ValueOrThrow(ParseCodecSpec(spec))); },
      py::arg("spec"));
  c.def(
      "encoded_size",
      [](int64_t rows, int64_t dim, const std::string& spec) {
        const int64_t n = EncodedSizeUncompressed(rows, dim, ValueOrThrow(ParseCodecSpec(spec)));
        if (n < 0) throw py::value_error("codec: invalid shape");
        return n;
      },
      py::arg("rows"), py::arg("dim"), py::arg("spec"));
  c.attr("HEADER_BYTES") = kHiddenHeaderBytes;
}

}  // namespace tandem::python
