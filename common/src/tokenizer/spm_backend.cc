// No Abseil header may be included here: see spm_backend.h.
#include "tokenizer/spm_backend.h"

#include <sentencepiece_processor.h>

namespace tandem {
namespace tokenizer_internal {

struct SpmBackend::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

SpmBackend::SpmBackend() : impl_(new Impl) {}
SpmBackend::~SpmBackend() = default;

std::string SpmBackend::Load(const std::string& path) {
  auto status = impl_->processor.Load(path);
  return status.ok() ? std::string() : status.ToString();
}

std::string SpmBackend::Encode(const std::string& text, std::vector<int>* ids) const {
  auto status = impl_->processor.Encode(text, ids);
  return status.ok() ? std::string() : status.ToString();
}

std::string SpmBackend::Decode(const std::vector<int>& ids, std::string* text) const {
  auto status = impl_->processor.Decode(ids, text);
  return status.ok() ? std::string() : status.ToString();
}

int SpmBackend::PieceSize() const { return impl_->processor.GetPieceSize(); }
int SpmBackend::BosId() const { return impl_->processor.bos_id(); }
int SpmBackend::EosId() const { return impl_->processor.eos_id(); }
bool SpmBackend::IsControl(int id) const { return impl_->processor.IsControl(id); }
bool SpmBackend::IsUnknown(int id) const { return impl_->processor.IsUnknown(id); }
int SpmBackend::PieceToId(const std::string& piece) const {
  return impl_->processor.PieceToId(piece);
}
std::string SpmBackend::IdToPiece(int id) const { return impl_->processor.IdToPiece(id); }

}  // namespace tokenizer_internal
}  // namespace tandem
