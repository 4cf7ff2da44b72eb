// fourierft/detail/half_gemm.hpp — matrix products against a frozen 16-bit weight (HalfMatrix):
// tiles of the weight converted to Real in a per-thread buffer, each multiplied by detail::gemm.
#pragma once

// C = alpha·A·op(B) + beta·C with B a HalfMatrix: the same numbers as gemm() on B converted to
// float (the conversion is exact), up to the order of the float additions when K is split into
// blocks. No float copy of B exists at any time: one tile per thread, at most `tile_elements`.
// A float product with few rows of A and a BF16 B (decoding) skips the tiles: half_gemv_bf16.
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
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/half.hpp"
#include "fourierft/core/parallel.hpp"
#include "fourierft/detail/gemm.hpp"
#include "fourierft/detail/isa.hpp"
#include "fourierft/detail/vector_math.hpp"

namespace fourierft::detail {

// How many weight numbers one tile holds: small for matrix-vector products (few rows of A: the
// tile is read once, so it should stay in L2), larger for real GEMMs (fewer passes over A).
inline Index half_tile_elements(Index M) { return M <= 16 ? Index(1) << 15 : Index(1) << 19; }

// Few rows of A (decoding: one token per sequence) against a BF16 B: B is read once per group of
// 4 rows of A, each number widened in registers (bf16 -> float is a 16-bit shift), no tile. Sums
// run over 16 fixed lanes per dot product, so every ISA level (detail/isa.hpp) gives the same bits.
// Up to how many rows this beats the tiles (measured, docs/performance.md): with AVX-512's 32
// registers 64 rows; with AVX2's 16 the accumulators spill, so 16 rows for op(B) = Bᵀ and 1 for B.
inline Index half_gemv_max_rows(bool trans_b) {
  if (active_isa() == Isa::avx512) return 64;
  return trans_b ? 16 : 1;
}

namespace half_gemv {

constexpr int kLanes = 16;

inline float scaled(float alpha, float sum, float beta, const float& c) {
  return beta == 0.0f ? alpha * sum : alpha * sum + beta * c;
}

// 16 lanes as GCC vector types: one zmm under AVX-512, two ymm under AVX2, four xmm in baseline.
using Lanes = float __attribute__((vector_size(64)));
using LaneHalves = std::uint16_t __attribute__((vector_size(32)));
using LaneWords = std::uint32_t __attribute__((vector_size(64)));

// out = the 16 BF16 numbers at p as floats (each a 16-bit shift; unaligned p).
inline void widen_lanes(const std::uint16_t* p, Lanes& out) {
  LaneHalves h;
  std::memcpy(&h, p, sizeof h);
  const LaneWords w = __builtin_convertvector(h, LaneWords) << 16;
  std::memcpy(&out, &w, sizeof w);
}

// op(B) = Bᵀ, B stored (N, K): C[m, n] for m < MR, n in [n0, n1), four rows of B at a time (a
// short last group repeats its last row and drops the copies).
template <int MR>
void nt_rows(Index K, float alpha, const float* A, Index lda, const std::uint16_t* B, Index n0,
             Index n1, float beta, float* C, Index ldc) {
  constexpr int NR = 4;
  for (Index n = n0; n < n1; n += NR) {
    const std::uint16_t* row[NR];
    for (int j = 0; j < NR; ++j) row[j] = B + std::min(n + j, n1 - 1) * K;
    Lanes acc[MR][NR];
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) acc[m][j] = Lanes{};
    Index k = 0;
    for (; k + kLanes <= K; k += kLanes) {
      Lanes b[NR];
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) {
        widen_lanes(row[j] + k, b[j]);
      }
#pragma GCC unroll 4
      for (int m = 0; m < MR; ++m) {
        Lanes a;
        std::memcpy(&a, A + m * lda + k, sizeof a);
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) acc[m][j] += a * b[j];
      }
    }
    for (int j = 0; j < NR && n + j < n1; ++j)
      for (int m = 0; m < MR; ++m) {
        float lane[kLanes];
        std::memcpy(lane, &acc[m][j], sizeof lane);
        float tail = 0.0f;
        for (Index kt = k; kt < K; ++kt) tail += A[m * lda + kt] * bf16_to_float(row[j][kt]);
        float& c = C[m * ldc + n + j];
        const float sum =
            ops::detail::sum_lanes_of<float>(kLanes, [&](std::ptrdiff_t l) { return lane[l]; });
        c = scaled(alpha, sum + tail, beta, c);
      }
  }
}

