// FaultyTransport: wraps a Transport and injects faults into its streams —
// delay, drop, reorder, error, and a rewrite hook for messages going up — for
// tests of the link's policy over a real server (tests/e2e) or a fake one.
#ifndef TANDEM_EDGE_LINK_FAULTY_TRANSPORT_H_
#define TANDEM_EDGE_LINK_FAULTY_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/time/time.h"
#include "link/transport.h"

namespace tandem::edge::link {

struct Faults {
  absl::Duration write_delay = absl::ZeroDuration();  // before each message goes up
  absl::Duration read_delay = absl::ZeroDuration();   // before each message is handed down
  double drop_up = 0.0;        // probability a message going up is silently dropped
  double reorder_up = 0.0;     // probability a message going up is held and sent after the next
  // The stream breaks after this many messages up (0 = never).
  int64_t break_after_writes = 0;
  // Opening a stream fails (Unavailable) while this is true.
  bool refuse_open = false;
  // Called on every message going up before it is written (may modify it).
  std::function<void(wire::ClientMessage*)> rewrite_up;
  uint64_t seed = 1;
};

// `faults` is shared: a test may change it between streams (not while one is
// being opened). Thread-safe as Transport.
std::unique_ptr<Transport> MakeFaultyTransport(std::unique_ptr<Transport> inner,
                                               std::shared_ptr<Faults> faults);

}  // namespace tandem::edge::link

#endif  // TANDEM_EDGE_LINK_FAULTY_TRANSPORT_H_
