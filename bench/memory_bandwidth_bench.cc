// This machine's memory read bandwidth, for the benchmark suite's roofline
// (bytes of weights read per token / bandwidth = a lower bound on the time of
// a decode step whose weights come from DRAM). One iteration reads a 1 GiB
// buffer (larger than the last-level cache of the machines here) once, split
// across 1 or 2 threads. bytes_per_second is the mean; best_bytes_per_second
// the fastest iteration (STREAM's convention: on a shared machine the best
// pass is the one least disturbed by other work).
//   tandem_bench --benchmark_filter=MemoryReadBandwidth
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

// Integer adds, so the compiler may vectorise the reduction without
// reassociating floating point; four accumulators hide the add latency.
uint64_t SumRange(const uint64_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  for (; i < n; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3;
}

void BM_MemoryReadBandwidth(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0)) << 20;
  const int threads = static_cast<int>(state.range(1));
  std::vector<uint64_t> data(bytes / sizeof(uint64_t));
  for (size_t i = 0; i < data.size(); ++i) data[i] = i;  // touch every page
  std::vector<uint64_t> sums(threads);
  double best = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    const size_t chunk = data.size() / threads;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        const size_t n = t + 1 == threads ? data.size() - chunk * t : chunk;
        sums[t] = SumRange(data.data() + chunk * t, n);
      });
    }
    for (auto& w : workers) w.join();
    benchmark::DoNotOptimize(sums.data());
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (seconds > 0) best = std::max(best, static_cast<double>(bytes) / seconds);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(bytes));
  state.counters["best_bytes_per_second"] = best;
}
BENCHMARK(BM_MemoryReadBandwidth)->Args({1024, 1})->Args({1024, 2})->UseRealTime()
    ->Unit(benchmark::kMillisecond)->MinTime(1.0);

}  // namespace
