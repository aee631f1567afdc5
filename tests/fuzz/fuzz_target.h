// One fuzz target = one function over bytes. Built with libFuzzer
// (-DTANDEM_LIBFUZZER, tools/fuzz.sh) a target file is a fuzzer; built into
// the normal test suite it registers itself so that fuzz_regression_test.cc
// replays every committed input (seeds and past crashes) through it.
#ifndef TANDEM_TESTS_FUZZ_FUZZ_TARGET_H_
#define TANDEM_TESTS_FUZZ_FUZZ_TARGET_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace tandem::fuzz {

using FuzzFunction = int (*)(const uint8_t* data, size_t size);
std::map<std::string, FuzzFunction>& Registry();
bool Register(const char* name, FuzzFunction function);

// A temporary file holding `size` bytes, removed by the destructor (for
// loaders that read paths). Under $TMPDIR (default /tmp), one per process.
class ScratchFile {
 public:
  ScratchFile(const std::string& suffix, const uint8_t* data, size_t size);
  ~ScratchFile();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Reads little-endian integers off the front of the input; zeros once empty.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return size_ == 0; }
  size_t remaining() const { return size_; }
  uint8_t U8() { return size_ ? (--size_, *data_++) : 0; }
  uint32_t U32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(U8()) << (8 * i);
    return v;
  }
  float F32() {
    uint32_t bits = U32();
    float f;
    static_assert(sizeof f == sizeof bits);
    __builtin_memcpy(&f, &bits, sizeof f);
    return f;
  }
  // Up to `n` bytes as a string.
  std::string Bytes(size_t n) {
    n = n < size_ ? n : size_;
    std::string s(reinterpret_cast<const char*>(data_), n);
    data_ += n;
    size_ -= n;
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
};

}  // namespace tandem::fuzz

#if defined(TANDEM_LIBFUZZER)
#define TANDEM_FUZZ_TARGET(name) \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
#else
#define TANDEM_FUZZ_TARGET(name)                                                \
  static int TandemFuzz_##name(const uint8_t* data, size_t size);               \
  [[maybe_unused]] static const bool tandem_fuzz_registered_##name =            \
      ::tandem::fuzz::Register(#name, &TandemFuzz_##name);                       \
  static int TandemFuzz_##name(const uint8_t* data, size_t size)
#endif

#endif  // TANDEM_TESTS_FUZZ_FUZZ_TARGET_H_
