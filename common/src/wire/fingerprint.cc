#include "tandem/fingerprint.h"

#include <cstring>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tandem {
namespace {

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

void Mix(uint64_t* h, const void* data, size_t size) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    *h ^= p[i];
    *h *= kFnvPrime;
  }
}

void MixU64(uint64_t* h, uint64_t v) {
  unsigned char bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(v >> (8 * i));  // little-endian
  Mix(h, bytes, 8);
}

}  // namespace

absl::StatusOr<uint64_t> SplitFingerprint(const Model& model, int64_t split) {
  try {
    at::Tensor norm;
    for (const auto& [name, tensor] : model.NamedParameters()) {
      if (name == "model.norm.weight") norm = tensor;
    }
    if (!norm.defined()) {
      return absl::FailedPreconditionError(
          "SplitFingerprint: the model did not load its final norm");
    }
    at::Tensor values = norm.detach().to(at::kFloat).contiguous();
    uint64_t h = kFnvOffset;
    Mix(&h, "tandem-split-fingerprint-v1", 27);
    MixU64(&h, model.config().Fingerprint());
    MixU64(&h, static_cast<uint64_t>(split));
    const float* data = values.data_ptr<float>();
    for (int64_t i = 0; i < values.numel(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &data[i], 4);
      MixU64(&h, bits);
    }
    return h;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("SplitFingerprint: ", e.what_without_backtrace()));
  }
}

std::string FingerprintHex(uint64_t fingerprint) { return absl::StrFormat("%016x", fingerprint); }

}  // namespace tandem
