// fourierft/peft/fourierft_op.hpp — the FourierFT operator: spectral coefficients -> dense ΔW
// (forward, c2r inverse DFT) and dL/dΔW -> coefficient gradients (the DFT gathered at the entries).
#pragma once

#include <algorithm>
#include <cmath>
#include <complex>
#include <memory>
#include <numbers>
#include <span>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/detail/gemm.hpp"
#include "fourierft/detail/isa.hpp"
#include "fourierft/detail/kept_per_size.hpp"
#include "fourierft/detail/vector_math.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/ops/spectral.hpp"
#include "fourierft/peft/entries.hpp"

namespace fourierft::peft {

// ---------------------------------------------------------------------------
// fourierft_delta: dense update of one adapted weight (M = d_out, N = d_in).
//   coeffs: (n) trainable;  entries (rows, cols): (n), shared by all adapted layers of this shape
//   dW: (M, N) in (d_out, d_in) layout;  scale = paper's alpha = PEFT's `scaling`
// forward:  F = 0 (complex, M x N);  F[rows[l], cols[l]] = c_l
//           dW = scale · Re(IDFT2(F)),  IDFT2 with PEFT's 1/(M·N) ("backward" norm), i.e.
//           dW[p,q] = scale/(M·N) · Σ_l c_l · cos(2π(rows_l·p/M + cols_l·q/N))
// Computed exactly as a real inverse DFT: Re(IDFT2(F)) = IDFT2(H) for the Hermitian
// H[u,v] = (F[u,v] + conj F[−u,−v]) / 2, whose half spectrum (M, N/2+1) determines it — by FFTW's
// 2-D c2r, or, for few entries, by a sparse first pass; fourierft_delta_forward picks the cheaper.
//
// The half spectrum's nonzeros: c_l/2 at (u_l, v_l) and at its conjugate partner
// (−u_l, −v_l), whichever lies in the half v <= N/2 (both when v is 0 or N/2), each times α and the
// IDFT's 1/(M·N). c is real, so conj(c) = c.
template <class Real, class Add>
void fourierft_half_spectrum(std::span<const Real> coeffs, const SpectralEntries& e, Real scale,
                             Add&& add) {
  const Index M = e.d_out, N = e.d_in, H = N / 2 + 1;
  const Real norm = scale / static_cast<Real>(M * N) / Real(2);
  for (Index l = 0; l < e.n(); ++l) {
    const Index u = e.rows[l], v = e.cols[l];
    const Real c = coeffs[l] * norm;
    if (v < H) add(u, v, c);
    const Index u_conj = (M - u) % M, v_conj = (N - v) % N;
    if (v_conj < H) add(u_conj, v_conj, c);
  }
}

// ΔW through FFTW's 2-D c2r on the whole half spectrum (M, N/2 + 1).
template <class Real>
void fourierft_delta_forward_c2r(std::span<Real> dW, std::span<const Real> coeffs,
                                 const SpectralEntries& e, Real scale) {
  const Index M = e.d_out, N = e.d_in, H = N / 2 + 1;
  ops::spectral::FftwBuffer<std::complex<Real>, Real> half(static_cast<std::size_t>(M * H),
                                                          std::complex<Real>());
  fourierft_half_spectrum<Real>(coeffs, e, scale,
                                [&](Index u, Index v, Real c) { half.data()[u * H + v] += c; });
  ops::spectral::inverse_dft2_c2r<Real>(half.span(), dW, M, N);
}

namespace detail {
// The inner loops of the sparse ΔW pass and of the coefficient gather, over blocks of 16 rows
// (ops::spectral::block_size), each built for plain x86-64, AVX2 and AVX-512 and run at the
// level fourierft::detail::active_isa() picks (detail/isa.hpp; bit-identical across levels).

template <class Real>
struct SparseNonzero {
  Index u, v;  // a nonzero of the half spectrum (row u, column v)
  Real h;      // its value
};

// A[v_k, 0..15] += z_k · E_{u_k}[0..15] for every nonzero k, z_k = h_k·e^{2πi·u_k·p0/M}; a is
// (N/2 + 1) × 16 complex, bin-major; row_phases holds E_u and i·E_u for every u < M (4·16 reals,
// E_u[r] = e^{2πi·u·r/M}):  (z.re + i·z.im)(x + i·y) = z.re·(x, y) + z.im·(−y, x), a 32-real
// multiply-add.
template <class Real>
void sparse_columns_block(Real* a, const SparseNonzero<Real>* nonzeros, std::size_t count,
                          const Real* row_phases, const std::complex<Real>* twiddle, Index M,
                          Index p0) {
  fourierft::detail::run_dispatched([&] {
    for (std::size_t k = 0; k < count; ++k) {
      const std::complex<Real> t = twiddle[(nonzeros[k].u * p0) % M];
      const Real zr = nonzeros[k].h * t.real(), zi = nonzeros[k].h * t.imag();
      const Real* E = row_phases + nonzeros[k].u * 64;
      const Real* iE = E + 32;
      Real* column = a + 32 * nonzeros[k].v;
      for (int j = 0; j < 32; ++j) column[j] += zr * E[j] + zi * iE[j];
    }
  });
}

// The tables of the sparse pass for M rows, made once per M and kept: twiddle[k] = e^{2πi·k/M}
// and, per u < M, E_u[r] and i·E_u[r] (r < 16) as 2·16 interleaved reals each.
template <class Real>
struct SparseRowTables {
  std::vector<std::complex<Real>> twiddle;
  std::vector<Real> row_phases;

