// fourierft/detail/bf16_gemm.hpp — matrix products with BF16 operands and FP32 accumulation (the
// BF16 compute mode): a float A rounded to BF16 times a frozen BF16 weight (HalfMatrix).
#pragma once

// C = alpha·bf16(A)·op(B) + beta·C, B a BF16 HalfMatrix, every product and sum in float: what
// PyTorch's CPU autocast(bfloat16) and HF Trainer's bf16=True do for a frozen nn.Linear. Three
// kernels give the same numbers up to the order of the float additions; one is chosen at run time:
//   avx512bf16   our own: A converted to BF16 (vcvtne2ps2bf16), B packed into panels of 32 columns
//                whose k-pairs vdpbf16ps multiplies and adds (2 products per float lane and
//                instruction: twice the multiply-adds of an FP32 FMA). Needs AVX512-BF16. The
//                packed weight (as many bytes as the weight, per transpose used) is made on first
//                use and kept with the HalfMatrix until its numbers change (HalfMatrix::cached),
//                up to a memory cap (bf16_pack_cache_limit); past it, packed again per call.
//   sbgemm       OpenBLAS's cblas_sbgemm, when the BLAS linked in has it (looked up with dlsym:
//                Debian's 0.3.21 declares it in cblas.h but is built without it).
//   float_tiles  anywhere: A rounded to BF16 and back into a float buffer, then half_gemm (B's
//                tiles converted to float, the FP32 gemm). The same numbers, no speed gain.
// automatic = avx512bf16 where the CPU has it, else sbgemm if present, else float_tiles.
// FOURIERFT_BF16_KERNEL=avx512bf16|sbgemm|float_tiles overrides automatic (for measurements).
//
// Rounding: A goes to BF16 by round-to-nearest-even; the AVX512-BF16 conversion treats float
// subnormals (|a| < 2^-126) as zero, float_to_bf16 keeps them. The products a·b of two BF16
// numbers are exact in float; the sums are float sums in a kernel-dependent order.

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define FOURIERFT_BF16_X86 1
#endif

#include "fourierft/core/error.hpp"
#include "fourierft/core/half.hpp"
#include "fourierft/core/parallel.hpp"
#include "fourierft/detail/gemm.hpp"
#include "fourierft/detail/half_gemm.hpp"

namespace fourierft::detail {

enum class Bf16Kernel { automatic, avx512bf16, sbgemm, float_tiles };

inline const char* bf16_kernel_name(Bf16Kernel k) {
  switch (k) {
    case Bf16Kernel::avx512bf16: return "avx512bf16";
    case Bf16Kernel::sbgemm: return "sbgemm";
    case Bf16Kernel::float_tiles: return "float_tiles";
    default: return "automatic";
  }
}

// cblas_sbgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), BF16 as
// uint16; null when no library loaded into the process defines it.
using SbgemmFunction = void (*)(int, int, int, int, int, int, float, const std::uint16_t*, int,
                                const std::uint16_t*, int, float, float*, int);
inline SbgemmFunction sbgemm_function() {
  static const SbgemmFunction f =
      reinterpret_cast<SbgemmFunction>(dlsym(RTLD_DEFAULT, "cblas_sbgemm"));
  return f;
}

inline bool cpu_has_avx512bf16() {
#ifdef FOURIERFT_BF16_X86
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
  }();
  return has;
#else
  return false;
#endif
}

inline bool bf16_kernel_available(Bf16Kernel k) {
  switch (k) {
    case Bf16Kernel::avx512bf16: return cpu_has_avx512bf16();
    case Bf16Kernel::sbgemm: return sbgemm_function() != nullptr;
    default: return true;
  }
}

// The kernel `automatic` stands for on this machine (read once; FOURIERFT_BF16_KERNEL overrides).
inline Bf16Kernel bf16_automatic_kernel() {
  static const Bf16Kernel chosen = [] {
    if (const char* env = std::getenv("FOURIERFT_BF16_KERNEL"); env != nullptr && *env != '\0') {
      const std::string_view name(env);
      for (Bf16Kernel k : {Bf16Kernel::avx512bf16, Bf16Kernel::sbgemm, Bf16Kernel::float_tiles})
        if (name == bf16_kernel_name(k)) {
          check(bf16_kernel_available(k), "FOURIERFT_BF16_KERNEL=", env,
                ": this kernel is not available here (CPU feature or BLAS symbol missing)");
          return k;
        }
      throw Error(str_cat("FOURIERFT_BF16_KERNEL must be avx512bf16, sbgemm or float_tiles, got '",
                          env, "'"));
    }
    if (cpu_has_avx512bf16()) return Bf16Kernel::avx512bf16;
    if (sbgemm_function() != nullptr) return Bf16Kernel::sbgemm;
    return Bf16Kernel::float_tiles;
  }();
  return chosen;
}

