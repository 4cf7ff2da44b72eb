// fourierft/core/parallel.hpp — the one thread knob: set_num_threads() (or FOURIERFT_NUM_THREADS)
// sets OpenMP's team size, BLAS's threads and the thread count FFTW plans are made with.
#pragma once

#include <atomic>
#include <cstdlib>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(FOURIERFT_USE_BLAS) && defined(FOURIERFT_BLAS_IS_OPENBLAS)
extern "C" void openblas_set_num_threads(int num_threads);
#endif

#include "fourierft/core/error.hpp"

namespace fourierft {

namespace detail {
inline std::atomic<int>& thread_count() {
  static std::atomic<int> count{0};  // 0: not initialised yet
  return count;
}
}  // namespace detail

// Sets the threads used by every parallel part of fourierft: OpenMP loops over rows, BLAS GEMMs,
// and FFTW plans made after the call. n must be >= 1.
inline void set_num_threads(int n) {
  check(n >= 1, "set_num_threads: need at least 1 thread, got ", n);
  detail::thread_count() = n;
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
#if defined(FOURIERFT_USE_BLAS) && defined(FOURIERFT_BLAS_IS_OPENBLAS)
  openblas_set_num_threads(n);
#endif
}

// The current thread count. On first use it is read from FOURIERFT_NUM_THREADS, else it is the
// number of OpenMP processors.
inline int num_threads() {
  int n = detail::thread_count();
  if (n > 0) return n;
  n = 1;
#ifdef _OPENMP
  n = omp_get_num_procs();
#endif
  if (const char* env = std::getenv("FOURIERFT_NUM_THREADS"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    check(end != env && *end == '\0' && v >= 1 && v <= 4096,
          "FOURIERFT_NUM_THREADS must be a whole number >= 1, got '", env, "'");
    n = static_cast<int>(v);
  }
  set_num_threads(n);
  return n;
}

// Whether the caller runs inside an active OpenMP parallel region (one thread among several).
inline bool in_parallel_region() {
#ifdef _OPENMP
  return omp_in_parallel() != 0;
#else
  return false;
#endif
}

}  // namespace fourierft