  static const SparseRowTables& cached(Index M) {
    return fourierft::detail::kept_per_size<SparseRowTables>(M);
  }
  explicit SparseRowTables(Index M) {
    std::vector<std::complex<double>> exact(static_cast<std::size_t>(M));
    for (Index k = 0; k < M; ++k) {
      exact[k] = std::polar(1.0, 2 * std::numbers::pi * double(k) / double(M));
      twiddle.push_back(std::complex<Real>(exact[k]));
    }
    row_phases.reserve(static_cast<std::size_t>(64 * M));
    for (Index u = 0; u < M; ++u) {
      for (Index r = 0; r < 16; ++r) {
        row_phases.push_back(static_cast<Real>(exact[(u * r) % M].real()));
        row_phases.push_back(static_cast<Real>(exact[(u * r) % M].imag()));
      }
      for (Index r = 0; r < 16; ++r) {
        row_phases.push_back(static_cast<Real>(-exact[(u * r) % M].imag()));
        row_phases.push_back(static_cast<Real>(exact[(u * r) % M].real()));
      }
    }
  }
};

template <class Real>
struct GatherEntry {
  Index u, v;  // folded frequencies, < M/2 + 1 and < N/2 + 1
  Real sign;   // −1 when exactly one of u, v was conjugated
  Index slot;  // the coefficient's place in the accumulators
};

// acc[slot_l] += Σ_{r < 16} Re(DY[r, u_l] · X[r, v_l]) (with sign_l on the imaginary products)
// for every entry; the spectra are (bins × 16) complex, bin-major. An entry's 32 products are
// summed in 8 fixed lanes (even: re·re, odd: im·im), in Real, then added to its double.
template <class Real>
void gather_block(const Real* dy_spectra, const Real* x_spectra, const GatherEntry<Real>* entries,
                  std::size_t count, double* acc) {
  fourierft::detail::run_dispatched([&] {
    for (std::size_t k = 0; k < count; ++k) {
      const Real* p = dy_spectra + 32 * entries[k].u;
      const Real* q = x_spectra + 32 * entries[k].v;
      Real lane[8] = {};
      for (int j = 0; j < 32; j += 8)
        for (int i = 0; i < 8; ++i) lane[i] += p[j + i] * q[j + i];
      const Real real = (lane[0] + lane[2]) + (lane[4] + lane[6]);
      const Real imag = (lane[1] + lane[3]) + (lane[5] + lane[7]);
      acc[entries[k].slot] += static_cast<double>(real - entries[k].sign * imag);
    }
  });
}
}  // namespace detail

// ΔW by a sparse first pass: the 2-D IDFT is separable, and its first pass — down the columns of
// the half spectrum — has only ~n nonzeros to sum. For each block of 16 rows p = p0 + r:
//   A[v, r] = Σ_{nonzeros (u, v, h)} h · e^{+2πi·u·(p0 + r)/M}     (bin-major: A[v, 0..15] contiguous)
//           = h·e^{2πi·u·p0/M} · E_u[r],  E_u[r] = e^{2πi·u·r/M}   (a 16-vector per row u, kept)
// then each row's c2r over v (RowBlockIdft on the bin-major block), written to dW.
// Cost 8·nnz·M flops + the rows' c2rs, against the 2-D c2r's column pass 2.5·(N/2+1)·M·log2 M,
// and no (M, N/2+1) spectrum in memory; the blocks are independent (OpenMP).
// fourierft_delta_sparse_rows hands ΔW over block by block: sink(p0, rows, block) with
// block = ΔW[p0 : p0 + rows, :] (rows × N, contiguous, valid during the call), called from several
// threads at once for disjoint rows — fourierft_linear adds each block to w0 while it is in cache.
template <class Real, class Sink>
void fourierft_delta_sparse_rows(std::span<const Real> coeffs, const SpectralEntries& e, Real scale,
                                 Sink&& sink) {
  using ops::spectral::block_size;
  const Index M = e.d_out, N = e.d_in, H = N / 2 + 1;
  static_assert(block_size == 16, "the kernels work on blocks of 16 rows");
  const auto& tables = detail::SparseRowTables<Real>::cached(M);
  std::vector<detail::SparseNonzero<Real>> nonzeros;
  nonzeros.reserve(static_cast<std::size_t>(e.n() + 8));
  fourierft_half_spectrum<Real>(coeffs, e, scale,
                                [&](Index u, Index v, Real h) { nonzeros.push_back({u, v, h}); });
  const ops::spectral::RowBlockIdft<Real> idft(N);
  const Index blocks = (M + block_size - 1) / block_size;
#pragma omp parallel if (M * N > 65536)
  {
    ops::spectral::FftwBuffer<Real, Real> A(static_cast<std::size_t>(2 * block_size * H));
    ops::spectral::FftwBuffer<Real, Real> rows_out(idft.out_size());
    ops::spectral::FftwBuffer<Real, Real> work(idft.work_size());
#pragma omp for schedule(static)
    for (Index b = 0; b < blocks; ++b) {
      const Index p0 = b * block_size, rows = std::min<Index>(block_size, M - p0);
      Real* a = A.data();
      std::fill(a, a + A.size(), Real(0));
      detail::sparse_columns_block<Real>(a, nonzeros.data(), nonzeros.size(),
                                         tables.row_phases.data(), tables.twiddle.data(), M, p0);
      idft(reinterpret_cast<std::complex<Real>*>(a), rows_out.data(), work.data());
      sink(p0, rows, static_cast<const Real*>(rows_out.data()));
    }
  }
}

template <class Real>
void fourierft_delta_forward_sparse(std::span<Real> dW, std::span<const Real> coeffs,
                                    const SpectralEntries& e, Real scale) {
  const Index N = e.d_in;
  fourierft_delta_sparse_rows<Real>(coeffs, e, scale, [&](Index p0, Index rows, const Real* block) {
    std::copy(block, block + rows * N, dW.data() + p0 * N);
  });
}

// Which ΔW path is cheaper: the sparse first pass while n <= (N/2 + 1)·log2(M) / 2 (1845 at
// 768 x 768, 2565 at 1024 x 1024). Measured side by side, 2 threads, sparse vs c2r: 768², n = 1000
// 0.40 vs 0.56 ms, n = 2000 0.61 vs 0.57; 1024², n = 1000 0.76 vs 1.38, n = 3000 1.37 vs 1.54,
// n = 4000 1.55 vs 1.49.
inline bool fourierft_delta_prefers_sparse(const SpectralEntries& e) {
  return 2.0 * static_cast<double>(e.n()) <=
         static_cast<double>(e.d_in / 2 + 1) * std::log2(static_cast<double>(std::max<Index>(e.d_out, 2)));
}

template <class Real>
void fourierft_delta_forward(std::span<Real> dW, std::span<const Real> coeffs,
                             const SpectralEntries& e, Real scale) {
  check<ShapeError>(static_cast<Index>(dW.size()) == e.d_out * e.d_in &&
                        static_cast<Index>(coeffs.size()) == e.n(),
                    "fourierft_delta_forward: ΔW of ", dW.size(), " values and ", coeffs.size(),
                    " coefficients do not fit ", e.n(), " entries of (", e.d_out, ", ", e.d_in, ")");
  if (fourierft_delta_prefers_sparse(e))
    fourierft_delta_forward_sparse<Real>(dW, coeffs, e, scale);
  else
    fourierft_delta_forward_c2r<Real>(dW, coeffs, e, scale);
}

// The same ΔW through the full complex inverse DFT (FFTW c2c), exactly as PEFT computes it:
// scale · Re(ifft2(F)). Kept as the reference the c2r path is tested and benchmarked against.
template <class Real>
void fourierft_delta_forward_c2c(std::span<Real> dW, std::span<const Real> coeffs,
                                 const SpectralEntries& e, Real scale) {
  const Index M = e.d_out, N = e.d_in;
  std::vector<std::complex<Real>> F(static_cast<std::size_t>(M * N)), out(F.size());
  for (Index l = 0; l < e.n(); ++l) F[e.rows[l] * N + e.cols[l]] = coeffs[l];
  ops::spectral::inverse_dft2_c2c<Real>(F, out, M, N);
  const Real norm = scale / static_cast<Real>(M * N);
  for (std::size_t i = 0; i < out.size(); ++i) dW[i] = norm * out[i].real();
}

// backward from a dense gradient G = dL/dΔW: (M, N), real.
//   dcoeffs[l] += scale/(M·N) · Re(DFT2(G))[rows_l, cols_l]      (forward DFT, e^{−i})
// One r2c 2-D FFT, then a gather: for cols_l > N/2, DFT2(G)[u,v] = conj DFT2(G)[−u,−v] (G is
// real), and conjugation keeps the real part.
template <class Real>
void fourierft_delta_backward(std::span<Real> dcoeffs, std::span<const Real> G,
                              const SpectralEntries& e, Real scale) {
  const Index M = e.d_out, N = e.d_in, H = N / 2 + 1;
  std::vector<std::complex<Real>> half(static_cast<std::size_t>(M * H));
  ops::spectral::forward_dft2_r2c<Real>(G, half, M, N);
  const Real norm = scale / static_cast<Real>(M * N);
  for (Index l = 0; l < e.n(); ++l) {
    const Index u = e.rows[l], v = e.cols[l];
    const std::complex<Real> z = v < H ? half[u * H + v] : half[((M - u) % M) * H + (N - v)];
    dcoeffs[l] += norm * z.real();
  }
}

// backward without forming G = dyᵀ·x (which costs a T·M·N GEMM). With y = x·ΔWᵀ + ...:
//   dcoeffs[l] += scale/(M·N) · Re Σ_t DY[t, rows_l] · X[t, cols_l]
// where DY = DFT of each row of dy (T, M) and X = DFT of each row of x (T, N) (forward, e^{−i}).
// Cost T·(M log M + N log N) + T·n instead of 2·T·M·N.
//
// One target per adapter reading the same x (GPT-2's q and v slices of the fused c_attn):
template <class Real>
struct CoeffGradTarget {
  std::span<Real> dcoeffs;         // (n), accumulated into; empty: only dx is asked for
  const SpectralEntries* entries;  // (M, N): M = the adapter's output rows, N = d_in
  Real scale;
  Index out_offset = 0;              // the adapter's first column in dy
  std::span<const Real> coeffs = {};  // (n): read only for dx (fourierft_spectral_backward)
};

namespace detail {
// One term of a half spectrum built from another (the beside product, fourierft_beside):
//   out[dst, r] += weight · in[src, r]  with in[src, r]'s imaginary part times imag_sign
// for the 16 rows r of a block; in and out are (bins × 16) complex, bin-major.
template <class Real>
struct ScatterTerm {
  Index src, dst;
  Real weight;
  Real imag_sign;  // −1: the conjugate of in[src, r]
};

template <class Real>
void scatter_block(Real* out, const Real* in, const ScatterTerm<Real>* terms, std::size_t count) {
  fourierft::detail::run_dispatched([&] {
    for (std::size_t k = 0; k < count; ++k) {
      const Real* s = in + 32 * terms[k].src;
      Real* d = out + 32 * terms[k].dst;
      const Real w[2] = {terms[k].weight, terms[k].weight * terms[k].imag_sign};
      for (int j = 0; j < 32; ++j) d[j] += w[j & 1] * s[j];
    }
  });
}

// The terms of  out[p] = Re Σ_l h_l · conj(IN[src_l]) · e^{+2πi·dst_l·p/L_out},  h_l = factor·c_l,
// where IN is the DFT (e^{−i}) of a real row of length L_in, kept as its half spectrum, and out a
// real row of length L_out made by a c2r from the Hermitian half spectrum
//   H[k] = (S[k] + conj S[−k]) / 2,   S[k] = Σ_{l: dst_l = k} h_l · conj(IN[src_l]):
//   h_l/2 · conj(IN[src_l]) at dst_l          if dst_l < L_out/2 + 1
//   h_l/2 · IN[src_l]       at −dst_l mod L_out if that is < L_out/2 + 1   (both at 0 and L_out/2)
// and IN[k] = conj IN[L_in − k] for k past the half. Sorted by (dst, src): neighbouring terms
// write and read the same cache lines.
template <class Real>
std::vector<ScatterTerm<Real>> beside_terms(std::span<const std::int64_t> src_freq,
                                            std::span<const std::int64_t> dst_freq, Index in_length,
                                            Index out_length, std::span<const Real> coeffs,
                                            Real factor) {
  const Index in_bins = in_length / 2 + 1, out_bins = out_length / 2 + 1;
  std::vector<ScatterTerm<Real>> terms;
  terms.reserve(2 * coeffs.size());
  for (std::size_t l = 0; l < coeffs.size(); ++l) {
    const Index s = src_freq[l], d = dst_freq[l], d_mirror = (out_length - d) % out_length;
    const bool folded = s >= in_bins;  // IN[s] = conj IN[in_length − s]
    const Index src = folded ? in_length - s : s;
    const Real h = factor * coeffs[l] / Real(2);
    if (d < out_bins) terms.push_back({src, d, h, folded ? Real(1) : Real(-1)});
    if (d_mirror < out_bins) terms.push_back({src, d_mirror, h, folded ? Real(-1) : Real(1)});
  }
  std::sort(terms.begin(), terms.end(), [](const ScatterTerm<Real>& a, const ScatterTerm<Real>& b) {
    return a.dst != b.dst ? a.dst < b.dst : a.src < b.src;
  });
  return terms;
}

// Adds a block's rows of a c2r result (16 rows of `length`, contiguous) into rows ld apart.
template <class Real>
void add_rows(Real* out, Index ld, const Real* block, Index rows, Index length) {
  fourierft::detail::run_dispatched([&] {
    for (Index r = 0; r < rows; ++r) {
      Real* row = out + r * ld;
      const Real* src = block + r * length;
      for (Index q = 0; q < length; ++q) row[q] += src[q];
    }
  });
}
}  // namespace detail

//   dy: (T, ·) with rows ldy apart;  x: (T, d_in) contiguous;  dx: (T, d_in) or nullptr
// The coefficient gradients of the targets that ask for them (non-empty dcoeffs) and, when dx is
// given, dx += Σ_k dy[:, block k]·ΔW_k — the backward of the beside product (fourierft_beside):
//   dx[t,q] = Σ_p dy[t,p]·ΔW[p,q] = scale/(M·N) · Re Σ_l c_l · conj(DY[t,u_l]) · e^{+2πi·v_l·q/N}
// i.e. the beside forward with the roles of rows and columns swapped: DY gathered at the rows
// u_l, scattered at the columns v_l into one length-N half spectrum for all targets, one c2r.
// Fused per block of 16 tokens, on one thread per block: the block's row DFTs of x (once for all
// targets) and of each target's dy columns, stored bin-major (RowBlockDft), then the gather —
// an entry's 16 products are 32 contiguous reals — and the dx scatter while the spectra are in
// cache. The spectra of all T rows (3 MB each at 1024 x 768) are never stored.
template <class Real>
void fourierft_spectral_backward(const Real* dy, Index ldy, const Real* x, Index T, Index d_in,
                                 std::span<const CoeffGradTarget<Real>> targets, Real* dx) {
  using Complex = std::complex<Real>;
  using ops::spectral::block_size;
  const Index HN = d_in / 2 + 1;
  // Entry l of a target reads DY[t, u] and X[t, v]; for a frequency past the half, the conjugate
  // partner, and Re(a·b) = a.re·b.re − a.im·b.im with conjugation flipping the sign of .im:
  //   dcoeffs[l] += scale/(M·N) · Σ_t (DY[t,u'].re·X[t,v'].re − sign_l · DY[t,u'].im·X[t,v'].im)
  // Entries are visited sorted by (u', v') so neighbouring entries read the same cache lines.
  using Entry = detail::GatherEntry<Real>;
  static_assert(block_size == 16, "the gather works on blocks of 16 rows");
  std::vector<std::vector<Entry>> sorted(targets.size());
  std::vector<std::vector<detail::ScatterTerm<Real>>> dx_terms(targets.size());
  std::vector<ops::spectral::RowBlockDft<Real>> dy_dfts;
  Index slots = 0, max_length = d_in;  // the longest row transformed (x's or an adapter's dy)
  bool coeff_grads = false;
  for (std::size_t k = 0; k < targets.size(); ++k) {
    const SpectralEntries& e = *targets[k].entries;
    const bool wants_dc = !targets[k].dcoeffs.empty();
    check<ShapeError>(e.d_in == d_in &&
                          (!wants_dc || static_cast<Index>(targets[k].dcoeffs.size()) == e.n()) &&
                          (!dx || static_cast<Index>(targets[k].coeffs.size()) == e.n()) &&
                          targets[k].out_offset >= 0 && targets[k].out_offset + e.d_out <= ldy,
                      "fourierft_spectral_backward: an adapter of shape (", e.d_out, ", ", e.d_in,
                      ") at column ", targets[k].out_offset, " does not fit dy's rows of ", ldy,
                      " and x's of ", d_in, ", or its coefficients do not fit its ", e.n(),
                      " entries");
    const Index M = e.d_out, HM = M / 2 + 1;
    if (wants_dc) {
      coeff_grads = true;
      for (Index l = 0; l < e.n(); ++l) {
        const Index u = e.rows[l], v = e.cols[l];
        sorted[k].push_back({u < HM ? u : M - u, v < HN ? v : d_in - v,
                             (u < HM) == (v < HN) ? Real(1) : Real(-1), slots + l});
      }
      std::sort(sorted[k].begin(), sorted[k].end(),
                [](const Entry& a, const Entry& b) { return a.u != b.u ? a.u < b.u : a.v < b.v; });
      slots += e.n();
    }
    if (dx)
      dx_terms[k] = detail::beside_terms<Real>(e.rows, e.cols, M, d_in, targets[k].coeffs,
                                               targets[k].scale / static_cast<Real>(M * d_in));
    dy_dfts.emplace_back(M);
    max_length = std::max(max_length, M);
  }
  const ops::spectral::RowBlockDft<Real> x_dft(d_in);
  const ops::spectral::RowBlockIdft<Real> dx_idft(d_in);
  const Index blocks = (T + block_size - 1) / block_size;
  const int threads = T * d_in > 65536 ? num_threads() : 1;
  // Per thread: an entry's block sum (Real, in registers) is added to a double accumulator; the
  // threads' accumulators are added at the end (no atomics).
  std::vector<double> partial(static_cast<std::size_t>(threads * slots), 0.0);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
#ifdef _OPENMP
    double* acc = partial.data() + static_cast<std::size_t>(omp_get_thread_num()) * slots;
#else
    double* acc = partial.data();
#endif
    ops::spectral::FftwBuffer<Complex, Real> X(x_dft.out_size());
    ops::spectral::FftwBuffer<Complex, Real> DY(static_cast<std::size_t>((max_length / 2 + 1) * block_size));
    ops::spectral::FftwBuffer<Real, Real> scratch(static_cast<std::size_t>(2 * block_size * max_length));
    ops::spectral::FftwBuffer<Complex, Real> DX(dx ? x_dft.out_size() : 0);
    ops::spectral::FftwBuffer<Real, Real> dx_work(dx ? dx_idft.work_size() : 0);
#pragma omp for schedule(static)
    for (Index b = 0; b < blocks; ++b) {
      const Index t0 = b * block_size, rows = std::min<Index>(block_size, T - t0);
      if (coeff_grads) x_dft(x + t0 * d_in, d_in, rows, X.data(), scratch.data());
      if (dx) std::fill(DX.data(), DX.data() + DX.size(), Complex());
      for (std::size_t k = 0; k < targets.size(); ++k) {
        dy_dfts[k](dy + t0 * ldy + targets[k].out_offset, ldy, rows, DY.data(), scratch.data());
        const Real* dy_spectra = reinterpret_cast<const Real*>(DY.data());
        const Real* x_spectra = reinterpret_cast<const Real*>(X.data());
        detail::gather_block<Real>(dy_spectra, x_spectra, sorted[k].data(), sorted[k].size(), acc);
        detail::scatter_block<Real>(reinterpret_cast<Real*>(DX.data()), dy_spectra,
                                    dx_terms[k].data(), dx_terms[k].size());
      }
      if (dx) {  // scratch holds 16 rows of d_in <= max_length
        dx_idft(DX.data(), scratch.data(), dx_work.data());
        detail::add_rows<Real>(dx + t0 * d_in, d_in, scratch.data(), rows, d_in);
      }
    }
  }
  Index slot = 0;
  for (const CoeffGradTarget<Real>& target : targets) {
    if (target.dcoeffs.empty()) continue;
    const SpectralEntries& e = *target.entries;
    const double norm = static_cast<double>(target.scale) / static_cast<double>(e.d_out * e.d_in);
    for (Index l = 0; l < e.n(); ++l, ++slot) {
      double s = 0;
      for (int k = 0; k < threads; ++k) s += partial[static_cast<std::size_t>(k * slots + slot)];
      target.dcoeffs[l] += static_cast<Real>(norm * s);
    }
  }
}

