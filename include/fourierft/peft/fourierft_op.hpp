// fourierft/peft/fourierft_op.hpp — the FourierFT operator: spectral coefficients -> dense ΔW
// (forward, c2r inverse DFT) and dL/dΔW -> coefficient gradients (the DFT gathered at the entries).
#pragma once

#include <algorithm>
#include <complex>
#include <memory>
#include <span>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/detail/gemm.hpp"
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
// Computed exactly with one real (c2r) inverse DFT: Re(IDFT2(F)) = IDFT2(H) for the Hermitian
// H[u,v] = (F[u,v] + conj F[−u,−v]) / 2, whose half spectrum (M, N/2+1) is all c2r reads.
template <class Real>
void fourierft_delta_forward(std::span<Real> dW, std::span<const Real> coeffs,
                             const SpectralEntries& e, Real scale) {
  const Index M = e.d_out, N = e.d_in, H = N / 2 + 1;
  std::vector<std::complex<Real>> half(static_cast<std::size_t>(M * H));
  for (Index l = 0; l < e.n(); ++l) {
    const Index u = e.rows[l], v = e.cols[l];
    const Real c = coeffs[l] / Real(2);
    if (v < H) half[u * H + v] += c;
    const Index u_conj = (M - u) % M, v_conj = (N - v) % N;  // the conjugate partner (−u, −v)
    if (v_conj < H) half[u_conj * H + v_conj] += c;          // c is real: conj(c) = c
  }
  ops::spectral::inverse_dft2_c2r<Real>(half, dW, M, N);
  const Real norm = scale / static_cast<Real>(M * N);
  for (Real& w : dW) w *= norm;
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
// Cost T·(M log M + N log N) + T·n instead of 2·T·M·N. This part takes the row spectra:
//   DY: (T, M/2 + 1), X: (T, N/2 + 1) half spectra (forward_dft_rows_r2c).
template <class Real>
void fourierft_coeff_grad_from_spectra(std::span<Real> dcoeffs,
                                       std::span<const std::complex<Real>> DY,
                                       std::span<const std::complex<Real>> X, Index T,
                                       const SpectralEntries& e, Real scale) {
  const Index M = e.d_out, N = e.d_in, HM = M / 2 + 1, HN = N / 2 + 1;
  // Entry l reads DY[t, u] and X[t, v]; for frequencies past the half, the conjugate partner,
  // and Re(a·b) = a.re·b.re − a.im·b.im with conjugation flipping the sign of .im:
  //   dcoeffs[l] += scale/(M·N) · Σ_t (DY[t,u'].re·X[t,v'].re − sign_l · DY[t,u'].im·X[t,v'].im)
  // Entries are visited sorted by (u', v') so neighbouring entries read the same cache lines.
  struct Entry {
    Index u, v;  // folded frequencies, < HM and < HN
    Real sign;   // −1 when exactly one of u, v was conjugated
    Index l;     // the coefficient
  };
  const Index n = e.n();
  std::vector<Entry> sorted(static_cast<std::size_t>(n));
  for (Index l = 0; l < n; ++l) {
    const Index u = e.rows[l], v = e.cols[l];
    sorted[l] = {u < HM ? u : M - u, v < HN ? v : N - v, (u < HM) == (v < HN) ? Real(1) : Real(-1), l};
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const Entry& a, const Entry& b) { return a.u != b.u ? a.u < b.u : a.v < b.v; });
  // Rows t in blocks of 16: an entry's 16 products are summed in Real in registers, then added
  // to a per-thread double accumulator (2x faster than one double add per (t, entry) here).
  // Threads split the blocks; their partial sums are added at the end (no atomics).
  constexpr Index rows_per_block = 16;
  const Index blocks = (T + rows_per_block - 1) / rows_per_block;
  const int threads = T * n > 65536 ? num_threads() : 1;
  std::vector<double> partial(static_cast<std::size_t>(threads * n), 0.0);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
#ifdef _OPENMP
    double* acc = partial.data() + static_cast<std::size_t>(omp_get_thread_num()) * n;
#else
    double* acc = partial.data();
#endif
#pragma omp for schedule(static)
    for (Index k = 0; k < blocks; ++k) {
      const Index t0 = k * rows_per_block, t1 = std::min(T, t0 + rows_per_block);
      for (const Entry& entry : sorted) {
        Real real = 0, imag = 0;
        for (Index t = t0; t < t1; ++t) {
          const std::complex<Real> p = DY[t * HM + entry.u], q = X[t * HN + entry.v];
          real += p.real() * q.real();
          imag += p.imag() * q.imag();
        }
        acc[entry.l] += static_cast<double>(real - entry.sign * imag);
      }
    }
  }
  const double norm = static_cast<double>(scale) / static_cast<double>(M * N);
  for (Index l = 0; l < n; ++l) {
    double s = 0;
    for (int k = 0; k < threads; ++k) s += partial[static_cast<std::size_t>(k * n + l)];
    dcoeffs[l] += static_cast<Real>(norm * s);
  }
}

