// fourierft/detail/half_gemm.hpp — matrix products against a frozen 16-bit weight (HalfMatrix):
// tiles of the weight converted to Real in a per-thread buffer, each multiplied by detail::gemm.
#pragma once

// C = alpha·A·op(B) + beta·C with B a HalfMatrix: the same numbers as gemm() on B converted to
// float (the conversion is exact), up to the order of the float additions when K is split into
// blocks. No float copy of B exists at any time: one tile per thread, at most `tile_elements`.
//
// Tiles follow C's columns, so threads never write the same entry of C:
//   op(B) = Bᵀ, B stored (N, K): a tile is rows n0..n1 of B, all K columns (contiguous rows);
//           C[:, n0:n1] = alpha·A·tileᵀ + beta·C[:, n0:n1]    (nn.Linear's forward, Conv1D's dx)
//   op(B) = B,  B stored (K, N): a tile is B[k0:k1, n0:n1]; a thread owns C[:, n0:n1] and runs
//           its K blocks in order, beta for the first and 1 after    (nn.Linear's dx, Conv1D's y)
// Threads: when gemm() called inside an OpenMP region runs on the calling thread (OpenBLAS's
// OpenMP build, Eigen; detail::gemm_is_serial_in_parallel_regions), the column blocks are shared
// out by one `omp parallel for`, each thread converting its own tiles; otherwise blocks run one at
// a time, each tile converted by an `omp parallel for` over its rows and multiplied by the
// (multi-threaded) gemm().

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/half.hpp"
#include "fourierft/core/parallel.hpp"
#include "fourierft/detail/gemm.hpp"

namespace fourierft::detail {

// How many weight numbers one tile holds: small for matrix-vector products (few rows of A: the
// tile is read once, so it should stay in L2), larger for real GEMMs (fewer passes over A).
inline Index half_tile_elements(Index M) { return M <= 16 ? Index(1) << 15 : Index(1) << 19; }

// One tile's buffer per thread, grown as needed and kept for the next call.
template <class Real>
Real* half_tile_buffer(std::size_t n) {
  thread_local std::vector<Real> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// op(A): A is (M, K) with row stride lda (not transposed); B: HalfMatrix (N, K) if trans_b, else
// (K, N); C: (M, N), row stride ldc. beta = 0 overwrites C.
template <class Real>
void half_gemm(bool trans_b, Index M, Index N, Index K, Real alpha, const Real* A, Index lda,
               const HalfMatrix& B, Real beta, Real* C, Index ldc,
               Index tile_elements = 0) {
  check<ShapeError>(B.rows() == (trans_b ? N : K) && B.cols() == (trans_b ? K : N),
                    "half_gemm: B is (", B.rows(), ", ", B.cols(), ") but op(B) must be (", K,
                    ", ", N, ")", trans_b ? " transposed" : "");
  if (M == 0 || N == 0) return;
  if (tile_elements <= 0) tile_elements = half_tile_elements(M);
  const int threads = num_threads();
  // Column block: whole rows of B when transposed; else up to 256 columns (K blocks of rows).
  Index nb = trans_b ? std::max<Index>(1, tile_elements / std::max<Index>(K, 1))
                     : std::min<Index>(N, 256);
  if (threads > 1) nb = std::min(nb, (N + threads - 1) / threads);  // a block for every thread
  if (nb > 16) nb -= nb % 16;
  const Index kb = trans_b ? K : std::max<Index>(16, tile_elements / nb);
  const Index blocks = (N + nb - 1) / nb;
  const bool threaded_blocks =
      threads > 1 && blocks > 1 && gemm_is_serial_in_parallel_regions() && M * N * K >= (1 << 18);

  // The tile B[n0:n0+nn, k0:k0+kk] (trans_b) or B[k0:k0+kk, n0:n0+nn], then its product.
  auto run_block = [&](Index n0, Real* tile, bool convert_in_parallel) {
    const Index nn = std::min(nb, N - n0);
    for (Index k0 = 0; k0 < std::max<Index>(K, 1); k0 += kb) {
      const Index kk = std::min(kb, K - k0);
      const Index rows = trans_b ? nn : kk, cols = trans_b ? kk : nn;
      const Index row0 = trans_b ? n0 : k0, col0 = trans_b ? k0 : n0;
#pragma omp parallel for schedule(static) if (convert_in_parallel && rows * cols >= (1 << 14))
      for (Index r = 0; r < rows; ++r) B.tile_to(row0 + r, 1, col0, cols, tile + r * cols, cols);
      gemm<Real>(false, trans_b, M, nn, kk, alpha, A + k0, lda, tile, cols,
                 k0 == 0 ? beta : Real(1), C + n0, ldc);
    }
  };
  const std::size_t tile_size = static_cast<std::size_t>(trans_b ? nb * std::max<Index>(K, 1)
                                                                 : nb * kb);
  if (threaded_blocks) {
#pragma omp parallel for schedule(static)
    for (Index b = 0; b < blocks; ++b) run_block(b * nb, half_tile_buffer<Real>(tile_size), false);
  } else {
    Real* tile = half_tile_buffer<Real>(tile_size);
    for (Index b = 0; b < blocks; ++b) run_block(b * nb, tile, true);
  }
}

}  // namespace fourierft::detail