// Bytes of packed BF16 weights kept with their matrices (bf16_avx512::PackedWeight), and the cap
// on them: FOURIERFT_BF16_PACK_CACHE_MB, default a quarter of the machine's memory. A packing
// doubles its weight's memory per transpose used (forward x·Wᵀ and backward dy·W), so without a
// cap a 7B model's 13.5 GB of BF16 weights would grow to ~40 GB.
inline std::atomic<std::size_t>& bf16_packed_bytes() {
  static std::atomic<std::size_t> bytes{0};
  return bytes;
}
// (The limit is read once; tests and programs may store another value.)
inline std::atomic<std::size_t>& bf16_pack_cache_limit() {
  static std::atomic<std::size_t> limit = [] {
    if (const char* env = std::getenv("FOURIERFT_BF16_PACK_CACHE_MB"); env != nullptr && *env != '\0') {
      char* end = nullptr;
      const unsigned long long mb = std::strtoull(env, &end, 10);
      check(end != env && *end == '\0', "FOURIERFT_BF16_PACK_CACHE_MB must be a number of MB, got '",
            env, "'");
      return static_cast<std::size_t>(mb) << 20;
    }
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) / 4
                                 : std::size_t{1} << 32;
  }();
  return limit;
}
// Counts `bytes` more packed weight if the cap allows; false (nothing counted) otherwise.
inline bool reserve_bf16_packed_bytes(std::size_t bytes) {
  std::size_t now = bf16_packed_bytes().load(std::memory_order_relaxed);
  do {
    if (now + bytes > bf16_pack_cache_limit().load(std::memory_order_relaxed)) return false;
  } while (!bf16_packed_bytes().compare_exchange_weak(now, now + bytes, std::memory_order_relaxed));
  return true;
}

