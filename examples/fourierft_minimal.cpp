// fourierft_minimal — FourierFT on one tiny layer, traced step by step: a notebook in a terminal.
//
// One frozen linear layer W0: (d_out, d_in) = (8, 12) gets a FourierFT adapter with n = 6 spectral
// coefficients through the library's real PEFT entry point (peft::apply_fourierft). The program
// prints every intermediate and checks each against an independent computation:
//   1. the layer and its shapes
//   2. the n entries (u_l, v_l): PEFT's seeded randperm prefix, read row-major
//   3. ΔW = α · Re(IDFT2(F)) (paper eq. 2–4, PEFT's 1/(d_out·d_in)), against the cosine sum
//      ΔW[p,q] = α/(M·N) · Σ_l c_l · cos(2π(u_l·p/M + v_l·q/N)) written out term by term
//   4. the forward pass y = x·(W0 + ΔW)ᵀ + b (one GEMM), against W0 and ΔW applied separately
//   5. the coefficient gradients from the tape (row DFTs of dy and x), against the dense formula
//      α/(M·N) · Re(DFT2(G))[u_l, v_l] with G = dyᵀ·x, and against central differences
//   6. a few AdamW steps towards a "teacher" update with the same entries: the loss falls
//   7. merge: W0 ← W0 + ΔW gives the same outputs with a plain layer; unmerge restores W0
// Everything is in double precision so the checks can be tight.
//
// Run:    ./build/examples/fourierft_minimal            (no options; prints ~70 lines)
// Expect: every check line ends in "ok", the loss falls by four orders of magnitude in 100 steps,
//         and the program exits 0 (1 if any check fails). Milliseconds.
#include <cmath>
#include <cstdio>
#include <numbers>
#include <vector>

#include <Eigen/Dense>

#include "fourierft/nn/linear.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/ops/softmax.hpp"
#include "fourierft/optim/adamw.hpp"
#include "fourierft/peft/fourierft.hpp"

using namespace fourierft;

// The model: one Linear named "layer", so PEFT's target_modules rule can find it.
struct OneLayer : nn::Module<double> {
  nn::Linear<double> layer;
  OneLayer(Index d_in, Index d_out, Rng& rng) : layer(d_in, d_out, rng) {
    register_module("layer", layer);
  }
  Var<double> forward(Tape<double>& tape, const Var<double>& x) const { return layer.forward(tape, x); }
};

namespace {
int failures = 0;
// Prints "check: <what> = <value> <= <tol>  ok|FAILED" and counts failures.
void check_line(const char* what, double value, double tol) {
  const bool ok = value <= tol;
  failures += ok ? 0 : 1;
  std::printf("  check: %-58s = %.2e <= %.0e  %s\n", what, value, tol, ok ? "ok" : "FAILED");
}
void section(const char* title) { std::printf("\n── %s ──\n", title); }

double max_abs_diff(std::span<const double> a, std::span<const double> b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}
std::vector<double> outputs(const OneLayer& model, const Var<double>& x) {
  Tape<double> tape;
  NoGradScope<double> no_grad(tape);
  Var<double> y = model.forward(tape, x);
  return {y.data().begin(), y.data().end()};
}
}  // namespace

