// study_delta — what a trained FourierFT update looks like next to a trained LoRA update of the
// same parameter budget: the weights, their 2-D spectra and their singular values.
//
// Setup. One frozen d x d linear layer W0 (d = 128) and a random "true" update ΔW* with a decaying
// spectrum (singular values s_k = 1/k, random singular vectors: full rank, most energy in a few
// directions — the "low intrinsic rank" picture behind LoRA). Inputs x ~ N(0, I); targets
// y = x·(W0 + ΔW*)ᵀ + b.
// Two copies of the layer are adapted with the library's own PEFT code and trained with AdamW on
// the same batches:
//   FourierFT  n = 512 coefficients   (peft::apply_fourierft, PEFT's uniform entries, seed 777)
//   LoRA       r = 2:  2·d·r = 512     (peft::apply_lora)
// With isotropic x the expected loss is ||ΔW − ΔW*||_F² / d + const, so each method converges to
// its least-squares optimum, which is known in closed form and printed beside it:
//   FourierFT: the projection of ΔW* on the n fixed cosines (one 2-D DFT of ΔW*: the same transform
//              the backward pass uses); LoRA: the truncated SVD of rank r (Eckart–Young).
//
// Run:   ./build/examples/study_delta [--out out/study_delta] [--d 128] [--n 512] [--r 2]
//                                     [--steps 200] [--batch 256] [--seed 0] [--threads 1] [--small]
//        --small: d = 32, n = 64, r = 1, 100 steps (what CTest runs).
// Writes (into --out):
//   delta_weights.png    ΔW*, FourierFT's ΔW and LoRA's ΔW as heatmaps (each on its own scale)
//   delta_spectra.png    log10 |DFT2(ΔW)|, fftshift-ed (zero frequency at the centre)
//   singular_values.png  the singular values of the three, log scale
//   training.png         relative error ||ΔW − ΔW*||_F / ||ΔW*||_F against the step
//   singular_values.csv  k, s_k of ΔW*, FourierFT, LoRA, and of both closed-form optima
//   training.csv         step, both losses and relative errors
// Expect (defaults): FourierFT's ΔW is full rank (all 128 singular values above 1e-4·s_1) with a
// spectrum that is zero except at its n entries and their mirror images, and it is point-symmetric
// (ΔW[p,q] = ΔW[−p,−q]); LoRA's ΔW has exactly r non-zero singular values (the rest are float
// rounding, ~1e-8 of the first) and a dense spectrum. Each reaches its closed-form optimum to
// 1e-4 (FourierFT 0.9860 vs 0.9859, LoRA 0.4864 vs 0.4863). On this target LoRA is far closer:
// n real coefficients span n cosines, which hold about n/d² of a generic matrix's energy (3%
// here), while the top r singular directions of this ΔW* hold 76%; even all d² cosines would
// leave 0.705 (the antisymmetric half). study_basis compares the bases on more targets. About 2 s.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <complex>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "fourierft/core/parallel.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/ops/softmax.hpp"
#include "fourierft/ops/spectral.hpp"
#include "fourierft/optim/adamw.hpp"
#include "fourierft/peft/fourierft.hpp"
#include "fourierft/peft/lora.hpp"
#include "fourierft/util/args.hpp"
#include "fourierft/util/atomic_file.hpp"
#include "plot.hpp"

using namespace fourierft;
namespace plot = fourierft::examples::plot;
using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// ---------------------------------------------------------------------------
// The model: one linear layer named like a checkpoint's ("proj.weight"), so apply_fourierft and
// apply_lora find it by PEFT's target_modules rule.
struct OneLayer : nn::Module<float> {
  nn::Linear<float> proj;
  OneLayer(Index d, Rng& rng) : proj(d, d, rng) { register_module("proj", proj); }
  Var<float> forward(Tape<float>& tape, const Var<float>& x) const { return proj.forward(tape, x); }
};