// A per-thread scratch buffer of n elements, kept for the next call (tag tells buffers apart).
template <class T, int tag>
T* bf16_scratch(std::size_t n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// dst: (M, ld_dst) BF16 = A (M, K) rounded, columns K..ld_dst-1 zero. Scalar (float_to_bf16).
inline void round_rows_to_bf16(const float* A, Index lda, Index M, Index K, std::uint16_t* dst,
                               Index ld_dst) {
#pragma omp parallel for schedule(static) if (M * K >= (1 << 16))
  for (Index m = 0; m < M; ++m) {
    for (Index k = 0; k < K; ++k) dst[m * ld_dst + k] = float_to_bf16(A[m * lda + k]);
    for (Index k = K; k < ld_dst; ++k) dst[m * ld_dst + k] = 0;
  }
}

#ifdef FOURIERFT_BF16_X86
namespace bf16_avx512 {

constexpr int kPanel = 32;        // columns of C per micro-tile: two zmm of 16 floats
constexpr int kRows = 12;         // rows of C per micro-tile: 24 accumulators
constexpr Index kPairsBlock = 512;  // k-pairs per pass (1024 k): an A tile is 24 KB (L1)
constexpr Index kPanelsBlock = 4;   // panels per pass: 256 KB of B stays in L2

// One row of A (K floats) -> Kp BF16 (Kp = K rounded up to even, zero-padded), nearest even.
[[gnu::target("avx512f,avx512bw,avx512bf16")]] inline void round_row(const float* a, Index K,
                                                                     std::uint16_t* dst, Index Kp) {
  Index k = 0;
  for (; k + 32 <= K; k += 32) {
    const __m512 lo = _mm512_loadu_ps(a + k), hi = _mm512_loadu_ps(a + k + 16);
    _mm512_storeu_si512(dst + k, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
  }
  for (; k < K; ++k) dst[k] = float_to_bf16(a[k]);
  for (; k < Kp; ++k) dst[k] = 0;
}

// The pair (B[k][n], B[k+1][n]) as one 32-bit word, low half first (what vdpbf16ps pairs up).
inline std::uint32_t pair_word(std::uint16_t lo, std::uint16_t hi) {
  return static_cast<std::uint32_t>(lo) | (static_cast<std::uint32_t>(hi) << 16);
}

// Packs panel p of op(B) (columns p·32 .. p·32+31 of the (K, N) matrix op(B)): P k-pairs, each 32
// words (column j: pair_word(op(B)[2q][n], op(B)[2q+1][n])), zeros past N and K.
inline void pack_panel(bool trans_b, const std::uint16_t* B, Index N, Index K, Index panel,
                       Index P, std::uint32_t* dst) {
  const Index n0 = panel * kPanel, nn = std::min<Index>(kPanel, N - n0);
  if (trans_b) {  // B stored (N, K): row n holds column n of op(B)
    for (Index j = 0; j < kPanel; ++j) {
      if (j >= nn) {
        for (Index q = 0; q < P; ++q) dst[q * kPanel + j] = 0;
        continue;
      }
      const std::uint16_t* row = B + (n0 + j) * K;
      Index q = 0;
      for (; 2 * q + 1 < K; ++q) dst[q * kPanel + j] = pair_word(row[2 * q], row[2 * q + 1]);
      if (q < P) dst[q * kPanel + j] = pair_word(row[2 * q], 0), ++q;
      for (; q < P; ++q) dst[q * kPanel + j] = 0;
    }
  } else {  // B stored (K, N)
    for (Index q = 0; q < P; ++q) {
      const std::uint16_t* r0 = B + (2 * q) * N + n0;
      const std::uint16_t* r1 = 2 * q + 1 < K ? B + (2 * q + 1) * N + n0 : nullptr;
      std::uint32_t* d = dst + q * kPanel;
      if (r1 != nullptr)
        for (Index j = 0; j < nn; ++j) d[j] = pair_word(r0[j], r1[j]);
      else
        for (Index j = 0; j < nn; ++j) d[j] = pair_word(r0[j], 0);
      for (Index j = nn; j < kPanel; ++j) d[j] = 0;
    }
  }
}

// C[r, 0:cols] (r < rows) = (first ? beta·C : C) + alpha·Σ_q a_r[q]·b[q] over P k-pairs, where
// a_r = A + r·lda_words (BF16 pairs of row r) and b a packed panel (P x 32 words).
template <int rows>
[[gnu::target("avx512f,avx512bw,avx512bf16")]] inline void micro_tile(
    Index P, const std::uint32_t* a, Index lda_words, const std::uint32_t* b, float* C, Index ldc,
    int cols, float alpha, float beta, bool first) {
  __m512 acc[rows][2];
#pragma GCC unroll 16
  for (int r = 0; r < rows; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (Index q = 0; q < P; ++q) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + q * kPanel);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + q * kPanel + 16);
#pragma GCC unroll 16
    for (int r = 0; r < rows; ++r) {
      const __m512bh ar = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r * lda_words + q]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], ar, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], ar, b1);
    }
  }
  const __mmask16 m0 = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? __mmask16(0xFFFF)
                       : cols <= 16 ? __mmask16(0) : __mmask16((1u << (cols - 16)) - 1);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int r = 0; r < rows; ++r) {
    float* c = C + r * ldc;
    __m512 v0 = _mm512_mul_ps(va, acc[r][0]), v1 = _mm512_mul_ps(va, acc[r][1]);
    if (!first || beta != 0.0f) {  // beta = 0 on the first pass: C's old values are never read
      const __m512 s = first ? vb : _mm512_set1_ps(1.0f);
      v0 = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(m0, c), v0);
      v1 = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(m1, c + 16), v1);
    }
    _mm512_mask_storeu_ps(c, m0, v0);
    _mm512_mask_storeu_ps(c + 16, m1, v1);
  }
}

template <int rows = kRows>
inline void micro_tile_rows(int n, Index P, const std::uint32_t* a, Index lda_words,
                            const std::uint32_t* b, float* C, Index ldc, int cols, float alpha,
                            float beta, bool first) {
  if constexpr (rows > 0) {
    if (n == rows) return micro_tile<rows>(P, a, lda_words, b, C, ldc, cols, alpha, beta, first);
    micro_tile_rows<rows - 1>(n, P, a, lda_words, b, C, ldc, cols, alpha, beta, first);
  }
}

