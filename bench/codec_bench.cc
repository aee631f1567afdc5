// Hidden-state codec throughput (tandem/codec.h): encode and decode per format,
// for one decode-step row (1 x 256), a small batch (16 x 256) and one wide row
// (1 x 4096). bytes_per_second counts the fp32 hidden state (rows * dim * 4);
// the `encoded_bytes` counter is the size of one encoded buffer.
// Data: Gaussian rows with two outlier channels (x20), shaped like real hidden
// states; only zstd's speed and ratio depend on the values.
//   tandem_bench --benchmark_filter=Codec
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "tandem/codec.h"

namespace tandem {
namespace {

std::vector<float> HiddenLike(int64_t rows, int64_t dim) {
  std::mt19937_64 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(rows * dim);
  for (auto& v : x) v = dist(rng);
  for (int64_t r = 0; r < rows; ++r) {
    x[r * dim + 7 % dim] *= 20.0f;
    x[r * dim + 100 % dim] *= 20.0f;
  }
  return x;
}

void SetCounters(benchmark::State& state, int64_t rows, int64_t dim, size_t encoded) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * rows * dim * 4);
  state.counters["encoded_bytes"] = static_cast<double>(encoded);
  state.counters["bytes_per_row"] = static_cast<double>(encoded) / static_cast<double>(rows);
}

void BM_CodecEncode(benchmark::State& state, CodecSpec spec, int64_t rows, int64_t dim) {
  const std::vector<float> x = HiddenLike(rows, dim);
  size_t encoded = 0;
  for (auto _ : state) {
    auto out = EncodeHidden(x.data(), rows, dim, spec);
    if (!out.ok()) {
      state.SkipWithError(std::string(out.status().message()).c_str());
      return;
    }
    encoded = out->size();
    benchmark::DoNotOptimize(out->data());
  }
  SetCounters(state, rows, dim, encoded);
}

void BM_CodecDecode(benchmark::State& state, CodecSpec spec, int64_t rows, int64_t dim) {
  const std::vector<float> x = HiddenLike(rows, dim);
  const auto buffer = EncodeHidden(x.data(), rows, dim, spec);
  if (!buffer.ok()) {
    state.SkipWithError(std::string(buffer.status().message()).c_str());
    return;
  }
  for (auto _ : state) {
    auto out = DecodeHidden(*buffer, dim, rows);
    if (!out.ok()) {
      state.SkipWithError(std::string(out.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(out->values.data());
  }
  SetCounters(state, rows, dim, buffer->size());
}

const bool kRegistered = [] {
  const char* const specs[] = {"fp32", "fp16",      "bf16",      "int8",
                               "int4", "int4-g64",  "int8+zstd", "int4+zstd"};
  const std::pair<int64_t, int64_t> shapes[] = {{1, 256}, {16, 256}, {1, 4096}};
  for (const char* name : specs) {
    const CodecSpec spec = ParseCodecSpec(name).value();
    for (const auto& [rows, dim] : shapes) {
      const std::string suffix = std::string(name) + "/" + std::to_string(rows) + "x" +
                                 std::to_string(dim);
      benchmark::RegisterBenchmark(("BM_CodecEncode/" + suffix).c_str(), BM_CodecEncode, spec,
                                   rows, dim);
      benchmark::RegisterBenchmark(("BM_CodecDecode/" + suffix).c_str(), BM_CodecDecode, spec,
                                   rows, dim);
    }
  }
  return true;
}();

}  // namespace
}  // namespace tandem
