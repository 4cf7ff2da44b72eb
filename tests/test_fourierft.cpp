// Tests of include/fourierft/peft: spectral entries, ΔW, its gradient, and the FourierFT linear op.
#include <doctest/doctest.h>

#include <cmath>
#include <numbers>
#include <set>

#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/reduce.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/peft/entries.hpp"
#include "fourierft/peft/fourierft.hpp"
#include "fourierft/peft/fourierft_op.hpp"
#include "gradcheck.hpp"

using namespace fourierft;
using namespace fourierft::peft;
using fourierft::testing::gradcheck;
using fourierft::testing::project;
using fourierft::testing::GradcheckResult;

namespace {
// The closed form, term by term: ΔW[p,q] = scale/(M·N) Σ_l c_l cos(2π(u_l p/M + v_l q/N)).
// Rows p with p % row_step == 0 only (the others stay 0) when row_step > 1.
std::vector<double> brute_force_delta(const SpectralEntries& e, std::span<const double> c,
                                      double scale, Index row_step = 1) {
  const Index M = e.d_out, N = e.d_in;
  std::vector<double> dW(static_cast<std::size_t>(M * N));
  for (Index p = 0; p < M; p += row_step)
    for (Index q = 0; q < N; ++q) {
      double s = 0;
      for (Index l = 0; l < e.n(); ++l)
        s += c[l] * std::cos(2 * std::numbers::pi *
                             (double(e.rows[l] * p) / double(M) + double(e.cols[l] * q) / double(N)));
      dW[p * N + q] = scale / double(M * N) * s;
    }
  return dW;
}

// y[t, out_offset + p] += Σ_q x[t,q]·ΔW[p,q] for each block, ΔW from fourierft_delta_forward in
// double: the dense reference for the beside product. x: (T, N), y: (T, d_out).
std::vector<double> dense_beside(const std::vector<double>& x, Index T, Index N, Index d_out,
                                 const std::vector<std::tuple<const SpectralEntries*, std::vector<double>, double, Index>>& blocks) {
  std::vector<double> y(static_cast<std::size_t>(T * d_out));
  for (const auto& [e, c, scale, offset] : blocks) {
    std::vector<double> dW(static_cast<std::size_t>(e->d_out * N));
    fourierft_delta_forward<double>(dW, c, *e, scale);
    for (Index t = 0; t < T; ++t)
      for (Index p = 0; p < e->d_out; ++p) {
        double s = 0;
        for (Index q = 0; q < N; ++q) s += x[t * N + q] * dW[p * N + q];
        y[t * d_out + offset + p] += s;
      }
  }
  return y;
}

// Entries at the edges of the spectrum: row and column 0, the Nyquist row M/2 and column N/2
// (when even), the last row and column, plus random ones.
SpectralEntries edge_entries(Index M, Index N, Index random_count) {
  std::set<std::pair<std::int64_t, std::int64_t>> picked = {
      {0, 0}, {0, N / 2}, {M / 2, 0}, {M / 2, N / 2}, {M - 1, N - 1}, {0, N - 1}, {M - 1, 0}};
  Rng rng(M * 31 + N);
  while (static_cast<Index>(picked.size()) < std::min(M * N, Index(7) + random_count)) {
    picked.insert({static_cast<std::int64_t>(rng.below(M)), static_cast<std::int64_t>(rng.below(N))});
  }
  std::vector<std::int64_t> rows, cols;
  for (auto [u, v] : picked) {
    rows.push_back(u);
    cols.push_back(v);
  }
  return explicit_entries(M, N, rows, cols);
}
}  // namespace

TEST_CASE("uniform entries are PEFT's randperm prefix, row-major, distinct") {
  auto e = uniform_entries(768, 768, 1000, 777);
  REQUIRE(e.n() == 1000);
  CHECK(e.rows[0] * 768 + e.cols[0] == 391271);  // golden value from NOTES.md
  CHECK(e.rows[7] * 768 + e.cols[7] == 198662);
  std::set<std::int64_t> flat;
  for (Index l = 0; l < e.n(); ++l) flat.insert(e.rows[l] * 768 + e.cols[l]);
  CHECK(flat.size() == 1000);
  CHECK(uniform_entries(768, 768, 1000, 777) == e);  // shared by every layer of the shape
  CHECK_THROWS_WITH_AS(uniform_entries(4, 5, 21, 777),
                       "uniform_entries: n = 21 spectral coefficients do not fit a (4, 5) weight: "
                       "need 1 <= n <= 20",
                       ValueError);
  CHECK_THROWS_AS(uniform_entries(4, 5, 0, 777), ValueError);
  CHECK(uniform_entries(4, 5, 20, 1).n() == 20);
}