// The same from dy and x. Rows of dy are read with stride ldy, so a column block of a wider
// output (GPT-2's fused q|k|v) needs no copy.
template <class Real>
void fourierft_coeff_grad_spectral(std::span<Real> dcoeffs, const Real* dy, Index ldy,
                                   std::span<const Real> x, Index T, const SpectralEntries& e,
                                   Real scale) {
  const Index M = e.d_out, N = e.d_in, HM = M / 2 + 1, HN = N / 2 + 1;
  std::vector<std::complex<Real>> DY(static_cast<std::size_t>(T * HM)), X(static_cast<std::size_t>(T * HN));
  const std::size_t dy_span = T > 0 ? static_cast<std::size_t>((T - 1) * ldy + M) : 0;
  ops::spectral::forward_dft_rows_r2c<Real>(std::span<const Real>(dy, dy_span), DY, T, M, ldy);
  ops::spectral::forward_dft_rows_r2c<Real>(x, X, T, N);
  fourierft_coeff_grad_from_spectra<Real>(dcoeffs, DY, X, T, e, scale);
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
// dx = dy·W needs it) or builds it again there (one copy of w0 and one c2r per block).
enum class WeightReuse {
  automatic,  // hold W when it is no larger than the input x the op holds anyway (d_out <= T):
              // at most doubles the op's saved memory; ~5% of a 768 x 768 layer at T = 1024 (measured)
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
  const auto [d_in, d_out] = ops::linear_dims("fourierft_linear", x, w0, bias, layout);
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
  // W = w0 + ΔW, in w0's layout. ΔW goes to an uninitialised FFTW-aligned buffer (the c2r
  // overwrites it in place, no copies); Conv1D's (in, out) layout adds ΔWᵀ in 32 x 32 tiles.
  // Built for the forward GEMM; backward holds it or builds it again (WeightReuse).
  auto build_weight = [w0, blocks, out_in, d_in = d_in, d_out = d_out]() {
    Tensor<Real> w = w0.value().clone();
    for (const SpectralBlock<Real>& b : blocks) {
      const SpectralEntries& e = *b.entries;
      ops::spectral::FftwBuffer<Real, Real> delta_buffer(static_cast<std::size_t>(e.d_out * e.d_in));
      const std::span<Real> delta(delta_buffer.data(), delta_buffer.size());
      fourierft_delta_forward<Real>(delta, b.coeffs.data(), e, b.scale);
      Real* wp = w.ptr();
      if (out_in) {
        Real* dst = wp + b.out_offset * d_in;
        for (std::size_t i = 0; i < delta.size(); ++i) dst[i] += delta[i];
      } else {
        constexpr Index tile = 32;
        for (Index p0 = 0; p0 < e.d_out; p0 += tile)
          for (Index q0 = 0; q0 < d_in; q0 += tile) {
            const Index p1 = std::min(p0 + tile, e.d_out), q1 = std::min(q0 + tile, d_in);
            for (Index q = q0; q < q1; ++q)
              for (Index p = p0; p < p1; ++p) wp[q * d_out + b.out_offset + p] += delta[p * d_in + q];
          }
      }
    }
    return w;
  };
  const Index T = x.numel() / d_in;
  Shape out_shape = x.shape();
  out_shape.back() = d_out;
  Var<Real> y = tape.output_uninitialized(out_shape);  // the GEMM (beta = 0) writes all of y
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
    const auto dx = grad_if_needed(x);
    if (!dx.empty()) {
      const Tensor<Real> w = held_weight.numel() > 0 ? held_weight : build_weight();
      ops::linear_backward<Real>(dx, {}, {}, dy, x.data(), w.data(), T, d_in, d_out, layout);
    }
    if (bias.defined())
      ops::linear_backward<Real>({}, {}, grad_if_needed(bias), dy, x.data(), {}, T, d_in, d_out,
                                 layout);
    // The row spectra of x are shared by every block on the spectral path (GPT-2's q and v).
    // Spectra live in fftw_malloc'd buffers: SIMD-aligned for FFTW's blocked row plans, and not
    // zero-filled (the transforms overwrite every value).
    using SpectrumBuffer = ops::spectral::FftwBuffer<std::complex<Real>, Real>;
    std::unique_ptr<SpectrumBuffer> X;
    for (const SpectralBlock<Real>& b : blocks) {
      auto dc = grad_if_needed(b.coeffs);
      if (dc.empty()) continue;
      const SpectralEntries& e = *b.entries;
      const bool spectral = path == CoeffGradPath::spectral ||
                            (path == CoeffGradPath::automatic && 20 * e.n() < e.d_out * e.d_in);
      if (spectral) {
        const Index HM = e.d_out / 2 + 1, HN = d_in / 2 + 1;
        if (!X) {
          X = std::make_unique<SpectrumBuffer>(static_cast<std::size_t>(T * HN));
          ops::spectral::forward_dft_rows_r2c<Real>(x.data(), {X->data(), X->size()}, T, d_in);
        }
        SpectrumBuffer DY(static_cast<std::size_t>(T * HM));
        const std::span<std::complex<Real>> dy_spectra(DY.data(), DY.size());
        const std::size_t dy_span = T > 0 ? static_cast<std::size_t>((T - 1) * d_out + e.d_out) : 0;
        ops::spectral::forward_dft_rows_r2c<Real>(
            std::span<const Real>(dy.data() + b.out_offset, dy_span), dy_spectra, T, e.d_out, d_out);
        fourierft_coeff_grad_from_spectra<Real>(dc, dy_spectra, {X->data(), X->size()}, T, e, b.scale);
      } else {  // G = dy_blockᵀ · x : (d_out_block, d_in)
        std::vector<Real> G(static_cast<std::size_t>(e.d_out * d_in));
        fourierft::detail::gemm<Real>(true, false, e.d_out, d_in, T, Real(1),
                                      dy.data() + b.out_offset, d_out, x.data().data(), d_in,
                                      Real(0), G.data(), d_in);
        fourierft_delta_backward<Real>(dc, G, e, b.scale);
      }
    }
  });
  return y;
}

}  // namespace fourierft::peft
