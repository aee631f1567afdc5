// Resident memory: reading it, and giving freed heap back to the system
// (internal). glibc keeps freed blocks in its arenas (one per thread that
// allocated, up to 8 x cores); a freed 2 MiB KV cache stays resident until the
// arena's free space is trimmed. docs/decisions.md, "Hardening: resident
// memory", has the measurements behind this.
#ifndef TANDEM_CLOUD_CORE_MEMORY_RELEASE_H_
#define TANDEM_CLOUD_CORE_MEMORY_RELEASE_H_

#include <cstdint>

namespace tandem::cloud {

// Returns free heap memory of every malloc arena to the system
// (malloc_trim(0): releases the top of each heap and MADV_DONTNEEDs free pages
// inside them). Cost: a walk of the arenas' free lists, ~1 ms per GB of heap.
// Thread-safe.
void ReturnFreeMemory();

// This process's resident set size in bytes (VmRSS of /proc/self/status); -1
// when it cannot be read. Thread-safe.
int64_t ResidentBytes();

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_CORE_MEMORY_RELEASE_H_