int main() {
  try {
    const Index d_out = 8, d_in = 12, n = 6, T = 5;
    const double alpha = 10.0;  // PEFT's `scaling` (the paper's α); 1/(d_out·d_in) is applied too

    // ---- 1. the layer ---------------------------------------------------------------------
    section("1. a frozen layer W0 and a FourierFT adapter with n = 6 coefficients");
    Rng rng(0);
    OneLayer model(d_in, d_out, rng);
    peft::FourierFTConfig config;
    config.n_frequency = n;
    config.scaling = alpha;
    config.random_loc_seed = 777;  // PEFT's default seed for the entries
    config.target_modules = {{"layer"}, ""};
    const peft::AppliedAdapters applied = peft::apply_fourierft(model, config, rng);
    auto* adapter = peft::attached_adapter<peft::FourierFTAdapter<double>>(model.layer);
    check(adapter != nullptr, "fourierft_minimal: no FourierFT adapter on 'layer'");
    Var<double> coeffs = adapter->blocks()[0].spectrum;  // a handle to the model's own parameter
    const peft::SpectralEntries& e = *adapter->blocks()[0].entries;
    std::printf("  W0 %-8s frozen   bias %-5s frozen   x %s   y (%lld, %lld)\n",
                shape_str(model.layer.weight.shape()).c_str(), shape_str(model.layer.bias.shape()).c_str(),
                shape_str({T, d_in}).c_str(), (long long)T, (long long)d_out);
    for (const auto& [name, p] : model.named_parameters())
      std::printf("  parameter %-28s %-8s requires_grad = %s\n", name.c_str(), shape_str(p.shape()).c_str(),
                  p.requires_grad() ? "true" : "false");
    std::printf("  %s\n", applied.params.str().c_str());

    // ---- 2. the entries -----------------------------------------------------------------------
    section("2. the n entries: idx = randperm(d_out*d_in, seed 777)[:n]; u = idx / d_in, v = idx % d_in");
    std::printf("    l   idx    u    v   signed (u', v')    c_l ~ N(0, 1)\n");
    for (Index l = 0; l < n; ++l) {
      const Index u = e.rows[l], v = e.cols[l];
      std::printf("  %3lld  %4lld  %3lld  %3lld   (%3lld, %3lld)          %+.4f\n", (long long)l,
                  (long long)(u * d_in + v), (long long)u, (long long)v,
                  (long long)(u <= d_out / 2 ? u : u - d_out), (long long)(v <= d_in / 2 ? v : v - d_in),
                  coeffs.value()[l]);
    }
    // cos is even, so (u, v) and its mirror (−u mod M, −v mod N) give the same cosine.
    for (Index l = 0; l < n; ++l)
      for (Index m = l; m < n; ++m)
        if (e.rows[m] == (d_out - e.rows[l]) % d_out && e.cols[m] == (d_in - e.cols[l]) % d_in) {
          if (l == m)
            std::printf("  note: entry %lld is its own mirror (u in {0, M/2}, v in {0, N/2}): its cosine "
                        "is +-1 everywhere, rank 1\n", (long long)l);
          else
            std::printf("  note: entries %lld and %lld are mirror images (-u, -v): the same cosine, so "
                        "only c_%lld + c_%lld matters\n",
                        (long long)l, (long long)m, (long long)l, (long long)m);
        }

    // ---- 3. ΔW -------------------------------------------------------------------------------
    section("3. dW = alpha * Re(IDFT2(F)),  F = c_l at (u_l, v_l), 0 elsewhere  (one c2r inverse FFT)");
    const Tensor<double> dW = adapter->delta_weight();
    auto brute = [&](Index p, Index q) {  // the closed form, term by term
      double s = 0;
      for (Index l = 0; l < n; ++l)
        s += coeffs.value()[l] * std::cos(2 * std::numbers::pi * (double(e.rows[l] * p) / double(d_out) +
                                                                  double(e.cols[l] * q) / double(d_in)));
      return alpha / double(d_out * d_in) * s;
    };
    Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> dW_m(dW.ptr(), d_out, d_in);
    std::printf("  shape %s   mean %+.5f   min %+.5f   max %+.5f   ||dW||_F %.5f   rank %lld\n",
                shape_str(dW.shape()).c_str(), dW_m.mean(), dW_m.minCoeff(), dW_m.maxCoeff(), dW_m.norm(),
                (long long)Eigen::FullPivLU<Eigen::MatrixXd>(dW_m).rank());
    std::printf("  (each cosine has rank <= 2; their sum is a dense matrix from 6 numbers)\n");
    std::printf("    p   q      dW[p,q] (FFT)     cosine sum\n");
    double worst = 0;
    for (Index p = 0; p < d_out; ++p)
      for (Index q = 0; q < d_in; ++q) {
        worst = std::max(worst, std::abs(dW[p * d_in + q] - brute(p, q)));
        if ((p == 0 && q < 2) || (p == 3 && q == 7) || (p == 7 && q == 11))
          std::printf("  %3lld %3lld   %+.12f   %+.12f\n", (long long)p, (long long)q, dW[p * d_in + q], brute(p, q));
      }
    check_line("max |dW (c2r FFT) - cosine sum| over all 96 entries", worst, 1e-14);
    double asymmetry = 0;  // every cosine is even, so dW[p, q] = dW[−p mod M, −q mod N]
    for (Index p = 0; p < d_out; ++p)
      for (Index q = 0; q < d_in; ++q)
        asymmetry = std::max(asymmetry, std::abs(dW[p * d_in + q] -
                                                 dW[((d_out - p) % d_out) * d_in + (d_in - q) % d_in]));
    check_line("max |dW[p,q] - dW[-p,-q]| (point symmetry)", asymmetry, 1e-15);
    std::vector<double> dW_c2c(static_cast<std::size_t>(d_out * d_in));
    peft::fourierft_delta_forward_c2c<double>(dW_c2c, coeffs.data(), e, alpha);
    check_line("max |dW (c2r) - dW (PEFT's complex ifft2, c2c)|", max_abs_diff(dW.data(), dW_c2c), 1e-14);

    // ---- 4. forward ----------------------------------------------------------------------------
    section("4. forward: y = x·(W0 + dW)ᵀ + b, one GEMM with the merged weight");
    Var<double> x(randn<double>({T, d_in}, rng));
    Tape<double> tape;
    Var<double> y = model.forward(tape, x);
    std::printf("  y %s, row 0: ", shape_str(y.shape()).c_str());
    for (Index o = 0; o < d_out; ++o) std::printf("%+.4f ", y.value()[o]);
    std::printf("\n  ops recorded on the tape: ");
    for (const std::string& op : tape.op_names()) std::printf("%s ", op.c_str());
    std::printf("\n");
    std::vector<double> y_separate(static_cast<std::size_t>(T * d_out));  // x·W0ᵀ + b + x·dWᵀ
    for (Index t = 0; t < T; ++t)
      for (Index o = 0; o < d_out; ++o) {
        double s = model.layer.bias.value()[o];
        for (Index q = 0; q < d_in; ++q)
          s += x.value()[t * d_in + q] * (model.layer.weight.value()[o * d_in + q] + dW[o * d_in + q]);
        y_separate[t * d_out + o] = s;
      }
    check_line("max |y - (x W0^T + b + x dW^T)| (PEFT's unmerged form)", max_abs_diff(y.data(), y_separate), 1e-13);

    // ---- 5. backward -------------------------------------------------------------------------
    section("5. backward: dL/dc_l = alpha/(M·N) · Re(DFT2(G))[u_l, v_l],  G = dL/d(dW) = dyᵀ·x");
    const Tensor<double> target = randn<double>({T, d_out}, rng);
    Var<double> loss = ops::mse_loss(tape, y, target);
    tape.backward(loss);  // the spectral path: row DFTs of dy and x, gathered at the entries
    tape.clear();
    std::printf("  loss = mean((y - target)²) = %.6f;  W0 has a gradient: %s\n", loss.item(),
                model.layer.weight.has_grad() ? "yes" : "no (frozen: no dW GEMM at all)");
    // The dense formula: dy = 2(y − target)/numel, G = dyᵀ·x, one r2c 2-D DFT of G, gathered.
    std::vector<double> G(static_cast<std::size_t>(d_out * d_in), 0.0), dense(static_cast<std::size_t>(n), 0.0);
    for (Index t = 0; t < T; ++t)
      for (Index o = 0; o < d_out; ++o) {
        const double dy = 2 * (y.value()[t * d_out + o] - target[t * d_out + o]) / double(T * d_out);
        for (Index q = 0; q < d_in; ++q) G[o * d_in + q] += dy * x.value()[t * d_in + q];
      }
    peft::fourierft_delta_backward<double>(dense, G, e, alpha);
    // Central differences: L(c + h·e_l) − L(c − h·e_l) over 2h, through the whole model.
    std::vector<double> numeric(static_cast<std::size_t>(n));
    for (Index l = 0; l < n; ++l) {
      const double saved = coeffs.value()[l], h = 1e-6;
      auto eval = [&](double c) {
        coeffs.value()[l] = c;
        Tape<double> t;
        NoGradScope<double> no_grad(t);
        return ops::mse_loss(t, model.forward(t, x), target).item();
      };
      numeric[l] = (eval(saved + h) - eval(saved - h)) / (2 * h);
      coeffs.value()[l] = saved;
    }
    std::printf("    l     tape (spectral)     dense formula       central diff.\n");
    for (Index l = 0; l < n; ++l)
      std::printf("  %3lld   %+.12f   %+.12f   %+.12f\n", (long long)l, coeffs.grad()[l], dense[l], numeric[l]);
    check_line("max |tape gradient - dense formula|", max_abs_diff(coeffs.grad().data(), dense), 1e-12);
    check_line("max |tape gradient - central differences|", max_abs_diff(coeffs.grad().data(), numeric), 1e-8);

    // ---- 6. training -------------------------------------------------------------------------
    section("6. training: AdamW on the 6 coefficients towards a teacher update on the same entries");
    // The teacher: the same layer with other coefficients c*, so a loss of 0 is reachable.
    std::vector<double> teacher_c(static_cast<std::size_t>(n));
    for (double& c : teacher_c) c = 2.0 * rng.normal();
    std::vector<double> teacher_dW(static_cast<std::size_t>(d_out * d_in));
    peft::fourierft_delta_forward<double>(teacher_dW, teacher_c, e, alpha);
    const Tensor<double> batch = randn<double>({64, d_in}, rng);
    Tensor<double> teacher_y({64, d_out});
    for (Index t = 0; t < 64; ++t)
      for (Index o = 0; o < d_out; ++o) {
        double s = model.layer.bias.value()[o];
        for (Index q = 0; q < d_in; ++q)
          s += batch[t * d_in + q] * (model.layer.weight.value()[o * d_in + q] + teacher_dW[o * d_in + q]);
        teacher_y[t * d_out + o] = s;
      }
    coeffs.zero_grad();
    optim::AdamW<double> opt(model.trainable_parameters(), {.lr = 0.1, .weight_decay = 0});
    const int steps = 100;
    double first = 0, last = 0;
    for (int step = 0; step < steps; ++step) {
      Var<double> l = ops::mse_loss(tape, model.forward(tape, Var<double>(batch)), teacher_y);
      tape.backward(l);
      opt.scale_lr(1.0 - double(step) / steps);  // linear decay to 0
      opt.step();
      opt.zero_grad();
      tape.clear();
      (step == 0 ? first : last) = l.item();
      if (step % 10 == 0 || step == steps - 1) std::printf("  step %2d | loss %.3e\n", step, l.item());
    }
    std::printf("  coefficients now: ");
    for (Index l = 0; l < n; ++l) std::printf("%+.3f ", coeffs.value()[l]);
    std::printf("\n  teacher's:        ");
    for (double c : teacher_c) std::printf("%+.3f ", c);
    std::printf("\n");
    for (Index l = 0; l < n; ++l)  // a mirrored pair is one cosine: only the sum is determined
      for (Index m = l + 1; m < n; ++m)
        if (e.rows[m] == (d_out - e.rows[l]) % d_out && e.cols[m] == (d_in - e.cols[l]) % d_in)
          std::printf("  mirrored pair (%lld, %lld): c_%lld + c_%lld = %+.3f, teacher's sum %+.3f\n", (long long)l,
                      (long long)m, (long long)l, (long long)m, coeffs.value()[l] + coeffs.value()[m],
                      teacher_c[l] + teacher_c[m]);
    check_line("last loss / first loss", last / first, 1e-3);

    // ---- 7. merge ----------------------------------------------------------------------------
    section("7. merge: W0 <- W0 + dW, then the layer is a plain Linear (zero overhead)");
    const Tensor<double> w0 = model.layer.weight.value().clone();
    const std::vector<double> before = outputs(model, x);
    peft::merge_adapters(model);
    const std::vector<double> merged = outputs(model, x);  // a merged adapter is skipped: base op
    check_line("max |merged outputs - adapter outputs|", max_abs_diff(before, merged), 1e-13);
    peft::merge_adapters(model, /*merge=*/false);
    check_line("max |W0 after unmerge - W0|", max_abs_diff(model.layer.weight.data(), w0.data()), 1e-15);

    std::printf("\n%s\n", failures == 0 ? "all checks ok" : "SOME CHECKS FAILED");
    return failures == 0 ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "fourierft_minimal: %s\n", e.what());
    return 1;
  }
}