TEST_CASE("frequency-biased entries follow eq. 5: distinct, seeded, concentrated in the band") {
  const Index M = 96, N = 96, n = 300;
  const double fc = 20, W = 10;
  auto e = frequency_biased_entries(M, N, n, fc, W, 3);
  CHECK(e == frequency_biased_entries(M, N, n, fc, W, 3));
  CHECK_FALSE(e == frequency_biased_entries(M, N, n, fc, W, 4));
  std::set<std::int64_t> flat;
  double mean_distance = 0;
  for (Index l = 0; l < n; ++l) {
    flat.insert(e.rows[l] * N + e.cols[l]);
    const double du = e.rows[l] <= M / 2 ? e.rows[l] : e.rows[l] - M;
    const double dv = e.cols[l] <= N / 2 ? e.cols[l] : e.cols[l] - N;
    mean_distance += std::sqrt(du * du + dv * dv) / n;
  }
  CHECK(flat.size() == std::size_t(n));
  // A uniform draw on 96×96 has mean distance ≈ 37; the band-pass pulls it to about f_c.
  CHECK(mean_distance == doctest::Approx(fc).epsilon(0.15));
  CHECK(band_pass_probability(0, 0, M, N, fc, W) == 0.0);
  CHECK(band_pass_probability(0, 20, M, N, fc, W) == doctest::Approx(1.0));
  CHECK_THROWS_AS(frequency_biased_entries(8, 8, 65, fc, W, 1), ValueError);
}

TEST_CASE("ΔW equals the brute-force cosine sum (odd, even, square, non-square; c2r and c2c)") {
  for (auto [M, N, n] : {std::tuple<Index, Index, Index>{8, 12, 10}, {7, 5, 10}, {16, 16, 40},
                         {9, 9, 81}, {6, 4, 1}, {1, 7, 3}}) {
    auto e = uniform_entries(M, N, n, 777);
    Rng rng(11);
    auto c = randn<double>({n}, rng);
    auto reference = brute_force_delta(e, c.data(), 150.0);
    std::vector<double> fast(reference.size()), c2r(reference.size()), sparse(reference.size()),
        complex_path(reference.size());
    fourierft_delta_forward<double>(fast, c.data(), e, 150.0);
    fourierft_delta_forward_c2r<double>(c2r, c.data(), e, 150.0);
    fourierft_delta_forward_sparse<double>(sparse, c.data(), e, 150.0);
    fourierft_delta_forward_c2c<double>(complex_path, c.data(), e, 150.0);
    for (std::size_t i = 0; i < reference.size(); ++i) {
      INFO("shape (", M, ", ", N, ") n=", n, " entry ", i);
      CHECK(fast[i] == doctest::Approx(reference[i]).epsilon(1e-12).scale(1.0));
      CHECK(c2r[i] == doctest::Approx(reference[i]).epsilon(1e-12).scale(1.0));
      CHECK(sparse[i] == doctest::Approx(reference[i]).epsilon(1e-12).scale(1.0));
      CHECK(complex_path[i] == doctest::Approx(reference[i]).epsilon(1e-12).scale(1.0));
    }
  }
}

TEST_CASE_TEMPLATE("ΔW matches PyTorch's golden values (NOTES.md: seed 777, n=1000, c_l=(l+1)/1000)",
                   Real, float, double) {
  for (auto [M, N, at00, at12, fro] :
       // ΔW[0,0] and ΔW[1,2] as in NOTES.md. The Frobenius norms there (2.52702451, 1.46064913) were
       // accumulated in float32 by torch.norm; these are the same ΔW's norms in float64
       // (torch 1.13: (150 * ifft2(F).real).double().norm() with F complex128).
       {std::tuple<Index, Index, double, double, double>{768, 768, 0.127283737, 0.00174456905, 2.527042227775334},
        {2304, 768, 0.0424279086, 0.00113936281, 1.4606855695421828}}) {
    auto e = uniform_entries(M, N, 1000, 777);
    std::vector<Real> c(1000);
    for (int l = 0; l < 1000; ++l) c[l] = Real(l + 1) / Real(1000);
    std::vector<Real> dW(static_cast<std::size_t>(M * N));
    fourierft_delta_forward<Real>(dW, c, e, Real(150));
    double norm = 0;
    for (Real w : dW) norm += double(w) * double(w);
    const double tol = std::is_same_v<Real, float> ? 1e-5 : 1e-8;
    CHECK(dW[0] == doctest::Approx(at00).epsilon(tol));
    CHECK(dW[1 * N + 2] == doctest::Approx(at12).epsilon(std::is_same_v<Real, float> ? 1e-3 : 1e-7));
    CHECK(std::sqrt(norm) == doctest::Approx(fro).epsilon(tol));
  }
}

TEST_CASE("fourierft_delta: coefficient gradients match central differences") {
  for (auto [M, N, n] : {std::tuple<Index, Index, Index>{8, 12, 10}, {7, 5, 10}, {5, 8, 1}, {6, 6, 36}}) {
    auto entries = std::make_shared<const SpectralEntries>(uniform_entries(M, N, n, 777));
    Rng rng(2);
    auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
      return project(t, fourierft_delta(t, in[0], entries, 3.0));
    };
    GradcheckResult r = gradcheck(loss, {randn<double>({n}, rng)});
    INFO("shape (", M, ", ", N, ") n=", n, ": ", r.report());
    CHECK(r.ok);
  }
}