// The coefficient gradients alone (fourierft_linear's spectral path takes them, and with W not
// held dx too, from fourierft_spectral_backward directly).
template <class Real>
void fourierft_coeff_grad_spectral(const Real* dy, Index ldy, const Real* x, Index T, Index d_in,
                                   std::span<const CoeffGradTarget<Real>> targets) {
  fourierft_spectral_backward<Real>(dy, ldy, x, T, d_in, targets, nullptr);
}

// ΔW as an autograd op (teaching, gradient checks, and PEFT's unmerged `base(x) + x·ΔWᵀ`).
//   coeffs: (n)  ->  ΔW: (d_out, d_in)
template <class Real>
Var<Real> fourierft_delta(Tape<Real>& tape, const Var<Real>& coeffs,
                          std::shared_ptr<const SpectralEntries> entries, Real scale) {
  check<ShapeError>(coeffs.shape() == Shape{entries->n()}, "fourierft_delta: coeffs has shape ",
                    shape_str(coeffs.shape()), " but there are ", entries->n(), " entries");
  Var<Real> dW = tape.output({entries->d_out, entries->d_in});
  fourierft_delta_forward<Real>(dW.data(), coeffs.data(), *entries, scale);
  tape.record("fourierft_delta", {coeffs}, dW, [=](std::span<const Real> dy) {
    fourierft_delta_backward<Real>(grad_if_needed(coeffs), dy, *entries, scale);
  });
  return dW;
}

