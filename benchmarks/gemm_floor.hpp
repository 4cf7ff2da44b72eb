// benchmarks/gemm_floor.hpp — the GEMM floor of a piece of work: the shape of every detail::gemm
// call recorded while the work runs, then each shape timed alone, so a step's time can be compared
// with the time its matrix products alone take on this machine, measured in the same process.
#pragma once

// The floor of a step is Σ over its distinct GEMM shapes of (calls × the time of one such call),
// each shape timed with the same thread layout as in the step: a call made outside parallel
// regions runs the multi-threaded BLAS alone; calls made inside an OpenMP region (attention's
// per-head products) run `calls` at a time in an OpenMP loop, one per thread, as they ran. Each
// shape's batch of calls is timed `repeats` times and the fastest counts: the floor is the best
// this BLAS does at those shapes, so floor_ratio = step / floor is not flattered.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "fourierft/core/parallel.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/detail/gemm.hpp"

namespace fourierft::bench {



struct GemmCall {
  bool trans_a = false, trans_b = false;
  Index M = 0, N = 0, K = 0;
  bool in_parallel_region = false;
  auto operator<=>(const GemmCall&) const = default;
};

using GemmCalls = std::map<GemmCall, std::int64_t>;  // shape -> number of calls

// Records every gemm() call between start() and stop(), from any thread. One recorder at a time.
class GemmRecorder {
 public:
  static void start() {
    std::lock_guard lock(mutex());
    calls().clear();
    detail::gemm_observer().store(&observe);
  }
  static GemmCalls stop() {
    detail::gemm_observer().store(nullptr);
    std::lock_guard lock(mutex());
    return calls();
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static GemmCalls& calls() {
    static GemmCalls c;
    return c;
  }
  static void observe(bool trans_a, bool trans_b, Index M, Index N, Index K, bool in_parallel) {
    std::lock_guard lock(mutex());
    ++calls()[GemmCall{trans_a, trans_b, M, N, K, in_parallel}];
  }
};

// 2·M·N·K summed over the calls.
inline double gemm_flop(const GemmCalls& calls) {
  double flop = 0;
  for (const auto& [c, count] : calls) flop += 2.0 * double(c.M) * double(c.N) * double(c.K) * double(count);
  return flop;
}

// Milliseconds the recorded calls take when run alone (the floor, see the top of this file).
// With `detail` set, one line per shape on stderr: calls, GFLOP, floor ms, GFLOP/s.
inline double gemm_floor_ms(const GemmCalls& calls, int repeats = 3, bool detail = false) {
  using Clock = std::chrono::steady_clock;
  double total_ms = 0;
  Rng rng(11);
  for (const auto& [c, count] : calls) {
    // Contiguous operands: A stored (M, K) or (K, M), B (K, N) or (N, K), C (M, N).
    const Index lda = c.trans_a ? c.M : c.K, ldb = c.trans_b ? c.K : c.N, ldc = c.N;
    const int copies = c.in_parallel_region ? num_threads() : 1;
    std::vector<std::vector<float>> a(copies), b(copies), out(copies);
    for (int t = 0; t < copies; ++t) {
      a[t].resize(static_cast<std::size_t>(c.M * c.K));
      b[t].resize(static_cast<std::size_t>(c.K * c.N));
      out[t].assign(static_cast<std::size_t>(c.M * c.N), 0.0f);
      for (float& v : a[t]) v = static_cast<float>(rng.uniform() - 0.5);
      for (float& v : b[t]) v = static_cast<float>(rng.uniform() - 0.5);
    }
    auto one_call = [&](int t) {
      detail::gemm<float>(c.trans_a, c.trans_b, c.M, c.N, c.K, 1.0f, a[t].data(), lda,
                                     b[t].data(), ldb, 0.0f, out[t].data(), ldc);
    };
    auto run_all = [&] {
      if (c.in_parallel_region) {
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < count; ++i) {
#ifdef _OPENMP
          one_call(omp_get_thread_num() % copies);
#else
          one_call(0);
#endif
        }
      } else {
        for (std::int64_t i = 0; i < count; ++i) one_call(0);
      }
    };
    run_all();  // warm-up: pages touched, BLAS buffers allocated
    double best = 1e300;
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = Clock::now();
      run_all();
      best = std::min(best, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    total_ms += best;
    if (detail) {
      const double gflop = 2e-9 * double(c.M) * double(c.N) * double(c.K) * double(count);
      std::fprintf(stderr, "gemm %c%c M %lld N %lld K %lld%s: %lld calls, %.2f GFLOP, %.1f ms, %.1f GFLOP/s\n",
                   c.trans_a ? 'T' : 'N', c.trans_b ? 'T' : 'N', static_cast<long long>(c.M),
                   static_cast<long long>(c.N), static_cast<long long>(c.K),
                   c.in_parallel_region ? " (in parallel loop)" : "", static_cast<long long>(count),
                   gflop, best, gflop / (best * 1e-3));
    }
  }
  return total_ms;
}

}  // namespace fourierft::bench