TEST_CASE("fourierft_linear: y = x·(W0 + ΔW)ᵀ + b, gradients for coeffs, x and bias, both paths") {
  using Layout = ops::WeightLayout;
  for (auto [M, N, n] : {std::tuple<Index, Index, Index>{8, 12, 10}, {7, 5, 10}, {6, 9, 1}, {4, 4, 16}})
    for (Layout layout : {Layout::out_in, Layout::in_out})
      for (CoeffGradPath path : {CoeffGradPath::spectral, CoeffGradPath::dense})
      for (WeightReuse reuse : {WeightReuse::hold, WeightReuse::rebuild}) {
        Rng rng(M * 100 + N);
        auto entries = std::make_shared<const SpectralEntries>(uniform_entries(M, N, n, 777));
        auto x = randn<double>({2, 3, N}, rng);
        auto w0 = randn<double>(layout == Layout::out_in ? Shape{M, N} : Shape{N, M}, rng);
        auto b = randn<double>({M}, rng);
        auto c = randn<double>({n}, rng);
        auto forward = [&](Tape<double>& t, std::span<const Var<double>> in) {
          std::vector<SpectralBlock<double>> blocks = {{in[1], entries, 2.5, 0}};
          return fourierft_linear(t, in[0], Var<double>(w0), in[2], blocks, layout, path, reuse);
        };
        // Forward against W0 + ΔW built by hand.
        Tape<double> tape;
        std::vector<Var<double>> vars = {Var<double>(x), Var<double>(c), Var<double>(b)};
        Var<double> y = forward(tape, vars);
        std::vector<double> delta(static_cast<std::size_t>(M * N));
        fourierft_delta_forward<double>(delta, c.data(), *entries, 2.5);
        for (Index t = 0; t < 6; ++t)
          for (Index p = 0; p < M; ++p) {
            double ref = b[p];
            for (Index q = 0; q < N; ++q) {
              const double w = layout == Layout::out_in ? w0[p * N + q] : w0[q * M + p];
              ref += x[t * N + q] * (w + delta[p * N + q]);
            }
            CHECK(y.value()[t * M + p] == doctest::Approx(ref).epsilon(1e-12).scale(1.0));
          }
        GradcheckResult r = gradcheck(
            [&](Tape<double>& t, std::span<const Var<double>> in) { return project(t, forward(t, in)); },
            {x, c, b});
        INFO("shape (", M, ", ", N, ") n=", n, " layout ", int(layout), " path ", int(path),
             " reuse ", int(reuse), ": ", r.report());
        CHECK(r.ok);
      }
}

TEST_CASE_TEMPLATE("blocked row DFTs equal the direct sum: whole and partial blocks, strided, unaligned",
                   Real, float, double) {
  // Blocks of 16 rows of 400: contiguous, with a row stride of 403, starting one value in
  // (unaligned), and partial blocks (the rows past them must come out zero).
  using ops::spectral::block_size;
  const Index N = 400, H = N / 2 + 1;
  for (auto [ldx, offset, rows] : {std::tuple<Index, Index, Index>{N, 0, 16}, {403, 0, 16},
                                   {N, 1, 16}, {N, 0, 5}, {403, 1, 1}}) {
    Rng rng(ldx + offset + rows);
    auto x = randn<Real>({2 * block_size * ldx + offset}, rng);
    const Real* first = x.data().data() + offset + block_size * ldx;  // the second block
    ops::spectral::RowBlockDft<Real> dft(N);
    ops::spectral::FftwBuffer<std::complex<Real>, Real> out(dft.out_size());
    ops::spectral::FftwBuffer<Real, Real> scratch(dft.scratch_size());
    dft(first, ldx, rows, out.data(), scratch.data());
    double worst = 0;
    for (Index r = 0; r < block_size; ++r)
      for (Index k : {Index(0), Index(1), Index(57), H - 1}) {
        std::complex<double> direct = 0;
        if (r < rows)
          for (Index q = 0; q < N; ++q)
            direct += double(first[r * ldx + q]) *
                      std::polar(1.0, -2 * std::numbers::pi * double(k * q) / double(N));
        worst = std::max(worst, std::abs(direct - std::complex<double>(out.data()[k * block_size + r])));
      }
    INFO("ldx ", ldx, " offset ", offset, " rows ", rows, " worst ", worst);
    CHECK(worst < (std::is_same_v<Real, float> ? 1e-3 : 1e-9));
  }
}