namespace {
Matrix to_matrix(const Tensor<float>& t) { return as_matrix(t).cast<double>(); }

double relative_error(const Matrix& a, const Matrix& target) {
  return (a - target).norm() / target.norm();
}

// |DFT2(m)| as log10, fftshift-ed, from FFTW's half spectrum and Hermitian symmetry (m is real:
// X[−u, −v] = conj X[u, v], so |X| at the missing half is |X| at the mirrored position).
std::vector<double> log_spectrum(const Matrix& m) {
  const Index M = m.rows(), N = m.cols(), H = N / 2 + 1;
  std::vector<std::complex<double>> half(static_cast<std::size_t>(M * H));
  ops::spectral::forward_dft2_r2c<double>(std::span<const double>(m.data(), m.size()), half, M, N);
  std::vector<double> mag(static_cast<std::size_t>(M * N));
  for (Index u = 0; u < M; ++u)
    for (Index v = 0; v < N; ++v) {
      const std::complex<double> z = v < H ? half[u * H + v] : half[((M - u) % M) * H + (N - v)];
      mag[u * N + v] = std::log10(std::abs(z) + 1e-300);
    }
  return plot::fftshift(mag, M, N);
}

// The best ΔW in span{cos(2π(u_l p/M + v_l q/N))}: an orthogonal projection. Two entries that are
// each other's mirror (−u, −v) give the same cosine, so entries are grouped by cosine first.
//   <T, φ_uv> = Σ_pq T[p,q] cos(2π(up/M + vq/N)) = Re(DFT2(T))[u, v]
//   ||φ_uv||² = M·N/2, or M·N when (u, v) is its own mirror (then φ is ±1 everywhere)
// The fit is built with the library's forward op: one coefficient per group, c = a·M·N/scale.
Matrix fourier_projection(const Matrix& T, const peft::SpectralEntries& e) {
  const Index M = e.d_out, N = e.d_in, H = N / 2 + 1;
  std::vector<std::complex<double>> half(static_cast<std::size_t>(M * H));
  ops::spectral::forward_dft2_r2c<double>(std::span<const double>(T.data(), T.size()), half, M, N);
  std::vector<double> c(static_cast<std::size_t>(e.n()), 0.0);
  std::map<Index, Index> seen;  // canonical flat index of the cosine -> first entry using it
  for (Index l = 0; l < e.n(); ++l) {
    const Index u = e.rows[l], v = e.cols[l], mu = (M - u) % M, mv = (N - v) % N;
    if (!seen.emplace(std::min(u * N + v, mu * N + mv), l).second) continue;  // already fitted
    const double inner = (v < H ? half[u * H + v] : half[mu * H + mv]).real();
    const double norm2 = (u == mu && v == mv) ? double(M * N) : double(M * N) / 2;
    c[l] = inner / norm2 * double(M * N);  // with scale = 1
  }
  Matrix fit(M, N);
  peft::fourierft_delta_forward<double>(std::span<double>(fit.data(), fit.size()), c, e, 1.0);
  return fit;
}

// Best rank-r approximation (Eckart–Young): the r leading terms of the SVD.
Matrix truncated_svd(const Matrix& T, Index r) {
  Eigen::BDCSVD<Matrix> svd(T, Eigen::ComputeThinU | Eigen::ComputeThinV);
  return svd.matrixU().leftCols(r) * svd.singularValues().head(r).asDiagonal() *
         svd.matrixV().leftCols(r).transpose();
}

Eigen::VectorXd singular_values(const Matrix& m) { return Eigen::BDCSVD<Matrix>(m).singularValues(); }
}  // namespace

