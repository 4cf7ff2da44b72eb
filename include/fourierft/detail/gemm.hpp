// fourierft/detail/gemm.hpp — the one matrix-multiply entry point of the library.
// Row-major C = alpha·op(A)·op(B) + beta·C through cblas (OpenBLAS) when FOURIERFT_USE_BLAS is set
// at configure time, else through Eigen's own GEMM.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <type_traits>

#include <Eigen/Core>

#include "fourierft/core/error.hpp"
#include "fourierft/core/parallel.hpp"

#ifdef FOURIERFT_USE_BLAS
#include <cblas.h>
#endif

namespace fourierft::detail {

// Multiply-add FLOPs (2·M·N·K) of every gemm() call so far, process-wide: benchmarks read it to
// report achieved GFLOP/s. One relaxed atomic add per call, negligible beside any GEMM.
inline std::atomic<std::uint64_t>& gemm_flop_count() {
  static std::atomic<std::uint64_t> count{0};
  return count;
}

// Benchmarks: when set, called by every gemm() with the call's shape and whether it runs inside an
// OpenMP parallel region (then it runs on one thread beside others). From any thread, so the
// observer synchronises itself. Null (the default) costs one relaxed load per call.
using GemmObserver = void (*)(bool trans_a, bool trans_b, Index M, Index N, Index K,
                              bool in_parallel_region);
inline std::atomic<GemmObserver>& gemm_observer() {
  static std::atomic<GemmObserver> observer{nullptr};
  return observer;
}

// Eigen's own kernels: the fallback without BLAS, and the baseline the GEMM benchmark reports.
template <class Real>
void eigen_gemm(bool trans_a, bool trans_b, Index M, Index N, Index K, Real alpha, const Real* A,
                Index lda, const Real* B, Index ldb, Real beta, Real* C, Index ldc) {
  using Mat = Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Stride = Eigen::OuterStride<>;
  Eigen::Map<const Mat, 0, Stride> a(A, trans_a ? K : M, trans_a ? M : K, Stride(lda));
  Eigen::Map<const Mat, 0, Stride> b(B, trans_b ? N : K, trans_b ? K : N, Stride(ldb));
  Eigen::Map<Mat, 0, Stride> c(C, M, N, Stride(ldc));
  if (beta == Real(0)) c.setZero();
  else if (beta != Real(1)) c *= beta;
  if (!trans_a && !trans_b) c.noalias() += alpha * a * b;
  else if (!trans_a && trans_b) c.noalias() += alpha * a * b.transpose();
  else if (trans_a && !trans_b) c.noalias() += alpha * a.transpose() * b;
  else c.noalias() += alpha * a.transpose() * b.transpose();
}

// Whether a gemm() called from inside an OpenMP parallel region runs on the calling thread only:
// true for Eigen's kernels and for OpenBLAS's OpenMP (or sequential) build, which check
// omp_in_parallel(); false for OpenBLAS's pthreads build, whose own thread pool would then be
// shared by several callers. Ops with many small independent products (attention heads) run them
// in one OpenMP loop when this is true, and one multi-threaded GEMM at a time otherwise.
inline bool gemm_is_serial_in_parallel_regions() {
#if defined(FOURIERFT_USE_BLAS) && defined(FOURIERFT_BLAS_IS_OPENBLAS)
  static const bool serial = openblas_get_parallel() != 1;  // 0 sequential, 1 pthreads, 2 OpenMP
  return serial;
#elif defined(FOURIERFT_USE_BLAS)
  return false;  // an unknown BLAS: do not nest
#else
  return true;
#endif
}

// The GEMM kernels in use, for benchmark headers (a GEMM's speed depends on them as much as on
// the CPU): "OpenBLAS Cooperlake", "OpenBLAS Haswell", ... — the kernel set OpenBLAS picked for
// this CPU when loaded, or the one OPENBLAS_CORETYPE forced; "Eigen" without BLAS.
inline std::string gemm_kernels() {
#if defined(FOURIERFT_USE_BLAS) && defined(FOURIERFT_BLAS_IS_OPENBLAS)
  return std::string("OpenBLAS ") + openblas_get_corename();
#elif defined(FOURIERFT_USE_BLAS)
  return "BLAS (not OpenBLAS)";
#else
  return "Eigen";
#endif
}

// op(A): (M, K) and op(B): (K, N), C: (M, N); lda/ldb/ldc are row strides of the stored matrices
// (A is stored (M, K) or, with trans_a, (K, M)). beta = 0 overwrites C (its old values are ignored).
template <class Real>
void gemm(bool trans_a, bool trans_b, Index M, Index N, Index K, Real alpha, const Real* A,
          Index lda, const Real* B, Index ldb, Real beta, Real* C, Index ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // C = beta·C
    for (Index i = 0; i < M; ++i)
      for (Index j = 0; j < N; ++j) C[i * ldc + j] = beta == Real(0) ? Real(0) : beta * C[i * ldc + j];
    return;
  }
  gemm_flop_count().fetch_add(2ull * static_cast<std::uint64_t>(M) * static_cast<std::uint64_t>(N) *
                                  static_cast<std::uint64_t>(K),
                              std::memory_order_relaxed);
  if (const GemmObserver observe = gemm_observer().load(std::memory_order_relaxed))
    observe(trans_a, trans_b, M, N, K, in_parallel_region());
  (void)num_threads();  // makes sure the thread knob has been applied before the first GEMM
#ifdef FOURIERFT_USE_BLAS
  const auto ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<Real, float>) {
    // Few rows of C against a weight-sized B (decoding steps: one token per sequence): OpenBLAS's
    // sgemm repacks all of B on every call, which costs more than the product itself at such
    // sizes, so each row is a matrix-vector product op(B)ᵀ·a_m (sgemv). Measured here
    // (docs/performance.md): faster for one row, and up to 8 rows while B fits in the last-level
    // cache (<= 16 MB). Only for B of >= 2^18 numbers: sgemv's sums depend on its operands'
    // alignment, so small products (attention's per-head ones, read in place or copied) keep
    // sgemm's packed, alignment-independent results.
    const Index b_size = N * K;
    if (!trans_a && b_size >= (Index(1) << 18) &&
        (M == 1 || (M <= 8 && b_size <= (Index(1) << 22)))) {
      for (Index m = 0; m < M; ++m) {
        Real* c_row = C + m * ldc;
        if (beta == Real(0)) std::fill(c_row, c_row + N, Real(0));  // sgemv never reads old NaNs
        if (trans_b)  // B stored (N, K): c_m = B·a_m
          cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(N), static_cast<int>(K),
                      alpha, B, static_cast<int>(ldb), A + m * lda, 1, beta, c_row, 1);
        else  // B stored (K, N): c_m = Bᵀ·a_m
          cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(K), static_cast<int>(N), alpha,
                      B, static_cast<int>(ldb), A + m * lda, 1, beta, c_row, 1);
      }
      return;
    }
    cblas_sgemm(CblasRowMajor, ta, tb, static_cast<int>(M), static_cast<int>(N),
                static_cast<int>(K), alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb),
                beta, C, static_cast<int>(ldc));
    return;
  } else if constexpr (std::is_same_v<Real, double>) {
    cblas_dgemm(CblasRowMajor, ta, tb, static_cast<int>(M), static_cast<int>(N),
                static_cast<int>(K), alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb),
                beta, C, static_cast<int>(ldc));
    return;
  }
#endif
  eigen_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace fourierft::detail