TEST_CASE_TEMPLATE("LaneFft: real DFTs of 16 rows in SIMD lanes equal the direct sums", Real, float,
                   double) {
  // Every radix (4, 2, 3, 5) and mixes of them, the smallest lengths, a length the 16 x 16
  // transposes serve (768) and strided partial blocks. Forward: out[k·16 + r] = Σ_q x[r, q]·e^{−2πikq/N};
  // inverse: FFTW's c2r (unnormalised, imaginary parts of bins 0 and N/2 ignored).
  using ops::spectral::LaneFft;
  CHECK_FALSE(LaneFft<Real>::supports(14));   // H = 7
  CHECK_FALSE(LaneFft<Real>::supports(2));    // H = 1
  CHECK_FALSE(LaneFft<Real>::supports(25));   // odd
  CHECK(LaneFft<Real>::supports(4096));
  const double tolerance = std::is_same_v<Real, float> ? 1e-6 : 1e-13;
  for (Index N : {4, 6, 10, 16, 30, 60, 200, 768, 960})
    for (auto [rows, ld] : {std::pair<Index, Index>{16, N}, {7, N + 5}}) {
      Rng rng(N + rows);
      auto x = randn<Real>({16 * ld}, rng);
      auto half = randn<Real>({2 * 16 * (N / 2 + 1)}, rng);
      const LaneFft<Real>& fft = LaneFft<Real>::cached(N);
      std::vector<Real> work(fft.work_size());
      std::vector<std::complex<Real>> out(static_cast<std::size_t>(16 * fft.bins()));
      fft.forward(x.data().data(), ld, rows, out.data(), work.data());
      std::vector<Real> back(static_cast<std::size_t>(16 * ld), Real(7));
      const auto* spectrum = reinterpret_cast<const std::complex<Real>*>(half.data().data());
      fft.inverse(spectrum, back.data(), ld, rows, work.data());
      double worst_forward = 0, worst_inverse = 0, largest = 0;
      bool untouched = true;  // rows past `rows` keep their values
      for (Index r = 0; r < 16; ++r) {
        for (Index k = 0; k <= N / 2; ++k) {
          std::complex<double> direct = 0;
          if (r < rows)
            for (Index q = 0; q < N; ++q)
              direct += double(x[r * ld + q]) *
                        std::polar(1.0, -2 * std::numbers::pi * double(k * q % N) / double(N));
          largest = std::max(largest, std::abs(direct));
          worst_forward = std::max(worst_forward, std::abs(direct - std::complex<double>(out[k * 16 + r])));
        }
        for (Index q = 0; q < N; ++q) {
          if (r >= rows) {
            untouched = untouched && back[r * ld + q] == Real(7);
            continue;
          }
          double direct = 0;
          for (Index k = 0; k < N; ++k) {
            std::complex<double> h = k <= N / 2 ? std::complex<double>(spectrum[k * 16 + r])
                                                : std::conj(std::complex<double>(spectrum[(N - k) * 16 + r]));
            if (k == 0 || 2 * k == N) h = h.real();
            direct += (h * std::polar(1.0, 2 * std::numbers::pi * double(k * q % N) / double(N))).real();
          }
          worst_inverse = std::max(worst_inverse, std::abs(direct - double(back[r * ld + q])));
        }
      }
      INFO("N ", N, " rows ", rows, ": forward ", worst_forward, ", inverse ", worst_inverse,
           " (largest ", largest, ")");
      CHECK(worst_forward < tolerance * largest * std::log2(double(N)));
      CHECK(worst_inverse < tolerance * double(N) * std::log2(double(N)));
      CHECK(untouched);
    }
}

TEST_CASE("the blocked row transforms give the same spectra and rows with LaneFft and with FFTW") {
  // RowBlockDft / RowBlockIdft take LaneFft at the avx512 level (float); forced here, so the two
  // are compared on any CPU. They agree to rounding.
  using namespace ops::spectral;
  const Index N = 768;
  Rng rng(5);
  auto x = randn<float>({16 * N}, rng);
  std::vector<std::vector<float>> spectra, rows_out;
  for (auto backend : {RowTransformBackend::fftw, RowTransformBackend::lane_fft}) {
    RowBlockDft<float> dft(N, backend);
    RowBlockIdft<float> idft(N, backend);
    CHECK(dft.runs_on_lane_fft() == (backend == RowTransformBackend::lane_fft));
    CHECK(idft.runs_on_lane_fft() == (backend == RowTransformBackend::lane_fft));
    FftwBuffer<std::complex<float>, float> out(dft.out_size());
    FftwBuffer<float, float> scratch(dft.scratch_size()), back(idft.out_size()),
        work(idft.work_size());
    dft(x.data().data(), N, 16, out.data(), scratch.data());
    const auto* re = reinterpret_cast<const float*>(out.data());
    spectra.emplace_back(re, re + 2 * out.size());
    idft(out.data(), back.data(), work.data());
    rows_out.emplace_back(back.data(), back.data() + back.size());
  }
  double worst_spectrum = 0, worst_rows = 0;
  for (std::size_t i = 0; i < spectra[0].size(); ++i)
    worst_spectrum = std::max(worst_spectrum, double(std::abs(spectra[0][i] - spectra[1][i])));
  for (std::size_t i = 0; i < rows_out[0].size(); ++i)  // c2r(r2c(x)) = N·x
    worst_rows = std::max(worst_rows, double(std::abs(rows_out[0][i] - rows_out[1][i])));
  for (std::size_t i = 0; i < rows_out[1].size(); ++i)
    CHECK(std::abs(rows_out[1][i] - float(N) * x[static_cast<Index>(i)]) < 1e-3f * float(N));
  INFO("spectra differ by ", worst_spectrum, ", rows by ", worst_rows);
  CHECK(worst_spectrum < 2e-4);  // |X[k]| ~ sqrt(768) ~ 28
  CHECK(worst_rows < 2e-2);      // values ~ 768
}

