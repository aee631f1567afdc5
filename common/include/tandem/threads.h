// Intra-op parallelism of the tensor library. libtorch starts with one thread on
// some machines; Tandem's binaries call SetComputeThreads once at startup.
#ifndef TANDEM_THREADS_H_
#define TANDEM_THREADS_H_

namespace tandem {

// Sets the number of threads matmuls and other ops may use — libtorch's pool and
// the system BLAS's (OpenBLAS), which libtorch does not control. `threads` <= 0 means
// $OMP_NUM_THREADS if set, otherwise every core. Returns the number now in effect.
// Call before any tensor work; not thread-safe.
int SetComputeThreads(int threads);

}  // namespace tandem

#endif  // TANDEM_THREADS_H_
