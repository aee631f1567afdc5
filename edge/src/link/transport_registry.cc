#include "link/transport_registry.h"

#include <atomic>

namespace tandem::edge::link {
namespace {

// Constant-initialised (std::atomic of a pointer has a constexpr constructor),
// so a registration made by another library's static initialiser can never
// run before it.
std::atomic<TransportFactory> g_default_factory{nullptr};

}  // namespace

void SetDefaultTransportFactory(TransportFactory factory) {
  g_default_factory.store(factory, std::memory_order_release);
}

TransportFactory DefaultTransportFactory() {
  return g_default_factory.load(std::memory_order_acquire);
}

}  // namespace tandem::edge::link
