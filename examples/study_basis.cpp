// study_basis — basis expressiveness (the paper's §"Basis expressiveness", on synthetic targets):
// how well can n numbers describe a d x d weight change, when the n numbers are
//   fourier_uniform   coefficients of n cosines at PEFT's uniform random entries (FourierFT's default)
//   fourier_lowpass   the same at eq. 5 entries with f_c = 0, W = d/16 (low frequencies first)
//   random_gaussian   coefficients of n fixed random Gaussian matrices (the paper's "random basis")
//   rank_r            a rank-r factorisation B·A with r = floor(n / 2d), i.e. LoRA's budget 2·d·r;
//                     the truncated SVD is the best rank-r fit (Eckart–Young), so this is LoRA's optimum
// For each, the best fit is a least-squares problem solved exactly:
//   fourier_*: the cosines are orthogonal, so the fit is a projection read off one 2-D DFT of the
//              target (grouping entries that are each other's mirror (−u, −v): same cosine);
//   random_gaussian: normal equations (G = AᵀA, Cholesky), A = the n matrices as columns;
//   rank_r: the singular values past r.
// As a check, one Fourier fit is also found by gradient descent through the library's autograd op
// peft::fourierft_delta (plain SGD on mean((ΔW(c) − T)²)), and must reach the closed form.
//
// Targets (d = 64, each scaled to ||T||_F = 1):
//   low_rank_noise  rank 4 (Gaussian factors) + 30% white noise — the picture behind LoRA
//   smooth          six rotated, elongated Gaussian bumps (not periodic, not separable)
//   white_noise     i.i.d. Gaussian entries — no structure for any basis to exploit
//
// Run:   ./build/examples/study_basis [--out out/study_basis] [--d 64] [--W d/16] [--seed 0]
//                                     [--threads 2] [--small]
//        --small: d = 24 (what CTest runs).
// Writes (into --out):
//   basis_error.png   relative error ||fit − T||_F / ||T||_F against n, one panel per target
//   targets.png       the three targets as heatmaps
//   basis_error.csv   target, method, n, relative error (every point of the figure)
// Expect (defaults): every cosine is even, so a FourierFT ΔW is point-symmetric (ΔW[p,q] =
// ΔW[−p,−q]) and even all d² cosines fit only a target's symmetric part: relative error ~0.70 on
// these generic targets (the grey line). Short of that floor: on white noise the Fourier entries and
// the random basis both capture about n/d² of the energy, a rank-r fit slightly more (0.61 at
// n = 2048 vs 0.72 random, 0.78 uniform Fourier: mirrored entry pairs waste coefficients). On the
// low-rank target rank_r wins by far once r >= 1 (n >= 2d). On the smooth target the low-pass
// entries reach the symmetric floor with ~100 numbers (0.76 at n = 128, 0.90 at n = 16, where no
// rank-1 fit is affordable), but a rank-r fit goes far below it (0.02 at r = 8): smooth matrices
// are nearly low-rank. Uniform entries are no better than random matrices for fitting. This is a
// fitting experiment: the paper's basis comparison trains adapters on real tasks, a different
// question. Under 10 s.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <complex>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numbers>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "fourierft/core/parallel.hpp"
#include "fourierft/ops/reduce.hpp"
#include "fourierft/ops/softmax.hpp"
#include "fourierft/ops/spectral.hpp"
#include "fourierft/optim/sgd.hpp"
#include "fourierft/peft/entries.hpp"
#include "fourierft/peft/fourierft_op.hpp"
#include "fourierft/util/args.hpp"
#include "fourierft/util/atomic_file.hpp"
#include "plot.hpp"