// op(B) packed into panels (pack_panel), all of them: panels·P·32 words, as many bytes as B has
// (plus the padding). Kept with B (HalfMatrix::cached, one slot per transpose) while the bytes of
// all kept packings stay within bf16_pack_cache_limit(); beyond it a weight is packed again on
// every call (into a per-thread scratch), so memory stays bounded for models near the RAM size.
struct PackedWeight {
  std::vector<std::uint32_t> words;  // empty: B did not fit the budget (pack per call)
  std::size_t reserved = 0;          // bytes counted in bf16_packed_bytes()
  PackedWeight() = default;
  PackedWeight(PackedWeight&& o) noexcept : words(std::move(o.words)), reserved(o.reserved) {
    o.reserved = 0;
  }
  PackedWeight& operator=(PackedWeight&&) = delete;
  ~PackedWeight() { bf16_packed_bytes().fetch_sub(reserved, std::memory_order_relaxed); }
};

inline void pack_weight(const HalfMatrix& B, bool trans_b, std::uint32_t* packed) {
  const Index N = trans_b ? B.rows() : B.cols(), K = trans_b ? B.cols() : B.rows();
  const Index P = (K + 1) / 2, panels = (N + kPanel - 1) / kPanel;
  const std::uint16_t* b = B.data();
#pragma omp parallel for schedule(static) if (N * K >= (1 << 16))
  for (Index p = 0; p < panels; ++p) pack_panel(trans_b, b, N, K, p, P, packed + p * P * kPanel);
}

// The packed op(B): the kept one, or (over the budget) this call's in a per-thread scratch.
inline const std::uint32_t* packed_weight(const HalfMatrix& B, bool trans_b,
                                          std::shared_ptr<const PackedWeight>& keep) {
  const Index N = trans_b ? B.rows() : B.cols(), K = trans_b ? B.cols() : B.rows();
  const auto words = static_cast<std::size_t>(((N + kPanel - 1) / kPanel) * ((K + 1) / 2) * kPanel);
  keep = B.cached<PackedWeight>(trans_b ? 0 : 1, [&] {
    PackedWeight w;
    if (reserve_bf16_packed_bytes(words * sizeof(std::uint32_t))) {
      w.reserved = words * sizeof(std::uint32_t);
      w.words.resize(words);
      pack_weight(B, trans_b, w.words.data());
    }
    return w;
  });
  if (!keep->words.empty()) return keep->words.data();
  std::uint32_t* scratch = bf16_scratch<std::uint32_t, 1>(words);
  pack_weight(B, trans_b, scratch);
  return scratch;
}

// The whole product: A rounded into a row-major BF16 buffer, op(B) packed into panels (cached
// with the weight), then each thread computes its own rows of C in passes of (kPairsBlock
// k-pairs) x (kPanelsBlock panels).
inline void gemm(bool trans_b, Index M, Index N, Index K, float alpha, const float* A, Index lda,
                 const HalfMatrix& B, float beta, float* C, Index ldc) {
  const Index P = (K + 1) / 2, Kp = 2 * P, panels = (N + kPanel - 1) / kPanel;
  std::shared_ptr<const PackedWeight> kept;
  const std::uint32_t* packed = packed_weight(B, trans_b, kept);
  std::uint16_t* a16 = bf16_scratch<std::uint16_t, 0>(static_cast<std::size_t>(M * Kp));
  const Index tiles = (M + kRows - 1) / kRows;
  const bool parallel = num_threads() > 1 && M * N * K >= (1 << 17);
#pragma omp parallel if (parallel)
  {
    // Each thread owns a block of C: a contiguous run of row tiles (all panels), whose rows of A
    // it rounds itself, with no barrier; with fewer row tiles than threads (few tokens: decoding)
    // a run of panels (all rows) instead, after one thread has rounded all of A.
#ifdef _OPENMP
    const Index team = omp_get_num_threads(), me = omp_get_thread_num();
#else
    const Index team = 1, me = 0;
#endif
    const bool split_rows = tiles >= team;
    const Index t_begin = split_rows ? tiles * me / team : 0;
    const Index t_end = split_rows ? tiles * (me + 1) / team : tiles;
    const Index own_p_begin = split_rows ? 0 : panels * me / team;
    const Index own_p_end = split_rows ? panels : panels * (me + 1) / team;
    if (split_rows) {
      for (Index m = t_begin * kRows; m < std::min(M, t_end * kRows); ++m)
        round_row(A + m * lda, K, a16 + m * Kp, Kp);
    } else {
#pragma omp single
      for (Index m = 0; m < M; ++m) round_row(A + m * lda, K, a16 + m * Kp, Kp);
    }
    const auto* a_words = reinterpret_cast<const std::uint32_t*>(a16);
    for (Index q0 = 0; q0 < P; q0 += kPairsBlock) {
      const Index pp = std::min(kPairsBlock, P - q0);
      for (Index p0 = own_p_begin; p0 < own_p_end; p0 += kPanelsBlock) {
        const Index p1 = std::min(own_p_end, p0 + kPanelsBlock);
        for (Index t = t_begin; t < t_end; ++t) {
          const Index m0 = t * kRows;
          const int rows = static_cast<int>(std::min<Index>(kRows, M - m0));
          for (Index p = p0; p < p1; ++p) {
            const int cols = static_cast<int>(std::min<Index>(kPanel, N - p * kPanel));
            micro_tile_rows(rows, pp, a_words + m0 * P + q0, P, packed + (p * P + q0) * kPanel,
                            C + m0 * ldc + p * kPanel, ldc, cols, alpha, beta, q0 == 0);
          }
        }
      }
    }
  }
}

}  // namespace bf16_avx512
#endif