TEST_CASE_TEMPLATE("ΔW equals the cosine sum at threaded sizes, both paths, with partial row blocks",
                   Real, float, double) {
  // 300 x 500 > 128K values: FFTW's 2-D c2r runs on the library's 2 threads, the sparse pass's
  // blocks of 16 rows are split between threads (18 whole blocks and 12 rows left over), and
  // fourierft_delta_forward picks the sparse path at n = 60 and the c2r path at n = 1200.
  // Compared on every 7th row (all blocks, and rows 294 of the partial one).
  const Index M = 300, N = 500, row_step = 7;
  for (Index n : {Index(60), Index(1200)}) {
    auto e = uniform_entries(M, N, n, 777);
    CHECK(fourierft_delta_prefers_sparse(e) == (n == 60));
    Rng rng(3);
    auto c = randn<double>({n}, rng);
    auto reference = brute_force_delta(e, c.data(), 150.0, row_step);
    std::vector<Real> cr(c.data().begin(), c.data().end());
    double largest = 0;
    for (double r : reference) largest = std::max(largest, std::abs(r));
    CHECK(largest > 0.01);
    for (int path = 0; path < 3; ++path) {
      std::vector<Real> fast(reference.size());
      if (path == 0) fourierft_delta_forward<Real>(fast, cr, e, Real(150));
      if (path == 1) fourierft_delta_forward_c2r<Real>(fast, cr, e, Real(150));
      if (path == 2) fourierft_delta_forward_sparse<Real>(fast, cr, e, Real(150));
      double worst = 0;
      for (Index p = 0; p < M; p += row_step)
        for (Index q = 0; q < N; ++q)
          worst = std::max(worst, std::abs(double(fast[p * N + q]) - reference[p * N + q]));
      INFO("n ", n, " path ", path, " worst ", worst, " of ", largest);
      CHECK(worst < (std::is_same_v<Real, float> ? 1e-5 : 1e-12) * largest);
    }
  }
}

TEST_CASE_TEMPLATE("spectral and dense coefficient gradients agree at sizes that take the blocked, threaded paths",
                   Real, double, float) {
  // T = 203 tokens (12 blocks of 16 and a remainder), 48 x 400, n = 400 (T·n > 65536: threaded
  // gather); the q and v slices of a fused Conv1D weight, as GPT-2 uses them. With W rebuilt
  // (not held), the spectral path takes dx as dy·w0 plus the adapters' terms from dy's DFTs; the
  // dense path builds W again. In float at the avx512 level the DFTs are LaneFft's.
  const Index T = 203, C = 48, N = 400, n = 400;
  Rng rng(5);
  auto entries = std::make_shared<const SpectralEntries>(uniform_entries(C, N, n, 777));
  auto x = randn<Real>({T, N}, rng), w0 = randn<Real>({N, 3 * C}, rng);
  auto cq = randn<Real>({n}, rng), cv = randn<Real>({n}, rng), dy = randn<Real>({T, 3 * C}, rng);
  std::vector<std::vector<double>> grads;
  for (CoeffGradPath path : {CoeffGradPath::dense, CoeffGradPath::spectral})
    for (WeightReuse reuse : {WeightReuse::hold, WeightReuse::rebuild}) {
      Tape<Real> tape;
      Var<Real> xv = Var<Real>::parameter(x), q = Var<Real>::parameter(cq),
                v = Var<Real>::parameter(cv);
      std::vector<SpectralBlock<Real>> blocks = {{q, entries, Real(7), 0}, {v, entries, Real(7), 2 * C}};
      auto y = fourierft_linear(tape, xv, Var<Real>(w0), Var<Real>(), blocks,
                                ops::WeightLayout::in_out, path, reuse);
      tape.backward(y, dy);
      std::vector<double> all;
      for (const Var<Real>* var : {&q, &v, &xv})
        for (Real g : var->grad().data()) all.push_back(g);
      grads.push_back(all);
    }
  double largest = 0;
  for (double g : grads[0]) largest = std::max(largest, std::abs(g));
  const double tolerance = std::is_same_v<Real, float> ? 1e-5 * largest : 1e-10;
  for (std::size_t k = 1; k < grads.size(); ++k)
    for (std::size_t i = 0; i < grads[0].size(); ++i)
      REQUIRE(std::abs(grads[k][i] - grads[0][i]) <= tolerance * (1 + std::abs(grads[0][i])));
}

TEST_CASE("fourierft_linear: adapters on row blocks of a fused weight (GPT-2's q and v slices)") {
  const Index C = 6, T = 4;
  Rng rng(9);
  auto eq = std::make_shared<const SpectralEntries>(uniform_entries(C, C, 8, 777));
  auto x = randn<double>({T, C}, rng), w0 = randn<double>({C, 3 * C}, rng);  // Conv1D (in, out)
  auto cq = randn<double>({8}, rng), cv = randn<double>({8}, rng);
  auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    std::vector<SpectralBlock<double>> blocks = {{in[1], eq, 4.0, 0}, {in[2], eq, 4.0, 2 * C}};
    return project(t, fourierft_linear(t, in[0], Var<double>(w0), Var<double>(), blocks,
                                       ops::WeightLayout::in_out));
  };
  GradcheckResult r = gradcheck(loss, {x, cq, cv});
  INFO(r.report());
  CHECK(r.ok);
  // The k block (columns C..2C) is untouched by the adapters.
  Tape<double> tape;
  std::vector<SpectralBlock<double>> blocks = {{Var<double>(cq), eq, 4.0, 0}, {Var<double>(cv), eq, 4.0, 2 * C}};
  auto y = fourierft_linear(tape, Var<double>(x), Var<double>(w0), Var<double>(), blocks,
                            ops::WeightLayout::in_out);
  auto y_base = ops::linear(tape, Var<double>(x), Var<double>(w0), Var<double>(), ops::WeightLayout::in_out);
  for (Index t = 0; t < T; ++t)
    for (Index j = C; j < 2 * C; ++j)
      CHECK(y.value()[t * 3 * C + j] == doctest::Approx(y_base.value()[t * 3 * C + j]).epsilon(1e-14));
}