using namespace fourierft;
namespace plot = fourierft::examples::plot;
using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace {
// ---------------------------------------------------------------------------
// The targets.
Matrix gaussian_matrix(Index rows, Index cols, Rng& rng) {
  Matrix m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = rng.normal();
  return m;
}

Matrix low_rank_noise(Index d, Rng& rng) {
  const Matrix low = gaussian_matrix(d, 4, rng) * gaussian_matrix(4, d, rng);
  const Matrix noise = gaussian_matrix(d, d, rng);
  const Matrix t = low / low.norm() + 0.3 * noise / noise.norm();
  return t / t.norm();
}

Matrix smooth(Index d, Rng& rng) {
  Matrix t = Matrix::Zero(d, d);
  for (int bump = 0; bump < 6; ++bump) {
    const double cp = rng.uniform() * double(d), cq = rng.uniform() * double(d);
    const double major = (0.125 + 0.125 * rng.uniform()) * double(d), minor = major / 3;
    const double angle = rng.uniform() * std::numbers::pi, sign = bump % 2 ? -1.0 : 1.0;
    for (Index p = 0; p < d; ++p)
      for (Index q = 0; q < d; ++q) {
        const double dp = double(p) - cp, dq = double(q) - cq;
        const double a = std::cos(angle) * dp + std::sin(angle) * dq;   // along the bump
        const double b = -std::sin(angle) * dp + std::cos(angle) * dq;  // across it
        t(p, q) += sign * std::exp(-0.5 * (a * a / (major * major) + b * b / (minor * minor)));
      }
  }
  return t / t.norm();
}

Matrix white_noise(Index d, Rng& rng) {
  const Matrix t = gaussian_matrix(d, d, rng);
  return t / t.norm();
}

// ---------------------------------------------------------------------------
// The fits.
// Best fit in span{cos(2π(u_l p/M + v_l q/N))}, an orthogonal projection (see study_delta.cpp):
//   <T, φ_uv> = Re(DFT2(T))[u, v],   ||φ_uv||² = M·N/2 (M·N if (u, v) is its own mirror).
// Returns the coefficients c (scale = 1) so that fourierft_delta_forward(c) is the fit; an entry
// whose mirror came earlier gets c = 0 (its cosine is already fitted).
std::vector<double> fourier_least_squares(const Matrix& T, const peft::SpectralEntries& e) {
  const Index M = e.d_out, N = e.d_in, H = N / 2 + 1;
  std::vector<std::complex<double>> half(static_cast<std::size_t>(M * H));
  ops::spectral::forward_dft2_r2c<double>(std::span<const double>(T.data(), T.size()), half, M, N);
  std::vector<double> c(static_cast<std::size_t>(e.n()), 0.0);
  std::map<Index, Index> seen;
  for (Index l = 0; l < e.n(); ++l) {
    const Index u = e.rows[l], v = e.cols[l], mu = (M - u) % M, mv = (N - v) % N;
    if (!seen.emplace(std::min(u * N + v, mu * N + mv), l).second) continue;
    const double inner = (v < H ? half[u * H + v] : half[mu * H + mv]).real();
    const double norm2 = (u == mu && v == mv) ? double(M * N) : double(M * N) / 2;
    c[l] = inner / norm2 * double(M * N);
  }
  return c;
}

double fourier_error(const Matrix& T, const peft::SpectralEntries& e) {
  const std::vector<double> c = fourier_least_squares(T, e);
  Matrix fit(T.rows(), T.cols());
  peft::fourierft_delta_forward<double>(std::span<double>(fit.data(), fit.size()), c, e, 1.0);
  return (fit - T).norm() / T.norm();
}

// Best fit in the span of the first n columns of A (vec of the random matrices), by the normal
// equations G c = Aᵀt with G = AᵀA computed once for the largest n (a leading block serves each n).
double random_basis_error(const Matrix& gram, const Eigen::VectorXd& At, const Matrix& T, Index n) {
  const Eigen::LLT<Matrix> llt(gram.topLeftCorner(n, n));
  check(llt.info() == Eigen::Success, "study_basis: the random basis Gram matrix is singular at n = ", n);
  const Eigen::VectorXd c = llt.solve(At.head(n));
  // ||t − A c||² = ||t||² − 2 cᵀAᵀt + cᵀ G c = ||t||² − cᵀAᵀt at the optimum.
  const double residual2 = T.squaredNorm() - c.dot(At.head(n));
  return std::sqrt(std::max(residual2, 0.0)) / T.norm();
}

// Every cosine is even: cos(2π(u·(−p)/M + v·(−q)/N)) = cos(2π(u·p/M + v·q/N)), so any FourierFT
// ΔW is point-symmetric, ΔW[p, q] = ΔW[−p mod M, −q mod N]. Even all M·N cosines together fit only
// the symmetric part (T + R T)/2 of a target (R: the point reflection); this is that error.
double symmetric_part_error(const Matrix& T) {
  const Index M = T.rows(), N = T.cols();
  Matrix reflected(M, N);
  for (Index p = 0; p < M; ++p)
    for (Index q = 0; q < N; ++q) reflected(p, q) = T((M - p) % M, (N - q) % N);
  return (T - (T + reflected) / 2).norm() / T.norm();
}

double rank_error(const Eigen::VectorXd& singular_values, Index r) {
  const double total = singular_values.squaredNorm();
  const double kept = singular_values.head(std::min<Index>(r, singular_values.size())).squaredNorm();
  return std::sqrt(std::max(total - kept, 0.0) / total);
}

// The same Fourier fit by gradient descent through the library's autograd op, minimising
// L(c) = mean((ΔW(c) − T)²) with ΔW(c) = scale/(M·N) · Σ_l c_l φ_l. Its Hessian is diagonal (the
// cosines are orthogonal): ∂²L/∂c_l² = (2/(M·N)) · (scale/(M·N))² · ||φ_l||² = 1 with scale = M·N
// (2 for a self-mirrored entry), so plain gradient descent with lr 0.5 halves the error of every
// coefficient each step. Returns the relative error reached.
double fourier_fit_by_descent(const Matrix& T, std::shared_ptr<const peft::SpectralEntries> e,
                              int steps) {
  const Index M = e->d_out, N = e->d_in;
  const double scale = double(M * N);
  Var<double> c = Var<double>::parameter(Tensor<double>({e->n()}));
  const Tensor<double> target = Tensor<double>::from_data({M, N}, std::span<const double>(T.data(), T.size()));
  optim::SGD<double> opt({c}, {.lr = 0.5});
  Tape<double> tape;
  for (int step = 0; step < steps; ++step) {
    Var<double> loss = ops::mse_loss(tape, peft::fourierft_delta(tape, c, e, scale), target);
    tape.backward(loss);
    opt.step();
    opt.zero_grad();
    tape.clear();
  }
  Matrix fit(M, N);
  peft::fourierft_delta_forward<double>(std::span<double>(fit.data(), fit.size()), c.data(), *e, scale);
  return (fit - T).norm() / T.norm();
}
}  // namespace