// How the coefficient gradient of fourierft_linear is computed.
enum class CoeffGradPath {
  automatic,  // spectral unless n is a large fraction of the weight (then the dense GEMM wins)
  spectral,   // row DFTs of dy and x, gathered at the entries: T·(M log M + N log N + n)
  dense,      // G = dyᵀ·x (GEMM, T·M·N), one 2-D DFT of G, gathered
};

// Whether fourierft_linear holds the merged weight W = w0 + ΔW from forward to backward (where
// dx = dy·W needs it) or not. Not held, dx = dy·w0 + Σ_k dy_k·ΔW_k, the adapters' terms taken from
// the DFTs of dy their coefficient gradients compute anyway (spectral path); with a dense-path
// adapter W is built again instead (every adapter's ΔW again, one more pass over W).
enum class WeightReuse {
  automatic,  // hold W when it is no larger than the input x the op holds anyway (d_out <= T):
              // at most doubles the op's saved memory; not holding costs a few % of a 768 x 768
              // layer at T = 1024 (measured when not holding meant rebuilding W, 2 threads:
              // 15.0–15.7 ms held vs 15.8–16.1 ms rebuilt)
  hold,       // always hold (fastest)
  rebuild,    // never hold (least memory: GPT-2 small's fused c_attn would hold 85 MB per step)
};