// op(B) = B, B stored (K, N): C[m, n0 : n0 + 64] for m < MR, Σ over k in order (no lanes needed:
// each column is its own sum). Fewer than 64 columns left: the scalar loop.
template <int MR>
void nn_columns(Index K, Index N, float alpha, const float* A, Index lda, const std::uint16_t* B,
                Index n0, Index cols, float beta, float* C, Index ldc) {
  constexpr int NC = 64, NV = NC / kLanes;
  if (cols == NC) {
    Lanes acc[MR][NV];
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[m][v] = Lanes{};
    for (Index k = 0; k < K; ++k) {
      Lanes b[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        widen_lanes(B + k * N + n0 + v * kLanes, b[v]);
      }
#pragma GCC unroll 4
      for (int m = 0; m < MR; ++m) {
        const float a = A[m * lda + k];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[m][v] += a * b[v];
      }
    }
    for (int m = 0; m < MR; ++m) {
      float sum[NC];
      std::memcpy(sum, acc[m], sizeof sum);
      for (int l = 0; l < NC; ++l) C[m * ldc + n0 + l] = scaled(alpha, sum[l], beta, C[m * ldc + n0 + l]);
    }
    return;
  }
  for (int m = 0; m < MR; ++m)
    for (Index l = 0; l < cols; ++l) {
      float sum = 0.0f;
      for (Index k = 0; k < K; ++k) sum += A[m * lda + k] * bf16_to_float(B[k * N + n0 + l]);
      C[m * ldc + n0 + l] = scaled(alpha, sum, beta, C[m * ldc + n0 + l]);
    }
}

template <int MR>
void block(bool trans_b, Index N, Index K, float alpha, const float* A, Index lda,
           const std::uint16_t* B, Index n0, Index n1, float beta, float* C, Index ldc) {
  if (trans_b)
    nt_rows<MR>(K, alpha, A, lda, B, n0, n1, beta, C, ldc);
  else
    nn_columns<MR>(K, N, alpha, A, lda, B, n0, n1 - n0, beta, C, ldc);
}

}  // namespace half_gemv

// C (M, N) = alpha·A·op(B) + beta·C for a BF16 B and few rows M: columns of C split over the
// threads in blocks of 64, rows of A in groups of up to 4 (each group reads the block of B once).
inline void half_gemv_bf16(bool trans_b, Index M, Index N, Index K, float alpha, const float* A,
                           Index lda, const HalfMatrix& B, float beta, float* C, Index ldc) {
  gemm_flop_count().fetch_add(2ull * static_cast<std::uint64_t>(M) * static_cast<std::uint64_t>(N) *
                                  static_cast<std::uint64_t>(K),
                              std::memory_order_relaxed);
  constexpr Index kBlock = 64;
  const Index blocks = (N + kBlock - 1) / kBlock;
  const std::uint16_t* b = B.data();
#pragma omp parallel for schedule(static) if (num_threads() > 1 && M * N * K >= (1 << 16))
  for (Index blk = 0; blk < blocks; ++blk) {
    const Index n0 = blk * kBlock, n1 = std::min(N, n0 + kBlock);
    run_dispatched([&] {
      for (Index m0 = 0; m0 < M; m0 += 4) {
        const float* a = A + m0 * lda;
        float* c = C + m0 * ldc;
        switch (std::min<Index>(4, M - m0)) {
          case 4: half_gemv::block<4>(trans_b, N, K, alpha, a, lda, b, n0, n1, beta, c, ldc); break;
          case 3: half_gemv::block<3>(trans_b, N, K, alpha, a, lda, b, n0, n1, beta, c, ldc); break;
          case 2: half_gemv::block<2>(trans_b, N, K, alpha, a, lda, b, n0, n1, beta, c, ldc); break;
          default: half_gemv::block<1>(trans_b, N, K, alpha, a, lda, b, n0, n1, beta, c, ldc);
        }
      }
    });
  }
}

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
  if constexpr (std::is_same_v<Real, float>) {
    if (tile_elements <= 0 && M <= half_gemv_max_rows(trans_b) && K > 0 &&
        B.dtype() == io::Dtype::BF16)
      return half_gemv_bf16(trans_b, M, N, K, alpha, A, lda, B, beta, C, ldc);
  }
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