int main(int argc, char** argv) {
  try {
    // ---- options ---------------------------------------------------------------------------
    util::Args args(argc, argv, {"--small"});
    const bool small = args.has("--small");
    const Index d = args.integer("--d", small ? 24 : 64);
    const std::uint64_t seed = static_cast<std::uint64_t>(args.integer("--seed", 0));
    const std::filesystem::path out = args.str("--out", "out/study_basis");
    set_num_threads(static_cast<int>(args.integer("--threads", 2)));
    // Band width of the low-pass entries. The paper's W = 200 on a 768 x 768 spectrum would be
    // 200·d/768 here (16.7 at d = 64), which covers most of a small spectrum and favours low
    // frequencies only mildly; d/16 keeps the entries near the zero frequency.
    const double W = args.real("--W", double(d) / 16.0);
    args.reject_unknown();
    check(d >= 8, "--d must be at least 8, got ", d);
    std::filesystem::create_directories(out);
    const auto start = std::chrono::steady_clock::now();

    // Budgets n: 8 up to d²/2, two per octave.
    std::vector<Index> budgets;
    for (double x = 8; x <= double(d * d) / 2 + 0.5; x *= std::sqrt(2.0)) budgets.push_back(std::llround(x));
    const Index n_max = budgets.back();
    std::printf("d = %lld, n from %lld to %lld, low-pass W = %.1f\n", (long long)d,
                (long long)budgets.front(), (long long)n_max, W);

    // ---- the targets and the fixed bases ----------------------------------------------------
    Rng rng(seed);
    const std::vector<std::pair<std::string, Matrix>> targets = {
        {"low_rank_noise", low_rank_noise(d, rng)}, {"smooth", smooth(d, rng)},
        {"white_noise", white_noise(d, rng)}};
    // Entries for the largest n; both samplers are prefix-nested (randperm; decreasing keys), so
    // the first n of them are exactly the entries drawn for budget n.
    const peft::SpectralEntries uniform_all = peft::uniform_entries(d, d, n_max, 777);
    const peft::SpectralEntries lowpass_all = peft::frequency_biased_entries(d, d, n_max, 0.0, W, 777);
    auto prefix = [](const peft::SpectralEntries& e, Index n) {
      return peft::SpectralEntries{e.d_out, e.d_in, {e.rows.begin(), e.rows.begin() + n},
                                   {e.cols.begin(), e.cols.begin() + n}};
    };
    Rng basis_rng(seed + 1);
    const Matrix A = gaussian_matrix(d * d, n_max, basis_rng);  // column l = vec(random matrix l)
    const Matrix gram = A.transpose() * A;

    // ---- fit every target with every basis at every budget -----------------------------------
    struct Point {
      std::string target, method;
      Index n;
      double error;
    };
    std::vector<Point> points;
    const std::vector<std::string> methods = {"fourier_uniform", "fourier_lowpass", "random_gaussian", "rank_r"};
    std::map<std::string, double> cosine_bound;  // per target: the best any set of cosines can do
    for (const auto& [name, T] : targets) {
      cosine_bound[name] = symmetric_part_error(T);
      const Eigen::VectorXd At = A.transpose() * Eigen::Map<const Eigen::VectorXd>(T.data(), T.size());
      const Eigen::VectorXd sv = Eigen::BDCSVD<Matrix>(T).singularValues();
      for (Index n : budgets) {
        points.push_back({name, "fourier_uniform", n, fourier_error(T, prefix(uniform_all, n))});
        points.push_back({name, "fourier_lowpass", n, fourier_error(T, prefix(lowpass_all, n))});
        points.push_back({name, "random_gaussian", n, random_basis_error(gram, At, T, n)});
        points.push_back({name, "rank_r", n, rank_error(sv, n / (2 * d))});
      }
    }

    // ---- the check: gradient descent through peft::fourierft_delta reaches the closed form ----
    const Index n_check = budgets[budgets.size() / 2];
    const auto check_entries = std::make_shared<const peft::SpectralEntries>(prefix(lowpass_all, n_check));
    const double closed = fourier_error(targets[1].second, *check_entries);
    const double descent = fourier_fit_by_descent(targets[1].second, check_entries, 60);
    std::printf("check (smooth, fourier_lowpass, n = %lld): closed form %.9f, 60 gradient steps "
                "through fourierft_delta %.9f\n", (long long)n_check, closed, descent);
    check(std::abs(descent - closed) < 1e-9,
          "study_basis: gradient descent reached ", descent, " but the closed form is ", closed);

    // ---- print a few budgets, write the CSV and the figures ---------------------------------
    std::printf("\n%-15s %-16s", "target", "method");
    const std::vector<Index> shown = {budgets[2], budgets[budgets.size() / 2], budgets[budgets.size() - 3], n_max};
    for (Index n : shown) std::printf("   n=%-6lld", (long long)n);
    std::printf("\n");
    for (const auto& [name, T] : targets)
      for (const std::string& method : methods) {
        std::printf("%-15s %-16s", name.c_str(), method.c_str());
        for (Index n : shown)
          for (const Point& p : points)
            if (p.target == name && p.method == method && p.n == n) std::printf("   %-8.4f", p.error);
        std::printf("\n");
      }
    for (const auto& [name, T] : targets)
      std::printf("%-15s all d² cosines (the symmetric part): %.4f\n", name.c_str(), cosine_bound[name]);
    util::write_file_atomically(out / "basis_error.csv", [&](std::ostream& csv) {
      csv << "target,method,n,rank,rel_error\n";
      for (const Point& p : points)
        csv << p.target << "," << p.method << "," << p.n << "," << (p.method == "rank_r" ? p.n / (2 * d) : 0)
            << "," << p.error << "\n";
      for (const auto& [name, bound] : cosine_bound)  // n = d²: every cosine
        csv << name << ",all_cosines," << d * d << ",0," << bound << "\n";
    });

    std::vector<plot::Image> charts, maps;
    const std::map<std::string, std::string> labels = {
        {"fourier_uniform", "Fourier, uniform entries (PEFT)"},
        {"fourier_lowpass", "Fourier, eq. 5 low-pass (f_c = 0)"},
        {"random_gaussian", "random Gaussian basis"},
        {"rank_r", "rank r = n / 2d (truncated SVD)"}};
    const std::vector<plot::Marker> markers = {plot::Marker::circle, plot::Marker::triangle,
                                               plot::Marker::square, plot::Marker::none};
    for (const auto& [name, T] : targets) {
      std::vector<plot::Series> series;
      for (std::size_t k = 0; k < methods.size(); ++k) {
        plot::Series s{.label = labels.at(methods[k]), .marker = markers[k], .dashed = methods[k] == "rank_r"};
        for (const Point& p : points)
          if (p.target == name && p.method == methods[k]) s.x.push_back(double(p.n)), s.y.push_back(p.error);
        series.push_back(std::move(s));
      }
      series.push_back({.label = "all d^2 cosines (symmetric part)", .x = {1.0, double(d * d)},
                        .y = {cosine_bound[name], cosine_bound[name]}, .color = plot::gray,
                        .marker = plot::Marker::none, .dashed = true});
      charts.push_back(plot::line_chart(series, {.title = "target: " + name + " (" + std::to_string(d) + " x " +
                                                          std::to_string(d) + ")",
                                                 .x_label = "n (numbers trained)", .y_label = "relative error",
                                                 .log_x = true, .x_min = 6.0, .x_max = double(n_max) * 1.3,
                                                 .y_min = 0.0, .y_max = 1.05,
                                                 .width = 460, .height = 360,
                                                 .legend = plot::Legend::bottom_left, .marker_size = 5}));
      maps.push_back(plot::heatmap(std::span<const double>(T.data(), T.size()), d, d,
                                   {.title = name, .colormap = plot::Colormap::diverging, .side = 192}));
    }
    plot::write_png(out / "basis_error.png", plot::tile(charts, 3));
    plot::write_png(out / "targets.png", plot::tile(maps, 3));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("wrote basis_error.png, targets.png, basis_error.csv to %s (%.1f s)\n", out.c_str(), seconds);
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "study_basis: %s\n", e.what());
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    std::fprintf(stderr, "study_basis: %s\n", e.what());
    return 1;
  }
}