// C (M, N, row stride ldc) = alpha·bf16(A)·op(B) + beta·C.  A: (M, K) float, row stride lda;
// B: BF16 HalfMatrix, (N, K) when trans_b (nn.Linear's forward x·Wᵀ), else (K, N) (its dx = dy·W).
// beta = 0 overwrites C. `kernel` forces one implementation (tests, benchmarks).
inline void bf16_gemm(bool trans_b, Index M, Index N, Index K, float alpha, const float* A,
                      Index lda, const HalfMatrix& B, float beta, float* C, Index ldc,
                      Bf16Kernel kernel = Bf16Kernel::automatic) {
  check<ShapeError>(B.dtype() == io::Dtype::BF16, "bf16_gemm: B must be BF16, got ",
                    io::dtype_name(B.dtype()));
  check<ShapeError>(B.rows() == (trans_b ? N : K) && B.cols() == (trans_b ? K : N),
                    "bf16_gemm: B is (", B.rows(), ", ", B.cols(), ") but op(B) must be (", K,
                    ", ", N, ")", trans_b ? " transposed" : "");
  if (M == 0 || N == 0) return;
  if (kernel == Bf16Kernel::automatic) kernel = bf16_automatic_kernel();
  check(bf16_kernel_available(kernel), "bf16_gemm: kernel ", bf16_kernel_name(kernel),
        " is not available on this machine");
  if (K == 0) {  // C = beta·C
    for (Index i = 0; i < M; ++i)
      for (Index j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  gemm_flop_count().fetch_add(2ull * static_cast<std::uint64_t>(M) * static_cast<std::uint64_t>(N) *
                                  static_cast<std::uint64_t>(K),
                              std::memory_order_relaxed);
  switch (kernel) {
#ifdef FOURIERFT_BF16_X86
    case Bf16Kernel::avx512bf16:
      bf16_avx512::gemm(trans_b, M, N, K, alpha, A, lda, B, beta, C, ldc);
      return;
#endif
    case Bf16Kernel::sbgemm: {
      std::uint16_t* a16 = bf16_scratch<std::uint16_t, 0>(static_cast<std::size_t>(M * K));
      round_rows_to_bf16(A, lda, M, K, a16, K);
      constexpr int row_major = 101, no_trans = 111, trans = 112;  // cblas enum values
      sbgemm_function()(row_major, no_trans, trans_b ? trans : no_trans, static_cast<int>(M),
                        static_cast<int>(N), static_cast<int>(K), alpha, a16, static_cast<int>(K),
                        B.data(), static_cast<int>(B.cols()), beta, C, static_cast<int>(ldc));
      return;
    }
    default: {  // float_tiles: A rounded to BF16 values held as float, then the exact half_gemm
      float* rounded = bf16_scratch<float, 2>(static_cast<std::size_t>(M * K));
#pragma omp parallel for schedule(static) if (M * K >= (1 << 16))
      for (Index m = 0; m < M; ++m)
        for (Index k = 0; k < K; ++k)
          rounded[m * K + k] = bf16_to_float(float_to_bf16(A[m * lda + k]));
      // half_gemm counts its own FLOPs: take back the ones counted above.
      gemm_flop_count().fetch_sub(2ull * static_cast<std::uint64_t>(M) *
                                      static_cast<std::uint64_t>(N) * static_cast<std::uint64_t>(K),
                                  std::memory_order_relaxed);
      half_gemm<float>(trans_b, M, N, K, alpha, rounded, K, B, beta, C, ldc);
      return;
    }
  }
}

}  // namespace fourierft::detail