TEST_CASE("fourierft_linear: adapters on overlapping rows add up (both layouts, both ΔW paths)") {
  // Rows 2..9 and 6..13 of a 16-row weight overlap in 6..9; one adapter's n takes the sparse
  // ΔW path, the other's (n = 64 of 8 x 8) the 2-D c2r path.
  const Index d_in = 8, d_out = 16, T = 5;
  auto sparse_entries = std::make_shared<const SpectralEntries>(uniform_entries(8, d_in, 3, 777));
  auto c2r_entries = std::make_shared<const SpectralEntries>(uniform_entries(8, d_in, 64, 778));
  REQUIRE(fourierft_delta_prefers_sparse(*sparse_entries));
  REQUIRE_FALSE(fourierft_delta_prefers_sparse(*c2r_entries));
  Rng rng(4);
  auto x = randn<double>({T, d_in}, rng), c1 = randn<double>({3}, rng), c2 = randn<double>({64}, rng);
  std::vector<double> d1(8 * d_in), d2(8 * d_in);
  fourierft_delta_forward<double>(d1, c1.data(), *sparse_entries, 2.0);
  fourierft_delta_forward<double>(d2, c2.data(), *c2r_entries, 3.0);
  for (auto layout : {ops::WeightLayout::out_in, ops::WeightLayout::in_out}) {
    const bool out_in = layout == ops::WeightLayout::out_in;
    auto w0 = randn<double>(out_in ? Shape{d_out, d_in} : Shape{d_in, d_out}, rng);
    Tape<double> tape;
    std::vector<SpectralBlock<double>> blocks = {{Var<double>(c1), sparse_entries, 2.0, 2},
                                                 {Var<double>(c2), c2r_entries, 3.0, 6}};
    auto y = fourierft_linear(tape, Var<double>(x), Var<double>(w0), Var<double>(), blocks, layout);
    for (Index t = 0; t < T; ++t)
      for (Index p = 0; p < d_out; ++p) {
        double ref = 0;
        for (Index q = 0; q < d_in; ++q) {
          double w = out_in ? w0[p * d_in + q] : w0[q * d_out + p];
          if (p >= 2 && p < 10) w += d1[(p - 2) * d_in + q];
          if (p >= 6 && p < 14) w += d2[(p - 6) * d_in + q];
          ref += x[t * d_in + q] * w;
        }
        CHECK(y.value()[t * d_out + p] == doctest::Approx(ref).epsilon(1e-12).scale(1.0));
      }
  }
}

TEST_CASE("fourierft_linear: a base weight that requires a gradient and bad shapes are errors") {
  Tape<float> tape;
  auto entries = std::make_shared<const SpectralEntries>(uniform_entries(4, 6, 3, 777));
  Var<float> x(Tensor<float>({2, 6})), c = Var<float>::parameter(Tensor<float>({3}));
  std::vector<SpectralBlock<float>> blocks = {{c, entries, 1.f, 0}};
  CHECK_THROWS_AS(fourierft_linear(tape, x, Var<float>::parameter(Tensor<float>({4, 6})),
                                   Var<float>(), blocks),
                  ValueError);
  CHECK_THROWS_WITH_AS(fourierft_linear(tape, x, Var<float>(Tensor<float>({3, 6})), Var<float>(), blocks),
                       "fourierft_linear: a spectral block of shape (4, 6) at output offset 0 does "
                       "not fit the weight (3, 6)",
                       ShapeError);
}

TEST_CASE("FourierFT on a frozen random linear layer fits a low-frequency target") {
  // Target: y = x·(W0 + ΔW*)ᵀ with ΔW* built from hidden coefficients on the same entries.
  const Index M = 16, N = 16, n = 24, T = 64;
  Rng rng(21);
  auto entries = std::make_shared<const SpectralEntries>(uniform_entries(M, N, n, 777));
  Var<float> w0(randn<float>({M, N}, rng)), x(randn<float>({T, N}, rng));
  auto hidden = randn<float>({n}, rng);
  Tape<float> tape;
  std::vector<SpectralBlock<float>> target_blocks = {{Var<float>(hidden), entries, 16.f, 0}};
  Tensor<float> target = fourierft_linear(tape, x, w0, Var<float>(), target_blocks).value();
  Var<float> c = Var<float>::parameter(Tensor<float>({n}));  // zeros: starts at the base model
  double first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    std::vector<SpectralBlock<float>> blocks = {{c, entries, 16.f, 0}};
    auto y = fourierft_linear(tape, x, w0, Var<float>(), blocks);
    auto diff = ops::sub(tape, y, Var<float>(target));
    auto loss = ops::mean(tape, ops::mul(tape, diff, diff));
    tape.backward(loss);
    if (step == 0) first = loss.item();
    last = loss.item();
    for (Index l = 0; l < n; ++l) c.value()[l] -= 2.0f * c.grad()[l];
    c.zero_grad();
    tape.clear();
  }
  CHECK(first > 0.1);
  CHECK(last < 1e-3 * first);
}