// One spectral adapter on a block of output rows [out_offset, out_offset + entries.d_out) of a
// linear layer (a whole weight, or the q or v slice of GPT-2's fused c_attn).
template <class Real>
struct SpectralBlock {
  Var<Real> coeffs;                                 // (n), trainable
  std::shared_ptr<const SpectralEntries> entries;   // (d_out_block, d_in)
  Real scale;
  Index out_offset = 0;
};

// ---------------------------------------------------------------------------
// fourierft_linear: a frozen linear layer plus FourierFT updates, in one GEMM.
//   x: (T, d_in) (any leading dims)  w0: (d_out, d_in) or Conv1D (d_in, d_out), frozen
//   bias: (d_out) or none            blocks: spectral adapters on output row blocks
//   W = w0 + Σ_k ΔW_k (placed at rows out_offset_k; transposed for Conv1D)
//   y = x·Wᵀ + b                      (one GEMM, not base(x) + x·ΔWᵀ)
// backward: dx += dy·W;  db += Σ_t dy;  dcoeffs_k from dy[:, block k] and x (see CoeffGradPath).
// w0 never gets a gradient: FourierFT trains only the coefficients (and, optionally, the bias).
template <class Real>
Var<Real> fourierft_linear(Tape<Real>& tape, const Var<Real>& x, const Var<Real>& w0,
                           const Var<Real>& bias, const std::vector<SpectralBlock<Real>>& blocks,
                           ops::WeightLayout layout = ops::WeightLayout::out_in,
                           CoeffGradPath path = CoeffGradPath::automatic,
                           WeightReuse reuse = WeightReuse::automatic) {
  check(!w0.requires_grad(), "fourierft_linear: the base weight must be frozen (it requires a ",
        "gradient); FourierFT trains only the spectral coefficients");
  const auto dims = ops::linear_dims("fourierft_linear", x, w0, bias, layout);  // (not a structured binding: lambdas capture these)
  const Index d_in = dims.first, d_out = dims.second;
  const bool out_in = layout == ops::WeightLayout::out_in;
  for (const SpectralBlock<Real>& b : blocks) {
    const SpectralEntries& e = *b.entries;
    check<ShapeError>(e.d_in == d_in && b.out_offset >= 0 && b.out_offset + e.d_out <= d_out,
                      "fourierft_linear: a spectral block of shape (", e.d_out, ", ", e.d_in,
                      ") at output offset ", b.out_offset, " does not fit the weight ",
                      shape_str(w0.shape()));
    check<ShapeError>(b.coeffs.shape() == Shape{e.n()}, "fourierft_linear: coeffs has shape ",
                      shape_str(b.coeffs.shape()), " but there are ", e.n(), " entries");
  }
  // W = w0 + ΔW, in w0's layout, in one pass over W: W's rows (out_in) or columns (Conv1D's
  // in_out) under an adapter are written as w0 + ΔW, the others copied from w0. (Adapters whose
  // rows overlap: W = w0 first, then each ΔW added.) ΔW goes to an uninitialised FFTW-aligned
  // buffer (the c2r writes it in place).
  // Built for the forward GEMM; backward holds it or builds it again (WeightReuse).
  auto build_weight = [w0, blocks, out_in, d_in = d_in, d_out = d_out]() {
    std::vector<char> covered(static_cast<std::size_t>(d_out), 0);
    bool disjoint = true;
    for (const SpectralBlock<Real>& b : blocks)
      for (Index p = b.out_offset; p < b.out_offset + b.entries->d_out; ++p) {
        disjoint = disjoint && !covered[p];
        covered[p] = 1;
      }
    Tensor<Real> w = Tensor<Real>::uninitialized(w0.shape());
    const Real* src = w0.data().data();
    Real* wp = w.ptr();
    // Copies w0's output rows [p0, p1) (a column range of every row for in_out).
    auto copy_outputs = [&](Index p0, Index p1) {
      if (out_in) {
        std::copy(src + p0 * d_in, src + p1 * d_in, wp + p0 * d_in);
      } else {
        for (Index q = 0; q < d_in; ++q)
          std::copy(src + q * d_out + p0, src + q * d_out + p1, wp + q * d_out + p0);
      }
    };
    for (Index p = 0; p < d_out;) {
      Index end = p;
      while (end < d_out && covered[end] == covered[p]) ++end;
      if (!covered[p] || !disjoint) copy_outputs(p, end);
      p = end;
    }
    // W's rows under an adapter = base + ΔW: base is w0 (disjoint adapters) or W itself (a copy
    // of w0 already, adapters overlapping). add_rows takes ΔW rows [p0, p0 + rows) of one adapter
    // (rows × d_in, contiguous); in_out writes `rows` contiguous values of each row of W.
    const Real* base = disjoint ? src : wp;
    auto add_rows = [&](Index first, Index rows, const Real* delta) {
      fourierft::detail::run_dispatched([&] {
        if (out_in) {
          for (Index i = 0; i < rows * d_in; ++i)
            wp[first * d_in + i] = base[first * d_in + i] + delta[i];
        } else {
          for (Index q = 0; q < d_in; ++q)
            for (Index r = 0; r < rows; ++r)
              wp[q * d_out + first + r] = base[q * d_out + first + r] + delta[r * d_in + q];
        }
      });
    };
    for (const SpectralBlock<Real>& b : blocks) {
      const SpectralEntries& e = *b.entries;
      if (fourierft_delta_prefers_sparse(e)) {  // blocks of 16 rows, added while in cache
        fourierft_delta_sparse_rows<Real>(b.coeffs.data(), e, b.scale,
                                          [&](Index p0, Index rows, const Real* delta) {
                                            add_rows(b.out_offset + p0, rows, delta);
                                          });
        continue;
      }
      ops::spectral::FftwBuffer<Real, Real> delta(static_cast<std::size_t>(e.d_out * d_in));
      fourierft_delta_forward_c2r<Real>(delta.span(), b.coeffs.data(), e, b.scale);
      constexpr Index rows_per_block = 32;
      const Index row_blocks = (e.d_out + rows_per_block - 1) / rows_per_block;
#pragma omp parallel for schedule(static) if (e.d_out * d_in > 65536)
      for (Index k = 0; k < row_blocks; ++k) {
        const Index p0 = k * rows_per_block;
        add_rows(b.out_offset + p0, std::min(rows_per_block, e.d_out - p0), delta.data() + p0 * d_in);
      }
    }
    return w;
  };
  const Index T = x.numel() / d_in;
  Shape out_shape = x.shape();
  out_shape.back() = d_out;
  Var<Real> y = tape.output_uninitialized(out_shape);  // linear_forward writes all of y
  const Tensor<Real> weight = build_weight();
  ops::linear_forward<Real>(y.data(), x.data(), weight.data(),
                            bias.defined() ? bias.data() : std::span<const Real>(), T, d_in,
                            d_out, layout);
  const bool hold = reuse == WeightReuse::hold || (reuse == WeightReuse::automatic && d_out <= T);
  // Held only if dx will be needed; an empty tensor otherwise (the closure then rebuilds).
  const Tensor<Real> held_weight = hold && x.requires_grad() ? weight : Tensor<Real>();
  // Recorded if x, the bias or any block's coefficients need a gradient.
  std::vector<Var<Real>> inputs = {x, bias};
  for (const SpectralBlock<Real>& b : blocks) inputs.push_back(b.coeffs);
  tape.record("fourierft_linear", inputs, y, [=](std::span<const Real> dy) {
    bool dx_fresh = false;  // x's first gradient: written by the dx GEMM, not zeroed and added to
    const auto dx = grad_to_fill_if_needed(x, dx_fresh);
    // Which adapters take the spectral coefficient path (the others form G = dyᵀ·x each).
    auto spectral_path = [&](const SpectralEntries& e) {
      return path == CoeffGradPath::spectral ||
             (path == CoeffGradPath::automatic && 20 * e.n() < e.d_out * e.d_in);
    };
    // W not held: instead of building W = w0 + ΔW again, dx = dy·w0 + Σ_k dy_k·ΔW_k with each
    // adapter's term from the DFTs of dy that its coefficient gradient takes anyway
    // (fourierft_spectral_backward's dx: a scatter and one c2r per 16 tokens), when every adapter
    // is on the spectral path.
    bool dx_beside = !dx.empty() && held_weight.numel() == 0;
    for (const SpectralBlock<Real>& b : blocks) dx_beside = dx_beside && spectral_path(*b.entries);
    if (dx_beside && dx_fresh) {  // the spectral terms are added into dx before the GEMM
      std::fill(dx.begin(), dx.end(), Real(0));
      dx_fresh = false;
    }
    // Spectral-path adapters share one pass over x (GPT-2's q and v); dense ones form G each.
    std::vector<CoeffGradTarget<Real>> spectral_targets;
    for (const SpectralBlock<Real>& b : blocks) {
      auto dc = grad_if_needed(b.coeffs);
      const SpectralEntries& e = *b.entries;
      if (spectral_path(e)) {
        if (!dc.empty() || dx_beside)
          spectral_targets.push_back({dc, &e, b.scale, b.out_offset, b.coeffs.data()});
      } else if (!dc.empty()) {  // G = dy_blockᵀ · x : (d_out_block, d_in)
        std::vector<Real> G(static_cast<std::size_t>(e.d_out * d_in));
        fourierft::detail::gemm<Real>(true, false, e.d_out, d_in, T, Real(1),
                                      dy.data() + b.out_offset, d_out, x.data().data(), d_in,
                                      Real(0), G.data(), d_in);
        fourierft_delta_backward<Real>(dc, G, e, b.scale);
      }
    }
    if (!spectral_targets.empty())
      fourierft_spectral_backward<Real>(dy.data(), d_out, x.data().data(), T, d_in,
                                        spectral_targets, dx_beside ? dx.data() : nullptr);
    if (bias.defined())
      ops::linear_backward<Real>({}, {}, grad_if_needed(bias), dy, x.data(), {}, T, d_in, d_out,
                                 layout);
    // dx last: the coefficient and bias gradients above read dy while it is still in cache from
    // the op that produced it.
    if (!dx.empty()) {
      const Tensor<Real> w = held_weight.numel() > 0 ? held_weight
                             : dx_beside             ? Tensor<Real>()
                                                     : build_weight();
      ops::linear_backward<Real>(dx, {}, {}, dy, x.data(), dx_beside ? w0.data() : w.data(), T,
                                 d_in, d_out, layout, !dx_fresh);
    }
  });
  return y;
}