int main(int argc, char** argv) {
  try {
    // ---- options ---------------------------------------------------------------------------
    util::Args args(argc, argv, {"--small"});
    const bool small = args.has("--small");
    const Index d = args.integer("--d", small ? 32 : 128);
    const Index n = args.integer("--n", small ? 64 : 512);
    const Index r = args.integer("--r", small ? 1 : 2);
    const int steps = static_cast<int>(args.integer("--steps", small ? 100 : 200));
    const Index batch = args.integer("--batch", 256);
    const std::uint64_t seed = static_cast<std::uint64_t>(args.integer("--seed", 0));
    const std::filesystem::path out = args.str("--out", "out/study_delta");
    // One thread by default: at d = 128 every GEMM and FFT is too small to gain from more.
    set_num_threads(static_cast<int>(args.integer("--threads", 1)));
    args.reject_unknown();
    check(d >= 4 && r >= 1 && r <= d && steps >= 1, "need d >= 4, 1 <= r <= d and steps >= 1");
    std::filesystem::create_directories(out);
    const auto start = std::chrono::steady_clock::now();

    // ---- the true update ΔW* = U·diag(1/k)·Vᵀ ------------------------------------------------
    Rng rng(seed);
    auto random_orthogonal = [&]() {
      Matrix g(d, d);
      for (Index i = 0; i < g.size(); ++i) g.data()[i] = rng.normal();
      return Matrix(Eigen::HouseholderQR<Matrix>(g).householderQ());
    };
    const Matrix U = random_orthogonal(), V = random_orthogonal();
    Eigen::VectorXd s(d);
    for (Index k = 0; k < d; ++k) s[k] = 1.0 / double(k + 1);
    const Matrix target = U * s.asDiagonal() * V.transpose();

    // ---- two copies of the same "pre-trained" layer, adapted two ways -------------------------
    Rng init(seed + 1);
    OneLayer fourier_model(d, init);
    Rng init_again(seed + 1);  // the same W0 and bias
    OneLayer lora_model(d, init_again);

    peft::FourierFTConfig fourier_config;
    fourier_config.n_frequency = n;
    fourier_config.scaling = 150;           // PEFT's default α
    fourier_config.init_weights = true;     // start at ΔW = 0, like LoRA (B = 0)
    fourier_config.target_modules = {{"proj"}, ""};
    peft::LoraConfig lora_config;
    lora_config.r = r;
    lora_config.lora_alpha = 2.0 * double(r);  // s = lora_alpha / r = 2
    lora_config.target_modules = {{"proj"}, ""};
    Rng adapter_rng(seed + 2);
    const auto fourier_applied = peft::apply_fourierft(fourier_model, fourier_config, adapter_rng);
    const auto lora_applied = peft::apply_lora(lora_model, lora_config, adapter_rng);
    auto* fourier = peft::attached_adapter<peft::FourierFTAdapter<float>>(fourier_model.proj);
    auto* lora = peft::attached_adapter<peft::LoraAdapter<float>>(lora_model.proj);
    check(fourier != nullptr && lora != nullptr, "study_delta: the adapters were not attached");
    std::printf("layer %lld x %lld | FourierFT %s\n", (long long)d, (long long)d,
                fourier_applied.params.str().c_str());
    std::printf("                 | LoRA r=%lld  %s\n", (long long)r, lora_applied.params.str().c_str());

    // The closed-form optima for these entries / this rank.
    const Matrix fourier_best = fourier_projection(target, *fourier->blocks()[0].entries);
    const Matrix lora_best = truncated_svd(target, r);

    // ---- training: the same batches for both ------------------------------------------------
    const Matrix w_true = to_matrix(fourier_model.proj.weight.value()) + target;
    // Learning rates picked so both converge within ~50 steps; both then sit at their closed-form
    // optimum, so the comparison does not depend on them.
    optim::AdamW<float> fourier_opt(fourier_model.trainable_parameters(), {.lr = 2e-3, .weight_decay = 0});
    optim::AdamW<float> lora_opt(lora_model.trainable_parameters(), {.lr = 1e-2, .weight_decay = 0});
    auto schedule = [&](int step) {  // linear decay to 0, like the paper's runs (no warm-up here)
      return 1.0 - double(step) / double(steps);
    };
    Rng data(seed + 3);
    Tape<float> tape;
    std::string training_csv = "step,loss_fourierft,loss_lora,relerr_fourierft,relerr_lora\n";
    std::vector<double> curve_steps, curve_fourier, curve_lora;
    for (int step = 0; step <= steps; ++step) {
      // A fresh batch: x ~ N(0, I), y = x·(W0 + ΔW*)ᵀ + b.
      Tensor<float> x = randn<float>({batch, d}, data);
      Tensor<float> y({batch, d});
      as_matrix(y) = (as_matrix(x).cast<double>() * w_true.transpose()).cast<float>();
      for (Index t = 0; t < batch; ++t)
        for (Index o = 0; o < d; ++o) y[t * d + o] += fourier_model.proj.bias.value()[o];

      // Errors of the current ΔW (before this step's update), every 10 steps.
      const bool record = step % 10 == 0 || step == steps;
      const double ef = record ? relative_error(to_matrix(fourier->delta_weight()), target) : 0;
      const double el = record ? relative_error(to_matrix(lora->delta_weight()), target) : 0;
      double losses[2];
      int k = 0;
      for (auto [model, opt] : {std::pair<OneLayer*, optim::AdamW<float>*>{&fourier_model, &fourier_opt},
                                {&lora_model, &lora_opt}}) {
        Var<float> loss = ops::mse_loss(tape, model->forward(tape, Var<float>(x)), y);
        losses[k++] = loss.item();
        check(std::isfinite(loss.item()), "study_delta: loss is ", loss.item(), " at step ", step);
        if (step < steps) {  // the last pass only evaluates
          tape.backward(loss);
          opt->scale_lr(schedule(step));
          opt->step();
          opt->zero_grad();
        }
        tape.clear();
      }
      if (record) {
        training_csv += str_cat(step, ",", losses[0], ",", losses[1], ",", ef, ",", el, "\n");
        curve_steps.push_back(step), curve_fourier.push_back(ef), curve_lora.push_back(el);
        if (step % 50 == 0 || step == steps)
          std::printf("step %4d | loss FourierFT %.5f  LoRA %.5f | rel. error FourierFT %.4f  LoRA %.4f\n",
                      step, losses[0], losses[1], ef, el);
      }
    }

    // ---- what was learned ------------------------------------------------------------------
    const Matrix dW_fourier = to_matrix(fourier->delta_weight()), dW_lora = to_matrix(lora->delta_weight());
    const double ef = relative_error(dW_fourier, target), el = relative_error(dW_lora, target);
    const double ef_best = relative_error(fourier_best, target), el_best = relative_error(lora_best, target);
    const Eigen::VectorXd s_true = singular_values(target), s_fourier = singular_values(dW_fourier),
                          s_lora = singular_values(dW_lora), s_fourier_best = singular_values(fourier_best),
                          s_lora_best = singular_values(lora_best);
    auto numerical_rank = [](const Eigen::VectorXd& sv) {
      return (sv.array() > 1e-4 * sv[0]).count();  // float rounding sits near 1e-7 · s_1
    };
    std::printf("\n%-11s %10s %16s %14s %14s\n", "", "trainable", "rel. error", "optimum", "rank (>1e-4)");
    std::printf("%-11s %10lld %16.4f %14.4f %14lld\n", "FourierFT", (long long)n, ef, ef_best,
                (long long)numerical_rank(s_fourier));
    std::printf("%-11s %10lld %16.4f %14.4f %14lld\n", "LoRA", (long long)(2 * d * r), el, el_best,
                (long long)numerical_rank(s_lora));
    std::printf("%-11s %10s %16s %14s %14lld\n", "true dW", "-", "-", "-", (long long)numerical_rank(s_true));
    // Every cosine is even, so a FourierFT ΔW is point-symmetric: ΔW[p, q] = ΔW[−p, −q] (mod d).
    // Even with all d² coefficients it can only fit the symmetric part of ΔW*.
    Matrix reflected(d, d), fourier_reflected(d, d);
    for (Index p = 0; p < d; ++p)
      for (Index q = 0; q < d; ++q) {
        reflected(p, q) = target((d - p) % d, (d - q) % d);
        fourier_reflected(p, q) = dW_fourier((d - p) % d, (d - q) % d);
      }
    std::printf("FourierFT dW is point-symmetric: max |dW[p,q] - dW[-p,-q]| = %.1e; with all d^2 "
                "coefficients its best relative error would be %.4f (the symmetric part of dW*)\n",
                (dW_fourier - fourier_reflected).cwiseAbs().maxCoeff(),
                relative_error((target + reflected) / 2, target));

    // ---- figures and numbers -----------------------------------------------------------------
    // Each panel on its own symmetric scale (±max |entry|), so the structure shows at any size.
    auto weights_panel = [&](const Matrix& m, const std::string& title) {
      return plot::heatmap(std::span<const double>(m.data(), m.size()), d, d,
                           {.title = title, .colormap = plot::Colormap::diverging, .side = 160});
    };
    plot::write_png(out / "delta_weights.png",
                    plot::tile({weights_panel(target, "true dW* (s_k = 1/k)"),
                                weights_panel(dW_fourier, "FourierFT dW, n = " + std::to_string(n)),
                                weights_panel(dW_lora, "LoRA dW, r = " + std::to_string(r))}, 3));
    const std::vector<double> spec_true = log_spectrum(target), spec_fourier = log_spectrum(dW_fourier),
                              spec_lora = log_spectrum(dW_lora);
    const double top = *std::max_element(spec_true.begin(), spec_true.end());
    auto spectrum_panel = [&](const std::vector<double>& m, const std::string& title) {
      return plot::heatmap(m, d, d, {.title = title, .vmin = top - 4, .vmax = top, .side = 256,
                                     .colorbar_label = "log10 |DFT2|"});
    };
    plot::write_png(out / "delta_spectra.png",
                    plot::tile({spectrum_panel(spec_true, "|DFT2(dW*)|"),
                                spectrum_panel(spec_fourier, "|DFT2(FourierFT dW)|"),
                                spectrum_panel(spec_lora, "|DFT2(LoRA dW)|")}, 3));

    std::vector<double> ks;
    for (Index k = 1; k <= d; ++k) ks.push_back(double(k));
    auto values = [](const Eigen::VectorXd& v) { return std::vector<double>(v.data(), v.data() + v.size()); };
    plot::write_png(out / "singular_values.png",
                    plot::line_chart({{.label = "true dW*", .x = ks, .y = values(s_true), .marker = plot::Marker::none},
                                      {.label = "FourierFT, n = " + std::to_string(n), .x = ks, .y = values(s_fourier),
                                       .marker = plot::Marker::none},
                                      {.label = "LoRA, r = " + std::to_string(r), .x = ks, .y = values(s_lora),
                                       .marker = plot::Marker::none}},
                                     {.title = "singular values of the learned updates",
                                      .x_label = "k", .y_label = "s_k", .log_y = true,
                                      .legend = plot::Legend::bottom_left}));
    plot::write_png(out / "training.png",
                    plot::line_chart({{.label = "FourierFT", .x = curve_steps, .y = curve_fourier, .marker = plot::Marker::none},
                                      {.label = "LoRA", .x = curve_steps, .y = curve_lora, .marker = plot::Marker::none},
                                      {.label = "FourierFT optimum", .x = {0.0, double(steps)}, .y = {ef_best, ef_best},
                                       .color = plot::palette[0], .marker = plot::Marker::none, .dashed = true},
                                      {.label = "LoRA optimum (SVD)", .x = {0.0, double(steps)}, .y = {el_best, el_best},
                                       .color = plot::palette[1], .marker = plot::Marker::none, .dashed = true}},
                                     {.title = "relative error ||dW - dW*|| / ||dW*|| while training",
                                      .x_label = "step", .y_label = "relative error", .y_min = 0.0,
                                      .legend = plot::Legend::bottom_left}));
    util::write_file_atomically(out / "singular_values.csv", [&](std::ostream& csv) {
      csv << "k,true,fourierft,lora,fourierft_optimum,lora_optimum\n";
      for (Index k = 0; k < d; ++k)
        csv << k + 1 << "," << s_true[k] << "," << s_fourier[k] << "," << s_lora[k] << ","
            << s_fourier_best[k] << "," << s_lora_best[k] << "\n";
    });
    util::write_file_atomically(out / "training.csv", training_csv);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("wrote delta_weights.png, delta_spectra.png, singular_values.png, training.png, 2 CSVs "
                "to %s (%.1f s)\n", out.c_str(), seconds);
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "study_delta: %s\n", e.what());
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    std::fprintf(stderr, "study_delta: %s\n", e.what());
    return 1;
  }
}