TEST_CASE_TEMPLATE("fourierft_beside equals x·ΔWᵀ with the dense ΔW (odd, even, edge entries, fused)",
                   Real, float, double) {
  // Square and non-square, odd and even sizes; entries on row/column 0, the Nyquist row and
  // column, the last row and column; T = 5 (one partial block of 16 tokens) and T = 203 at
  // 48 x 400 (12 whole blocks and a partial one, split between threads: T·N > 65536).
  const double tol = std::is_same_v<Real, float> ? 2e-5 : 1e-12;
  for (auto [M, N, n, T] : {std::tuple<Index, Index, Index, Index>{8, 12, 10, 5}, {7, 5, 10, 5},
                            {9, 9, 81, 5}, {6, 4, 24, 5}, {1, 7, 3, 5}, {5, 1, 2, 5},
                            {12, 8, 30, 5}, {48, 400, 400, 203}}) {
    const auto e = std::make_shared<const SpectralEntries>(edge_entries(M, N, n));
    Rng rng(M * 1000 + N);
    auto x = randn<double>({T, N}, rng), c = randn<double>({e->n()}, rng);
    auto base = randn<double>({T, M}, rng);
    const auto reference = dense_beside(std::vector<double>(x.data().begin(), x.data().end()), T, N,
                                        M, {{e.get(), std::vector<double>(c.data().begin(), c.data().end()), 2.5, 0}});
    auto cast = [](const Tensor<double>& t) {
      Tensor<Real> r(t.shape());
      for (Index i = 0; i < t.numel(); ++i) r[i] = static_cast<Real>(t[i]);
      return r;
    };
    Tape<Real> tape;
    std::vector<SpectralBlock<Real>> blocks = {{Var<Real>(cast(c)), e, Real(2.5), 0}};
    Var<Real> y = fourierft_beside(tape, Var<Real>(cast(x)), blocks, M);
    Var<Real> with_base = fourierft_add_beside(tape, Var<Real>(cast(base)), Var<Real>(cast(x)), blocks);
    REQUIRE(y.shape() == Shape{T, M});
    double largest = 0, worst = 0, worst_base = 0;
    for (Index i = 0; i < T * M; ++i) {
      largest = std::max(largest, std::abs(reference[i]));
      worst = std::max(worst, std::abs(double(y.value()[i]) - reference[i]));
      worst_base = std::max(worst_base, std::abs(double(with_base.value()[i]) - base[i] - reference[i]));
    }
    INFO("shape (", M, ", ", N, ") n=", e->n(), " T=", T, ": worst ", worst, " of ", largest);
    CHECK(largest > 0);
    CHECK(worst <= tol * largest);
    CHECK(worst_base <= tol * (largest + 4));
  }
}

TEST_CASE("fourierft_beside: the q and v slices of a fused layer, the k slice untouched") {
  const Index C = 6, N = 10, T = 7;
  Rng rng(8);
  auto eq = std::make_shared<const SpectralEntries>(uniform_entries(C, N, 9, 777));
  auto ev = std::make_shared<const SpectralEntries>(edge_entries(C, N, 5));
  auto x = randn<double>({T, N}, rng), cq = randn<double>({9}, rng), cv = randn<double>({ev->n()}, rng);
  Tape<double> tape;
  std::vector<SpectralBlock<double>> blocks = {{Var<double>(cq), eq, 3.0, 0},
                                               {Var<double>(cv), ev, 5.0, 2 * C}};
  Var<double> y = fourierft_beside(tape, Var<double>(x), blocks, 3 * C);
  const auto reference = dense_beside(
      std::vector<double>(x.data().begin(), x.data().end()), T, N, 3 * C,
      {{eq.get(), std::vector<double>(cq.data().begin(), cq.data().end()), 3.0, 0},
       {ev.get(), std::vector<double>(cv.data().begin(), cv.data().end()), 5.0, 2 * C}});
  for (Index t = 0; t < T; ++t)
    for (Index j = 0; j < 3 * C; ++j) {
      CHECK(y.value()[t * 3 * C + j] == doctest::Approx(reference[t * 3 * C + j]).epsilon(1e-12).scale(1.0));
      if (j >= C && j < 2 * C) CHECK(y.value()[t * 3 * C + j] == 0.0);
    }
  CHECK_THROWS_WITH_AS(fourierft_beside(tape, Var<double>(x), blocks, 2 * C),
                       "fourierft_beside: a spectral block of shape (6, 10) with coeffs (12) at "
                       "output offset 12 does not fit x (7, 10) and 12 outputs",
                       ShapeError);
}

TEST_CASE("fourierft_beside: gradients for x, coefficients and base match central differences") {
  for (auto [M, N, n] : {std::tuple<Index, Index, Index>{8, 12, 10}, {7, 5, 10}, {6, 4, 24}, {5, 9, 1}}) {
    auto e = std::make_shared<const SpectralEntries>(edge_entries(M, N, n));
    auto e2 = std::make_shared<const SpectralEntries>(uniform_entries(M, N, std::min<Index>(n, M * N), 778));
    Rng rng(M * 100 + N);
    // Two adapters on rows [0, M) and [M + 1, 2M + 1) of a (2M + 2)-output layer; x: (2, 3, N).
    auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
      std::vector<SpectralBlock<double>> blocks = {{in[1], e, 2.5, 0}, {in[2], e2, 1.5, M + 1}};
      // add_beside takes over its base's storage: give it a fresh op output, not the input.
      return project(t, fourierft_add_beside(t, ops::scale(t, in[3], 1.0), in[0], blocks));
    };
    GradcheckResult r = gradcheck(loss, {randn<double>({2, 3, N}, rng), randn<double>({e->n()}, rng),
                                         randn<double>({e2->n()}, rng), randn<double>({2, 3, 2 * M + 2}, rng)});
    INFO("shape (", M, ", ", N, ") n=", n, ": ", r.report());
    CHECK(r.ok);
  }
}

