#include "core/memory_release.h"

#include <malloc.h>

#include <fstream>
#include <string>

namespace tandem::cloud {

void ReturnFreeMemory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

int64_t ResidentBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      try {
        return std::stoll(line.substr(6)) * 1024;  // "VmRSS:   123456 kB"
      } catch (...) {
        return -1;
      }
    }
  }
  return -1;
}

}  // namespace tandem::cloud