// ---------------------------------------------------------------------------
// The beside product: x·ΔWᵀ straight from the n coefficients, ΔW never formed (the update of a
// layer whose frozen weight is not held in FP32, or of few tokens). M = d_out, N = d_in:
//   ΔW[p,q] = a · Σ_l c_l cos(2π(u_l·p/M + v_l·q/N)),   a = scale/(M·N),  (u_l, v_l) = entry l
// For one row x (N):
//   y[p] = Σ_q ΔW[p,q]·x[q] = a · Re Σ_l c_l · e^{2πi·u_l·p/M} · Σ_q x[q]·e^{+2πi·v_l·q/N}
//        = a · Re Σ_l c_l · conj(X[v_l]) · e^{2πi·u_l·p/M},   X = DFT(x) (e^{−i}; x is real)
// — one r2c of x, a gather of X at the columns v_l, a scatter at the rows u_l into a length-M
// half spectrum (detail::beside_terms), one c2r: T·(2.5·N·log2 N + 2.5·M·log2 M + 8n) flops
// against the GEMM's 2·T·M·N. Backward (fourierft_spectral_backward) with g = dy (M) per row and
// G = DFT(g): dc_l = a · Re Σ_t G[t,u_l]·X[t,v_l] (the spectral coefficient gradient), and
// dx[q] = a · Re Σ_l c_l · conj(G[u_l]) · e^{2πi·v_l·q/N}, the same product with rows and
// columns swapped.
//
//   y: (T, ·) rows ldy apart, added into (+=) at each block's columns [out_offset, + M)
//   x: (T, d_in) contiguous;  blocks: adapters on output row blocks (any layout: y's columns are
//   the output features either way)
// Per block of 16 tokens, on one thread per block: the block's row DFTs of x (once for all
// adapters, RowBlockDft), then per adapter the scatter and one 16-row c2r plan, added into y.
template <class Real>
void fourierft_beside_forward(Real* y, Index ldy, const Real* x, Index T, Index d_in,
                              std::span<const SpectralBlock<Real>> blocks) {
  using ops::spectral::block_size;
  std::vector<std::vector<detail::ScatterTerm<Real>>> terms;
  std::vector<ops::spectral::RowBlockIdft<Real>> idfts;
  Index max_length = d_in;
  std::size_t max_work = 1;
  for (const SpectralBlock<Real>& b : blocks) {
    const SpectralEntries& e = *b.entries;
    check<ShapeError>(e.d_in == d_in && b.out_offset >= 0 && b.out_offset + e.d_out <= ldy &&
                          b.coeffs.numel() == e.n(),
                      "fourierft_beside_forward: an adapter of shape (", e.d_out, ", ", e.d_in,
                      ") with ", b.coeffs.numel(), " coefficients at column ", b.out_offset,
                      " does not fit y's rows of ", ldy, " and x's of ", d_in);
    terms.push_back(detail::beside_terms<Real>(e.cols, e.rows, d_in, e.d_out, b.coeffs.data(),
                                               b.scale / static_cast<Real>(e.d_out * d_in)));
    idfts.emplace_back(e.d_out);
    max_length = std::max(max_length, e.d_out);
    max_work = std::max(max_work, idfts.back().work_size());  // 0 for FFTW's c2r
  }
  const ops::spectral::RowBlockDft<Real> x_dft(d_in);
  const Index token_blocks = (T + block_size - 1) / block_size;
  const int threads = T * d_in > 65536 ? num_threads() : 1;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    using Complex = std::complex<Real>;
    ops::spectral::FftwBuffer<Complex, Real> X(x_dft.out_size());
    ops::spectral::FftwBuffer<Complex, Real> Y(static_cast<std::size_t>((max_length / 2 + 1) * block_size));
    ops::spectral::FftwBuffer<Real, Real> scratch(static_cast<std::size_t>(2 * block_size * max_length));
    ops::spectral::FftwBuffer<Real, Real> work(max_work);
#pragma omp for schedule(static)
    for (Index b = 0; b < token_blocks; ++b) {
      const Index t0 = b * block_size, rows = std::min<Index>(block_size, T - t0);
      x_dft(x + t0 * d_in, d_in, rows, X.data(), scratch.data());
      for (std::size_t k = 0; k < blocks.size(); ++k) {
        const Index M = blocks[k].entries->d_out;
        std::fill(Y.data(), Y.data() + (M / 2 + 1) * block_size, Complex());
        detail::scatter_block<Real>(reinterpret_cast<Real*>(Y.data()),
                                    reinterpret_cast<const Real*>(X.data()), terms[k].data(),
                                    terms[k].size());
        idfts[k](Y.data(), scratch.data(), work.data());
        detail::add_rows<Real>(y + t0 * ldy + blocks[k].out_offset, ldy, scratch.data(), rows, M);
      }
    }
  }
}

