#include "fuzz_target.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace tandem::fuzz {

std::map<std::string, FuzzFunction>& Registry() {
  static auto* registry = new std::map<std::string, FuzzFunction>();
  return *registry;
}

bool Register(const char* name, FuzzFunction function) {
  Registry()[name] = function;
  return true;
}

ScratchFile::ScratchFile(const std::string& suffix, const uint8_t* data, size_t size) {
  const char* dir = std::getenv("TMPDIR");
  path_ = std::string(dir != nullptr ? dir : "/tmp") + "/tandem_fuzz_" +
          std::to_string(getpid()) + suffix;
  if (std::FILE* f = std::fopen(path_.c_str(), "wb")) {
    if (size > 0) std::fwrite(data, 1, size, f);
    std::fclose(f);
  }
}

ScratchFile::~ScratchFile() { std::remove(path_.c_str()); }

}  // namespace tandem::fuzz