TEST_CASE("fourierft_beside and fourierft_linear give the same gradients at threaded sizes") {
  // T = 203 tokens, the q and v slices (48 x 400, n = 400) of a fused Conv1D layer: the beside
  // path's backward (threaded blocks, dx scattered from both slices) against the merged GEMM's.
  const Index T = 203, C = 48, N = 400, n = 400;
  Rng rng(6);
  auto entries = std::make_shared<const SpectralEntries>(uniform_entries(C, N, n, 777));
  auto x = randn<double>({T, N}, rng), w0 = randn<double>({N, 3 * C}, rng), b = randn<double>({3 * C}, rng);
  auto cq = randn<double>({n}, rng), cv = randn<double>({n}, rng), dy = randn<double>({T, 3 * C}, rng);
  std::vector<std::vector<double>> results;
  for (bool beside : {false, true}) {
    Tape<double> tape;
    Var<double> xv = Var<double>::parameter(x), q = Var<double>::parameter(cq),
                v = Var<double>::parameter(cv), bias = Var<double>::parameter(b);
    std::vector<SpectralBlock<double>> blocks = {{q, entries, 7.0, 0}, {v, entries, 7.0, 2 * C}};
    auto y = beside ? fourierft_add_beside(tape, ops::linear(tape, xv, Var<double>(w0), bias, ops::WeightLayout::in_out), xv, blocks)
                    : fourierft_linear(tape, xv, Var<double>(w0), bias, blocks, ops::WeightLayout::in_out);
    tape.backward(y, dy);
    std::vector<double> all(y.data().begin(), y.data().end());
    for (const Var<double>* var : {&q, &v, &xv, &bias})
      for (double g : var->grad().data()) all.push_back(g);
    results.push_back(all);
  }
  for (std::size_t i = 0; i < results[0].size(); ++i)
    REQUIRE(results[1][i] == doctest::Approx(results[0][i]).epsilon(1e-10).scale(1.0));
}

TEST_CASE("FourierFTAdapter: the merged and the beside path give the same outputs and gradients") {
  // A Linear (bias training) and a Conv1D fused (q | k | v) layer with q and v slices.
  for (auto layout : {ops::WeightLayout::out_in, ops::WeightLayout::in_out}) {
    const bool fused = layout == ops::WeightLayout::in_out;
    const Index d_in = 10, d_out = fused ? 18 : 7, n = 12;
    Rng rng(fused ? 2 : 1);
    nn::Linear<double> linear(d_in, d_out, rng, true, layout);
    linear.weight.set_requires_grad(false);
    const Index rows = fused ? d_out / 3 : d_out;
    auto entries = std::make_shared<const SpectralEntries>(uniform_entries(rows, d_in, n, 777));
    std::vector<std::tuple<std::string, std::shared_ptr<const SpectralEntries>, Index>> blocks;
    if (fused) {
      blocks = {{"fourierft_spectrum_q", entries, 0}, {"fourierft_spectrum_v", entries, 2 * rows}};
    } else {
      blocks = {{"fourierft_spectrum", entries, 0}};
    }
    Rng init(3);
    auto adapter = std::make_shared<FourierFTAdapter<double>>(40.0, blocks, init, false);
    linear.attach("", adapter);
    auto x = randn<double>({2, 5, d_in}, rng), dy = randn<double>({2, 5, d_out}, rng);
    std::vector<std::vector<double>> results;
    for (FourierFTPath path : {FourierFTPath::merged, FourierFTPath::beside}) {
      adapter->set_path(path);
      Var<double> xv = Var<double>::parameter(x);
      Tape<double> tape;
      Var<double> y = linear.forward(tape, xv);
      CHECK(tape.op_names().back() == (path == FourierFTPath::beside ? "fourierft_beside" : "fourierft_linear"));
      tape.backward(y, dy);
      std::vector<double> all(y.data().begin(), y.data().end());
      for (double g : xv.grad().data()) all.push_back(g);
      for (double g : linear.bias.grad().data()) all.push_back(g);
      for (const auto& b : adapter->blocks())
        for (double g : b.spectrum.grad().data()) all.push_back(g);
      linear.zero_grad();
      results.push_back(all);
    }
    CHECK(set_fourierft_path<double>(linear, FourierFTPath::automatic) == 1);
    // automatic on an FP32 base: beside while 2·T <= the adapted rows (7, or 6 + 6 fused).
    for (Index T : {Index(1), Index(3), Index(4), Index(10)}) {
      Tape<double> tape;
      linear.forward(tape, Var<double>::parameter(randn<double>({T, d_in}, rng)));
      const bool beside = 2 * T <= (fused ? 12 : 7);
      CHECK(tape.op_names().back() == (beside ? "fourierft_beside" : "fourierft_linear"));
    }
    for (std::size_t i = 0; i < results[0].size(); ++i)
      REQUIRE(results[1][i] == doctest::Approx(results[0][i]).epsilon(1e-12).scale(1.0));
  }
}