// How an unmerged FourierFT adapter computes its layer (FourierFTAdapter::set_path).
enum class FourierFTPath {
  automatic,  // beside for a half-precision base weight (there is no FP32 W to merge into) and,
              // on an FP32 base, when fourierft_prefers_beside says so (few tokens); else merged
  merged,     // W = W0 + ΔW, one GEMM (fourierft_linear); FP32 base weights only
  beside,     // base(x) + x·ΔWᵀ from the spectrum (fourierft_add_beside)
};

// Whether the beside product is cheaper than merging ΔW into W, for T tokens through an FP32
// layer carrying `blocks`: while 2·T <= the adapted output rows (Σ_k d_out_k). Merging costs a
// pass over W per call whatever T is (ΔW built, added to a copy of W0; in training again in
// backward while d_out > T, WeightReuse); the beside product costs per token
// 2.5·(N·log2 N + M·log2 M) flops forward and again for dx. Measured (bench_fourierft --beside,
// n = 1000, docs/performance.md; 768², 1024², 2048², 256 x 2048, 4096²): beside/merged per
// training step 0.1–0.6 for T <= d_out/8, 0.6–0.98 up to the threshold, 1.05–1.3 once T >= d_out.
template <class Real>
bool fourierft_prefers_beside(Index T, const std::vector<SpectralBlock<Real>>& blocks) {
  Index adapted_rows = 0;
  for (const SpectralBlock<Real>& b : blocks) adapted_rows += b.entries->d_out;
  return 2 * T <= adapted_rows;
}

