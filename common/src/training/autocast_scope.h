// RAII bf16 autocast on CPU for training: matmuls in bf16, the rest in fp32.
#ifndef TANDEM_COMMON_SRC_TRAINING_AUTOCAST_SCOPE_H_
#define TANDEM_COMMON_SRC_TRAINING_AUTOCAST_SCOPE_H_

#include <ATen/autocast_mode.h>

namespace tandem {

class AutocastScope {
 public:
  explicit AutocastScope(bool enabled) : enabled_(enabled) {
    if (!enabled_) return;
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
  ~AutocastScope() {
    if (!enabled_) return;
    at::autocast::set_cpu_enabled(false);
    at::autocast::clear_cache();
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_;
};

}  // namespace tandem

#endif  // TANDEM_COMMON_SRC_TRAINING_AUTOCAST_SCOPE_H_
