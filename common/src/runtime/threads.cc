#include "tandem/threads.h"

#include <dlfcn.h>

#include <cstdlib>
#include <thread>

#include <ATen/Parallel.h>

namespace tandem {
namespace {

// libtorch's matmuls go through the system BLAS (OpenBLAS on Debian), whose
// own thread pool at::set_num_threads does not reach. Its threads spin while
// they wait: on a loaded machine a pool larger than the free cores made one
// cloud step ~50x slower (186 ms vs 3.7 ms). Set it too, when present.
void SetBlasThreads(int threads) {
  using SetThreads = void (*)(int);
  auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set != nullptr) set(threads);
}

}  // namespace

int SetComputeThreads(int threads) {
  if (threads <= 0) {
    const char* env = std::getenv("OMP_NUM_THREADS");
    threads = env != nullptr ? std::atoi(env) : 0;
  }
  if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  if (threads <= 0) threads = 1;
  at::set_num_threads(threads);
  SetBlasThreads(threads);
  return at::get_num_threads();
}

}  // namespace tandem