namespace detail {
// y = base + x·Σ_k ΔW_kᵀ (base undefined: zeros, d_out columns); see fourierft_add_beside.
template <class Real>
Var<Real> beside_op(Tape<Real>& tape, const Var<Real>& base, const Var<Real>& x,
                    const std::vector<SpectralBlock<Real>>& blocks, Index d_out) {
  const Index d_in = x.dim() > 0 ? x.shape().back() : 0;
  check<ShapeError>(x.dim() >= 1 && d_in > 0, "fourierft_beside: x has shape ",
                    shape_str(x.shape()), " (needs (..., d_in))");
  const Index T = x.numel() / d_in;
  Shape out_shape = x.shape();
  out_shape.back() = d_out;
  check<ShapeError>(!base.defined() || base.shape() == out_shape, "fourierft_beside: base has shape ",
                    shape_str(base.defined() ? base.shape() : Shape{}), " but x ",
                    shape_str(x.shape()), " needs ", shape_str(out_shape));
  for (const SpectralBlock<Real>& b : blocks)
    check<ShapeError>(b.entries->d_in == d_in && b.out_offset >= 0 &&
                          b.out_offset + b.entries->d_out <= d_out &&
                          b.coeffs.shape() == Shape{b.entries->n()},
                      "fourierft_beside: a spectral block of shape (", b.entries->d_out, ", ",
                      b.entries->d_in, ") with coeffs ", shape_str(b.coeffs.shape()),
                      " at output offset ", b.out_offset, " does not fit x ", shape_str(x.shape()),
                      " and ", d_out, " outputs");
  // The result takes over base's storage (a copy of a Tensor shares it): no second (T, d_out).
  Var<Real> y = base.defined() ? Var<Real>(base.value()) : tape.output(out_shape);
  fourierft_beside_forward<Real>(y.data().data(), d_out, x.data().data(), T, d_in, blocks);
  std::vector<Var<Real>> inputs = {base, x};
  for (const SpectralBlock<Real>& b : blocks) inputs.push_back(b.coeffs);
  tape.record("fourierft_beside", inputs, y, [=](std::span<const Real> dy) {
    if (base.defined())
      if (auto dbase = grad_if_needed(base); !dbase.empty())
        for (std::size_t i = 0; i < dbase.size(); ++i) dbase[i] += dy[i];
    const auto dx = grad_if_needed(x);
    std::vector<CoeffGradTarget<Real>> targets;
    for (const SpectralBlock<Real>& b : blocks) {
      auto dc = grad_if_needed(b.coeffs);
      if (dc.empty() && dx.empty()) continue;
      targets.push_back({dc, b.entries.get(), b.scale, b.out_offset, b.coeffs.data()});
    }
    if (!targets.empty())
      fourierft_spectral_backward<Real>(dy.data(), d_out, x.data().data(), T, d_in, targets,
                                        dx.empty() ? nullptr : dx.data());
  });
  return y;
}
}  // namespace detail

// ---------------------------------------------------------------------------
// fourierft_beside: the FourierFT updates alone, from the spectra (ΔW never formed).
//   x: (..., d_in)   blocks: adapters on output row blocks of a (d_out, d_in) layer
//   -> (..., d_out) = x·Σ_k ΔW_kᵀ (block k at columns [out_offset_k, + d_out_k); zeros elsewhere)
// backward: dx, dcoeffs (fourierft_spectral_backward).
template <class Real>
Var<Real> fourierft_beside(Tape<Real>& tape, const Var<Real>& x,
                           const std::vector<SpectralBlock<Real>>& blocks, Index d_out) {
  return detail::beside_op<Real>(tape, Var<Real>(), x, blocks, d_out);
}

// fourierft_add_beside: a frozen layer's output plus the FourierFT updates, PEFT's unmerged
// `base(x) + x·ΔWᵀ` without ΔW:
//   base: (..., d_out), e.g. nn::Linear::base_forward(tape, x), whose weight may be half precision
//   -> base + x·Σ_k ΔW_kᵀ;   backward: dbase += dy, dx, dcoeffs
// The result takes over base's storage (no second (T, d_out) buffer): base must be a fresh op
// output the caller does not read again.
template <class Real>
Var<Real> fourierft_add_beside(Tape<Real>& tape, const Var<Real>& base, const Var<Real>& x,
                               const std::vector<SpectralBlock<Real>>& blocks) {
  check(base.defined(), "fourierft_add_beside: base is undefined");
  return detail::beside_op<Real>(tape, base, x, blocks, base.shape().back());
}

}  // namespace fourierft::peft
