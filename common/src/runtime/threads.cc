#include "tandem/threads.h"

#include <cstdlib>
#include <thread>

#include <ATen/Parallel.h>

namespace tandem {

int SetComputeThreads(int threads) {
  if (threads <= 0) {
    const char* env = std::getenv("OMP_NUM_THREADS");
    threads = env != nullptr ? std::atoi(env) : 0;
  }
  if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  if (threads <= 0) threads = 1;
  at::set_num_threads(threads);
  return at::get_num_threads();
}

}  // namespace tandem
