#include "tandem/thread_pool.h"

#include <chrono>

namespace tandem {
namespace {

// How long an idle worker spins before it sleeps. Long enough to bridge the
// gap between the parallel loops of one decode step, short enough that a
// worker without work gives its core back quickly.
constexpr auto kSpin = std::chrono::microseconds(200);

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

constexpr uint64_t Pack(uint64_t gen, uint64_t tasks, uint64_t next) {
  return (gen << 32) | (tasks << 16) | next;
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::RunTasks(uint64_t gen, const std::function<void(int64_t)>* fn) {
  uint64_t v = claim_.load(std::memory_order_acquire);
  for (;;) {
    if ((v >> 32) != (gen & 0xffffffffu)) return;  // a newer ParallelFor
    const uint64_t tasks = (v >> 16) & 0xffffu, next = v & 0xffffu;
    if (next >= tasks) return;
    if (!claim_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
      continue;  // v was reloaded
    }
    // The claim succeeded for `gen`, so the caller is still inside that
    // ParallelFor (it waits for this task) and `fn` is its function.
    (*fn)(static_cast<int64_t>(next));
    done_.fetch_add(1, std::memory_order_acq_rel);
    v = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::ParallelFor(int64_t tasks, const std::function<void(int64_t)>& fn) {
  if (tasks <= 0) return;
  if (workers_.empty() || tasks == 1) {
    for (int64_t t = 0; t < tasks; ++t) fn(t);
    return;
  }
  const uint64_t gen = (generation_.load(std::memory_order_relaxed) + 1) & 0xffffffffu;
  done_.store(0, std::memory_order_relaxed);
  fn_.store(&fn, std::memory_order_relaxed);
  claim_.store(Pack(gen, static_cast<uint64_t>(tasks), 0), std::memory_order_release);
  {
    // The lock orders the publication against a worker about to sleep.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.store(gen, std::memory_order_release);
  }
  wake_.notify_all();
  RunTasks(gen, &fn);
  while (done_.load(std::memory_order_acquire) != tasks) CpuRelax();
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = generation_.load(std::memory_order_acquire);
  for (;;) {
    const auto spin_until = std::chrono::steady_clock::now() + kSpin;
    uint64_t gen = generation_.load(std::memory_order_acquire);
    int spins = 0;
    while (gen == seen) {
      CpuRelax();
      if (++spins % 64 == 0 && std::chrono::steady_clock::now() > spin_until) {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] {
          return stop_ || generation_.load(std::memory_order_acquire) != seen;
        });
        if (stop_) return;
      }
      gen = generation_.load(std::memory_order_acquire);
    }
    seen = gen;
    // fn_ was stored before generation_ (release/acquire): it is this
    // generation's function or a newer one's, and RunTasks's claim fails for
    // a newer one.
    RunTasks(gen, fn_.load(std::memory_order_acquire));
  }
}

}  // namespace tandem
