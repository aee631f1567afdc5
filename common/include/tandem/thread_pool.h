// ThreadPool: a small fork-join pool for the decode path (fast_decoder.h). One
// decode step runs a few dozen short parallel loops (one per projection, a few
// microseconds each), so the pool's workers spin briefly between loops before
// they sleep; a sleeping worker wakes on a condition variable.
//
// The pool is owned by the application (or a binary's main): nothing in the
// library creates one or changes any process-wide thread setting. Size it to
// the cores the application can spare — on a loaded machine, more threads than
// free cores makes each loop wait for a descheduled worker.
//
// Thread-safety: ParallelFor may be called from one thread at a time (the
// pool's owner); the callback runs on that thread and on the workers at once.
#ifndef TANDEM_THREAD_POOL_H_
#define TANDEM_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tandem {

class ThreadPool {
 public:
  // `threads` >= 1 counts the calling thread: ThreadPool(2) starts one worker.
  // Values < 1 are taken as 1.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(task) for every task in [0, tasks) (tasks < 65536), spread over
  // the threads (the caller takes part), and returns when all have finished.
  // `fn` must not throw and must not call ParallelFor on the same pool.
  void ParallelFor(int64_t tasks, const std::function<void(int64_t task)>& fn);

 private:
  void WorkerLoop();
  // Claims and runs tasks of generation `gen` until none is left (or a newer
  // generation started); returns how many this thread ran.
  void RunTasks(uint64_t gen, const std::function<void(int64_t)>* fn);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;  // guarded by mu_
  // Each ParallelFor is a generation. claim_ packs (generation:32, tasks:16,
  // next task:16): a thread claims a task with a compare-and-swap that fails
  // once the generation has moved on, so a worker that wakes late never runs
  // a stale task and the caller never waits for a worker that has not
  // claimed anything — on a loaded machine the caller simply runs more of
  // the tasks itself.
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> claim_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<const std::function<void(int64_t)>*> fn_{nullptr};
};

}  // namespace tandem

#endif  // TANDEM_THREAD_POOL_H_
