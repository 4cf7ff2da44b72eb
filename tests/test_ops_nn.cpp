// Tests of the neural-network ops: gelu, tanh, relu, dropout (ops/elementwise.hpp), layer_norm
// (ops/norm.hpp), softmax, log_softmax, cross_entropy, mse_loss (ops/softmax.hpp), the fused
// linear_cross_entropy (ops/linear_cross_entropy.hpp), sum_last and
// mean_last (ops/reduce.hpp): forward values (float and double), double gradient checks, PyTorch
// reference numbers, and a tiny MLP trained to near-zero loss.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <vector>

#include "fourierft/core/parallel.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/ops/linear_cross_entropy.hpp"
#include "fourierft/ops/norm.hpp"
#include "fourierft/ops/reduce.hpp"
#include "fourierft/ops/softmax.hpp"
#include "gradcheck.hpp"

using namespace fourierft;
using fourierft::testing::gradcheck;
using fourierft::testing::project;
using fourierft::testing::GradcheckResult;

namespace {
// Relative tolerance for forward values: float keeps ~7 digits, double ~16.
template <class Real>
constexpr double tol() {
  return sizeof(Real) == 4 ? 2e-6 : 1e-12;
}

// The PyTorch reference inputs, regenerated from the same formulas as the python one-liners:
//   gelu:          x[i] = 4 sin(0.9 i + 0.3),            i = 0..11
//   cross_entropy: logits.flat[k] = 3 sin(0.37 k + 0.2),  k = 0..34, shape (5, 7)
template <class Real>
Tensor<Real> gelu_reference_input() {
  Tensor<Real> x({12});
  for (Index i = 0; i < 12; ++i) x[i] = static_cast<Real>(4 * std::sin(0.9 * double(i) + 0.3));
  return x;
}
template <class Real>
Tensor<Real> cross_entropy_reference_logits() {
  Tensor<Real> x({5, 7});
  for (Index k = 0; k < 35; ++k) x[k] = static_cast<Real>(3 * std::sin(0.37 * double(k) + 0.2));
  return x;
}
const std::vector<std::int64_t> reference_targets = {3, -100, 0, 6, 2};
}  // namespace

// ---------------------------------------------------------------------------
// gelu, tanh, relu

TEST_CASE_TEMPLATE("gelu: both forms match PyTorch 1.13", Real, float, double) {
  // From torch 1.13 (float64):
  //   python3 -c "import torch,torch.nn.functional as F; x=4*torch.sin(0.9*torch.arange(12,
  //   dtype=torch.float64)+0.3); print([float('%.17g'%v) for v in F.gelu(x)]); print([float(
  //   '%.17g'%v) for v in F.gelu(x,approximate='tanh')])"
  const double exact[12] = {1.0419016255407523,     3.72779678983078,      3.45187978219096,
                            0.40291808946105523,    -0.008170926223620182, -0.00013463614454006868,
                            -0.030412078480725607,  1.1136334782112165,    3.7516708013100097,
                            3.417318983510668,      0.3438395590983978,    -0.0071641993040650245};
  const double tanh_form[12] = {1.0416922417764933,   3.727915390213343,     3.452097031428893,
                                0.40289148813408093,  -0.007699805934140224, -7.556431291060816e-05,
                                -0.03014383632697356, 1.1134105554286764,    3.7517825501556676,
                                3.417550776084361,    0.34382261011281806,   -0.006698653132772128};
  Tape<Real> tape;
  Var<Real> x(gelu_reference_input<Real>());
  Var<Real> y = ops::gelu(tape, x, ops::GeluForm::exact);
  Var<Real> y_new = ops::gelu(tape, x, ops::GeluForm::tanh);
  for (Index i = 0; i < 12; ++i) {
    INFO("i = ", i);
    CHECK(y.value()[i] == doctest::Approx(exact[i]).epsilon(tol<Real>()));
    CHECK(y_new.value()[i] == doctest::Approx(tanh_form[i]).epsilon(tol<Real>()));
  }
}

TEST_CASE("gelu: gradients of both forms match central differences") {
  Rng rng(11);
  auto x = randn<double>({3, 2, 5}, rng, 0.0, 2.0);
  for (auto form : {ops::GeluForm::exact, ops::GeluForm::tanh}) {
    auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
      return project(t, ops::gelu(t, in[0], form));
    };
    // eps = 1e-4: the differences then agree to ~1e-11; at 1e-6 rounding noise reaches ~7e-10.
    GradcheckResult r = gradcheck(loss, {x}, {.eps = 1e-4, .rtol = 1e-6, .atol = 1e-9});
    const std::string name = form == ops::GeluForm::exact ? "exact" : "tanh";
    INFO("form ", name, ": ", r.report());
    CHECK(r.ok);
  }
}

TEST_CASE_TEMPLATE("gelu and tanh: long inputs (parallel chunks, with a tail) match std:: formulas",
                   Real, float, double) {
  Rng rng(14);
  const Index n = 5 * 16384 + 123;
  Var<Real> x(randn<Real>({n}, rng, Real(0), Real(3)), true);
  Tape<Real> tape;
  Var<Real> g = ops::gelu(tape, x, ops::GeluForm::tanh), t = ops::tanh(tape, x);
  Var<Real> e = ops::gelu(tape, x, ops::GeluForm::exact);  // float: Eigen's rational erf
  tape.backward(ops::sum(tape, e));                          // dx = Phi(x) + x phi(x)
  for (Index i = 0; i < n; i += 97) {
    const double v = x.value()[i];
    const double ref = 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
    REQUIRE(g.value()[i] == doctest::Approx(ref).epsilon(tol<Real>()));
    REQUIRE(t.value()[i] == doctest::Approx(std::tanh(v)).epsilon(tol<Real>()));
    const double cdf = 0.5 * (1 + std::erf(v / std::sqrt(2.0)));
    const double pdf = std::exp(-0.5 * v * v) / std::sqrt(2 * std::numbers::pi);
    // Relative to max(1, |value|): for x << 0, 1 + erf(x/√2) cancels in float (PyTorch's too).
    REQUIRE(std::abs(e.value()[i] - v * cdf) <= tol<Real>() * std::max(1.0, std::abs(v * cdf)));
    REQUIRE(std::abs(x.grad()[i] - (cdf + v * pdf)) <= tol<Real>() * std::max(1.0, std::abs(cdf + v * pdf)));
  }
}

TEST_CASE_TEMPLATE("tanh and relu: forward values", Real, float, double) {
  Tape<Real> tape;
  Var<Real> x(Tensor<Real>::from_data({2, 3}, {-2, -0.5, 0, 0.25, 1, 3}));
  Var<Real> t = ops::tanh(tape, x), r = ops::relu(tape, x);
  for (Index i = 0; i < 6; ++i) {
    const double xi = static_cast<double>(x.value()[i]);
    CHECK(t.value()[i] == doctest::Approx(std::tanh(xi)).epsilon(tol<Real>()));
    CHECK(r.value()[i] == (xi > 0 ? x.value()[i] : Real(0)));
  }
}

TEST_CASE("tanh and relu: gradients match central differences") {
  Rng rng(12);
  auto x = randn<double>({4, 6}, rng);
  // relu is not differentiable at 0: keep every entry at least 0.1 away from it.
  for (double& v : x.data()) v += v >= 0 ? 0.1 : -0.1;
  auto tanh_loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::tanh(t, in[0]));
  };
  auto relu_loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::relu(t, in[0]));
  };
  GradcheckResult rt = gradcheck(tanh_loss, {x});
  INFO("tanh: ", rt.report());
  CHECK(rt.ok);
  GradcheckResult rr = gradcheck(relu_loss, {x});
  INFO("relu: ", rr.report());
  CHECK(rr.ok);
}

// ---------------------------------------------------------------------------
// dropout

TEST_CASE_TEMPLATE("dropout: seeded inverted mask; identity in eval mode or at p = 0",
                   Real, float, double) {
  Tape<Real> tape;
  Var<Real> x(Tensor<Real>::full({100, 50}, Real(2)));
  const Real p = Real(0.3);
  Rng a(7), b(7);
  Var<Real> ya = ops::dropout(tape, x, p, a), yb = ops::dropout(tape, x, p, b);
  Index kept = 0;
  for (Index i = 0; i < x.numel(); ++i) {
    CHECK(ya.value()[i] == yb.value()[i]);  // same seed, same mask
    if (ya.value()[i] != Real(0)) {
      ++kept;
      CHECK(ya.value()[i] == doctest::Approx(2 / 0.7).epsilon(tol<Real>()));  // x / (1 - p)
    }
  }
  // 5000 Bernoulli(0.7) draws: mean 3500, standard deviation ~32.
  CHECK(kept > 3500 - 200);
  CHECK(kept < 3500 + 200);
  // The next draws differ: a second call does not repeat the mask.
  Var<Real> ya2 = ops::dropout(tape, x, p, a);
  Index same = 0;
  for (Index i = 0; i < x.numel(); ++i) same += (ya2.value()[i] == ya.value()[i]);
  CHECK(same < x.numel());

  CHECK(ops::dropout(tape, x, p, a, /*training=*/false).same_as(x));
  CHECK(ops::dropout(tape, x, Real(0), a).same_as(x));
}

TEST_CASE("dropout: p outside [0, 1) is a ValueError naming p") {
  Tape<double> tape;
  Rng rng(1);
  Var<double> x(Tensor<double>::ones({3}));
  CHECK_THROWS_WITH_AS(ops::dropout(tape, x, 1.0, rng), "dropout: p = 1 must be in [0, 1)",
                       ValueError);
  CHECK_THROWS_WITH_AS(ops::dropout(tape, x, -0.25, rng), "dropout: p = -0.25 must be in [0, 1)",
                       ValueError);
}

TEST_CASE("dropout: gradient goes through the saved mask only") {
  Rng rng(13);
  auto x = randn<double>({5, 8}, rng);
  // A fresh Rng with the same seed in every evaluation: the mask is the same each time.
  auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    Rng mask_rng(21);
    return project(t, ops::dropout(t, in[0], 0.4, mask_rng));
  };
  GradcheckResult r = gradcheck(loss, {x});
  INFO(r.report());
  CHECK(r.ok);
  // dx is zero exactly where the output was dropped.
  Tape<double> tape;
  Var<double> xv = Var<double>::parameter(x.clone());
  Rng mask_rng(21);
  Var<double> y = ops::dropout(tape, xv, 0.4, mask_rng);
  const Tensor<double> y_value = y.value();
  tape.backward(ops::sum(tape, y));
  for (Index i = 0; i < x.numel(); ++i)
    CHECK(xv.grad()[i] == doctest::Approx(y_value[i] == 0.0 ? 0.0 : 1 / 0.6).epsilon(1e-14));
}

// ---------------------------------------------------------------------------
// layer_norm

TEST_CASE_TEMPLATE("layer_norm: matches the formula, per row, over the last dim", Real, float,
                   double) {
  Rng rng(21);
  const Index N = 6, C = 10;
  Tape<Real> tape;
  Var<Real> x(randn<Real>({2, 3, C}, rng, Real(1), Real(3)));
  Var<Real> gamma(randn<Real>({C}, rng)), beta(randn<Real>({C}, rng));
  const Real eps = Real(1e-5);
  Var<Real> y = ops::layer_norm(tape, x, gamma, beta, eps);
  REQUIRE(y.shape() == x.shape());
  for (Index i = 0; i < N; ++i) {
    double mean = 0, var = 0;
    for (Index c = 0; c < C; ++c) mean += x.value()[i * C + c];
    mean /= C;
    for (Index c = 0; c < C; ++c) var += std::pow(x.value()[i * C + c] - mean, 2);
    var /= C;  // biased, as PyTorch
    for (Index c = 0; c < C; ++c) {
      const double ref = (x.value()[i * C + c] - mean) / std::sqrt(var + double(eps)) *
                             double(gamma.value()[c]) + double(beta.value()[c]);
      CHECK(y.value()[i * C + c] == doctest::Approx(ref).epsilon(10 * tol<Real>()));
    }
  }
}

TEST_CASE("layer_norm: gradients match central differences") {
  Rng rng(42);
  auto x = randn<double>({2, 3, 8}, rng), gamma = randn<double>({8}, rng);
  auto beta = randn<double>({8}, rng);
  // A random projection, not a plain sum: with gamma = 1, sum(layer_norm(x)) is constant in x.
  auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::layer_norm(t, in[0], in[1], in[2]));
  };
  GradcheckResult r = gradcheck(loss, {x, gamma, beta}, {.eps = 1e-6, .rtol = 1e-6});
  INFO(r.report());
  CHECK(r.ok);
}

TEST_CASE("layer_norm: many rows (parallel, block partials) match central differences") {
  Rng rng(43);
  // N = 300 rows > 64 blocks, N * C above the OpenMP threshold. The loss sums 19200 terms, so its
  // rounding noise (~1e-12) needs a larger eps than 1e-6 to stay below the tolerance.
  auto x = randn<double>({300, 64}, rng), gamma = randn<double>({64}, rng);
  auto beta = randn<double>({64}, rng);
  auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::layer_norm(t, in[0], in[1], in[2]));
  };
  GradcheckResult r = gradcheck(loss, {x, gamma, beta}, {.eps = 1e-4, .rtol = 1e-6, .atol = 1e-8});
  INFO(r.report());
  CHECK(r.ok);
}

TEST_CASE("layer_norm: backward is bit-identical for 1 and 2 threads; frozen gamma, beta skipped") {
  Rng rng(44);
  const Index N = 300, C = 64;
  auto x = randn<float>({N, C}, rng), gamma = randn<float>({C}, rng), beta = randn<float>({C}, rng);
  auto dy = randn<float>({N, C}, rng);
  Tensor<float> mean({N}), rstd({N}), y({N, C});
  ops::layer_norm_forward<float>(y.data(), mean.data(), rstd.data(), x.data(), gamma.data(),
                                 beta.data(), N, C, 1e-5f);
  auto run = [&](int threads, bool params) {
    set_num_threads(threads);
    std::vector<Tensor<float>> g = {Tensor<float>({N, C}), Tensor<float>({C}), Tensor<float>({C})};
    ops::layer_norm_backward<float>(g[0].data(), params ? g[1].data() : std::span<float>(),
                                    params ? g[2].data() : std::span<float>(), dy.data(), x.data(),
                                    gamma.data(), mean.data(), rstd.data(), N, C);
    return g;
  };
  const int saved_threads = num_threads();
  auto one = run(1, true), two = run(2, true), dx_only = run(2, false);
  set_num_threads(saved_threads);
  for (std::size_t k = 0; k < 3; ++k)
    for (Index i = 0; i < one[k].numel(); ++i) REQUIRE(one[k][i] == two[k][i]);
  for (Index i = 0; i < N * C; ++i) REQUIRE(dx_only[0][i] == one[0][i]);
  for (Index c = 0; c < C; ++c) CHECK(dx_only[1][c] == 0.0f);
}

TEST_CASE("layer_norm: a gamma of the wrong width names the op, the tensor and both shapes") {
  Tape<float> tape;
  Var<float> x(Tensor<float>({2, 3, 8})), gamma(Tensor<float>({5})), beta(Tensor<float>({8}));
  CHECK_THROWS_WITH_AS(ops::layer_norm(tape, x, gamma, beta),
                       "layer_norm: gamma has shape (5) but x (2, 3, 8) needs (8)", ShapeError);
  CHECK_THROWS_WITH_AS(ops::layer_norm(tape, x, beta, gamma),
                       "layer_norm: beta has shape (5) but x (2, 3, 8) needs (8)", ShapeError);
}

// ---------------------------------------------------------------------------
// softmax, log_softmax

TEST_CASE_TEMPLATE("softmax and log_softmax: rows sum to one, stable for huge logits", Real, float,
                   double) {
  Tape<Real> tape;
  // Row 1 would overflow exp() without the max subtraction.
  Var<Real> x(Tensor<Real>::from_data({2, 3}, {1, 2, 3, 1000, 1001, 1002}));
  Var<Real> p = ops::softmax(tape, x), lp = ops::log_softmax(tape, x);
  const double e1 = std::exp(-1.0), e2 = std::exp(-2.0), z = 1 + e1 + e2;
  const double ref[3] = {e2 / z, e1 / z, 1 / z};  // softmax is shift-invariant: both rows equal
  for (Index i = 0; i < 2; ++i)
    for (Index v = 0; v < 3; ++v) {
      CHECK(p.value()[i * 3 + v] == doctest::Approx(ref[v]).epsilon(tol<Real>()));
      CHECK(lp.value()[i * 3 + v] == doctest::Approx(std::log(ref[v])).epsilon(tol<Real>()));
    }
}

TEST_CASE("softmax and log_softmax: gradients match central differences") {
  Rng rng(31);
  auto x = randn<double>({3, 2, 6}, rng, 0.0, 2.0);
  auto softmax_loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::softmax(t, in[0]));
  };
  auto log_softmax_loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::log_softmax(t, in[0]));
  };
  GradcheckResult rs = gradcheck(softmax_loss, {x});
  INFO("softmax: ", rs.report());
  CHECK(rs.ok);
  GradcheckResult rl = gradcheck(log_softmax_loss, {x});
  INFO("log_softmax: ", rl.report());
  CHECK(rl.ok);
}

// ---------------------------------------------------------------------------
// cross_entropy, mse_loss

TEST_CASE_TEMPLATE("cross_entropy: loss and gradient match PyTorch 1.13 (ignore_index, smoothing)",
                   Real, float, double) {
  // From torch 1.13 (float64):
  //   python3 -c "import torch,torch.nn.functional as F; L=(3*torch.sin(0.37*torch.arange(35,
  //   dtype=torch.float64)+0.2)).reshape(5,7).requires_grad_(); t=torch.tensor([3,-100,0,6,2]);
  //   l0=F.cross_entropy(L,t); l1=F.cross_entropy(L,t,label_smoothing=0.1); l1.backward();
  //   print('%.17g %.17g'%(l0.item(),l1.item())); print([float('%.17g'%v) for v in L.grad[0]]);
  //   print([float('%.17g'%v) for v in L.grad[3]])"
  const double loss_plain = 4.3214466771109965, loss_smoothed = 4.1706827129206605;
  const double grad_row0[7] = {0.0022755946894950814, 0.012690404637948956, 0.03275694206639285,
                               -0.17010343126808994,  0.05999301824124566,  0.04258387159973694,
                               0.019803600033270443};
  const double grad_row3[7] = {0.10543866994630481,  0.075015661595709,     0.03599407039325427,
                               0.011693705656518463, 0.001562905671691999, -0.0018267524802935593,
                               -0.227878260783185};
  Tape<Real> tape;
  Var<Real> logits = Var<Real>::parameter(cross_entropy_reference_logits<Real>());
  Var<Real> l0 = ops::cross_entropy(tape, logits, reference_targets);
  Var<Real> l1 = ops::cross_entropy(tape, logits, reference_targets, {.label_smoothing = 0.1});
  CHECK(l0.item() == doctest::Approx(loss_plain).epsilon(tol<Real>()));
  CHECK(l1.item() == doctest::Approx(loss_smoothed).epsilon(tol<Real>()));
  tape.backward(l1);
  const Tensor<Real>& g = logits.grad();
  for (Index v = 0; v < 7; ++v) {
    INFO("v = ", v);
    CHECK(g[0 * 7 + v] == doctest::Approx(grad_row0[v]).epsilon(tol<Real>()));
    CHECK(g[3 * 7 + v] == doctest::Approx(grad_row3[v]).epsilon(tol<Real>()));
    CHECK(g[1 * 7 + v] == Real(0));  // row 1 is ignored
  }
}

TEST_CASE("cross_entropy: gradients match central differences (smoothing, ignored rows, 3-D)") {
  Rng rng(32);
  auto logits = randn<double>({2, 3, 5}, rng, 0.0, 2.0);  // (B, T, V): 6 rows
  const std::vector<std::int64_t> targets = {4, 0, -1, 2, 2, 1};
  for (double smoothing : {0.0, 0.2}) {
    const ops::CrossEntropyOptions options{.ignore_index = -1, .label_smoothing = smoothing};
    auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
      return ops::cross_entropy(t, in[0], targets, options);
    };
    GradcheckResult r = gradcheck(loss, {logits});
    INFO("label_smoothing ", smoothing, ": ", r.report());
    CHECK(r.ok);
  }
}

TEST_CASE_TEMPLATE("cross_entropy: all rows ignored gives 0 loss and 0 gradient", Real, float,
                   double) {
  Tape<Real> tape;
  Var<Real> logits = Var<Real>::parameter(Tensor<Real>::ones({3, 4}));
  Var<Real> loss = ops::cross_entropy(tape, logits, std::vector<std::int64_t>{-100, -100, -100});
  CHECK(loss.item() == Real(0));
  tape.backward(loss);
  for (Real v : logits.grad().data()) CHECK(v == Real(0));
}

// ---------------------------------------------------------------------------
// linear_cross_entropy (the LM head and its loss, fused over row chunks)

TEST_CASE("exp_fast: within 3e-7 relative of exp over the range a softmax uses") {
  double worst = 0;
  for (int i = 0; i <= 200000; ++i) {
    const float x = -87.0f + 87.5f * static_cast<float>(i) / 200000.0f;  // [-87, 0.5]
    const double exact = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(static_cast<double>(ops::detail::exp_fast(x)) - exact) / exact);
  }
  INFO("worst relative error ", worst);
  CHECK(worst < 3e-7);
  CHECK(ops::detail::exp_fast(-1000.0f) < 1e-37f);  // clamped, not NaN or negative
  CHECK(ops::detail::exp_fast(-1000.0f) >= 0.0f);
}

TEST_CASE("max_lanes: the maximum of rows of every length, wherever it sits") {
  Rng rng(40);
  for (Index n : {1, 2, 15, 16, 17, 31, 32, 33, 1001}) {
    std::vector<float> row(static_cast<std::size_t>(n));
    for (float& v : row) v = static_cast<float>(rng.normal());
    for (Index at : {Index(0), n / 2, n - 1}) {
      std::vector<float> with_peak = row;
      with_peak[static_cast<std::size_t>(at)] = 50.0f;
      INFO("n ", n, ", maximum at ", at);
      CHECK(ops::detail::max_lanes(with_peak.data(), n) == 50.0f);
    }
    CHECK(ops::detail::max_lanes(row.data(), n) == *std::max_element(row.begin(), row.end()));
  }
}

TEST_CASE("linear_cross_entropy_chunk_rows: multiples of 32, about 64 MB of logits, even chunks") {
  for (Index V : {301, 50257, 128256, 1 << 22})
    for (Index K : {1, 31, 200, 1016, 1024, 4000, 16384}) {
      const Index R = ops::linear_cross_entropy_chunk_rows(V, sizeof(float), K);
      INFO("V ", V, ", K ", K, ": ", R, " rows per chunk");
      CHECK(R % 32 == 0);
      CHECK((R == 32 || static_cast<double>(R) * V * sizeof(float) <= 64.0 * (1 << 20)));
      const Index chunks = (K + R - 1) / R;
      const Index most = std::max<Index>(32, (64 << 20) / (V * 4) / 32 * 32);
      CHECK(chunks == (K + most - 1) / most);  // no more chunks than the memory bound needs
      CHECK(chunks * R - K < 32 * chunks);     // equal chunks up to the rounding to 32 rows
    }
  // GPT-2 at 8 × 128 tokens (1016 labelled rows): four chunks of 256 rows, not six of 166 and 20.
  CHECK(ops::linear_cross_entropy_chunk_rows(50257, sizeof(float), 1016) == 256);
}

TEST_CASE("linear_cross_entropy: gradients of x, weight and bias match central differences") {
  Rng rng(41);
  auto x = randn<double>({2, 3, 4}, rng);       // (B, T, C): 6 rows
  auto w = randn<double>({7, 4}, rng, 0.0, 0.8);  // (V, C)
  auto b = randn<double>({7}, rng, 0.0, 0.5);
  const std::vector<std::int64_t> targets = {6, 0, -100, 3, 3, 1};
  for (double smoothing : {0.0, 0.15})
    for (Index chunk : {0, 2, 4}) {  // one chunk, and chunks that split the kept rows unevenly
      const ops::CrossEntropyOptions options{.label_smoothing = smoothing};
      auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
        return ops::linear_cross_entropy(t, in[0], in[1], in[2], targets, options, chunk);
      };
      GradcheckResult r = gradcheck(loss, {x, w, b});
      INFO("label_smoothing ", smoothing, ", chunk_rows ", chunk, ": ", r.report());
      CHECK(r.ok);
    }
}

TEST_CASE_TEMPLATE("linear_cross_entropy: equals linear then cross_entropy (value and gradients)",
                   Real, float, double) {
  Rng rng(42);
  const Index N = 37, C = 16, V = 301;
  auto x_value = randn<Real>({N, C}, rng);
  auto w_value = randn<Real>({V, C}, rng, Real(0), Real(0.5));
  std::vector<std::int64_t> targets(N);
  for (Index i = 0; i < N; ++i) targets[i] = (i % 5 == 2) ? -100 : (i * 97) % V;
  const ops::CrossEntropyOptions options{.label_smoothing = 0.1};
  // Reference: the unfused ops on their own tape.
  Var<Real> x_ref = Var<Real>::parameter(x_value.clone()), w_ref = Var<Real>::parameter(w_value.clone());
  Tape<Real> ref_tape;
  Var<Real> ref = ops::cross_entropy(ref_tape, ops::linear(ref_tape, x_ref, w_ref), targets, options);
  ref_tape.backward(ref);
  for (Index chunk : {0, 1, 8}) {
    Var<Real> x = Var<Real>::parameter(x_value.clone()), w = Var<Real>::parameter(w_value.clone());
    Tape<Real> tape;
    Var<Real> loss = ops::linear_cross_entropy(tape, x, w, Var<Real>(), targets, options, chunk);
    CHECK(loss.item() == doctest::Approx(ref.item()).epsilon(tol<Real>() * 5));
    tape.backward(loss);
    double worst = 0;
    for (Index i = 0; i < x.numel(); ++i)
      worst = std::max(worst, std::abs(double(x.grad()[i] - x_ref.grad()[i])));
    for (Index i = 0; i < w.numel(); ++i)
      worst = std::max(worst, std::abs(double(w.grad()[i] - w_ref.grad()[i])));
    INFO("chunk_rows ", chunk, ": worst gradient difference ", worst);
    CHECK(worst < (sizeof(Real) == 4 ? 1e-6 : 1e-14));
    // Ignored rows get exactly no gradient.
    for (Index c = 0; c < C; ++c) CHECK(x.grad()[2 * C + c] == Real(0));
  }
}

TEST_CASE("linear_cross_entropy: no gradient work under NoGradScope, 0 when all rows are ignored") {
  Rng rng(43);
  Var<float> x = Var<float>::parameter(randn<float>({3, 4}, rng));
  Var<float> w = Var<float>::parameter(randn<float>({5, 4}, rng));
  Tape<float> tape;
  {
    NoGradScope<float> no_grad(tape);
    Var<float> loss = ops::linear_cross_entropy(tape, x, w, Var<float>(), std::vector<std::int64_t>{1, 2, 3});
    CHECK(std::isfinite(loss.item()));
    CHECK_FALSE(loss.requires_grad());
    CHECK(tape.size() == 0);
  }
  Var<float> none = ops::linear_cross_entropy(tape, x, w, Var<float>(), std::vector<std::int64_t>{-100, -100, -100});
  CHECK(none.item() == 0.0f);
  CHECK_THROWS_WITH_AS(
      ops::linear_cross_entropy(tape, x, w, Var<float>(), std::vector<std::int64_t>{0, 5, 1}),
      "linear_cross_entropy: target of row 1 is 5, outside [0, 5) and not ignore_index (-100)",
      IndexError);
  CHECK_THROWS_WITH_AS(
      ops::linear_cross_entropy(tape, x, Var<float>(randn<float>({5, 3}, rng)), Var<float>(),
                                std::vector<std::int64_t>{0, 1, 2}),
      "linear_cross_entropy: x (3, 4) and weight (5, 3) do not fit: need x (..., C) and weight (V, C)",
      ShapeError);
}

TEST_CASE("cross_entropy: bad targets and options name the row, the value and the range") {
  Tape<float> tape;
  Var<float> logits(Tensor<float>({4, 5}));
  CHECK_THROWS_WITH_AS(
      ops::cross_entropy(tape, logits, std::vector<std::int64_t>{0, 1, 2, 7}),
      "cross_entropy: target of row 3 is 7, outside [0, 5) and not ignore_index (-100)",
      IndexError);
  CHECK_THROWS_WITH_AS(
      ops::cross_entropy(tape, logits, std::vector<std::int64_t>{0, -1, 2, 3}),
      "cross_entropy: target of row 1 is -1, outside [0, 5) and not ignore_index (-100)",
      IndexError);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(tape, logits, std::vector<std::int64_t>{0, 1, 2}),
                       "cross_entropy: logits (4, 5) have 4 rows but 3 targets were given",
                       ShapeError);
  const std::vector<std::int64_t> targets = {0, 1, 2, 3};
  CHECK_THROWS_WITH_AS(ops::cross_entropy(tape, logits, targets, {.label_smoothing = 1.5}),
                       "cross_entropy: label_smoothing = 1.5 must be in [0, 1]", ValueError);
}

TEST_CASE_TEMPLATE("mse_loss: mean of squared differences", Real, float, double) {
  Tape<Real> tape;
  Var<Real> pred(Tensor<Real>::from_data({2, 2}, {1, 2, 3, 4}));
  const Tensor<Real> target = Tensor<Real>::from_data({2, 2}, {1.5, 2, 1, 4});
  const double expected = (0.5 * 0.5 + 2 * 2) / 4.0;
  CHECK(ops::mse_loss(tape, pred, target).item() == doctest::Approx(expected).epsilon(tol<Real>()));
  CHECK_THROWS_WITH_AS(ops::mse_loss(tape, pred, Tensor<Real>({4})),
                       "mse_loss: pred has shape (2, 2) but target has shape (4)", ShapeError);
}

TEST_CASE("mse_loss: gradients for pred and target match central differences") {
  Rng rng(33);
  auto pred = randn<double>({3, 4}, rng), target = randn<double>({3, 4}, rng);
  auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return ops::mse_loss(t, in[0], in[1]);
  };
  GradcheckResult r = gradcheck(loss, {pred, target});
  INFO(r.report());
  CHECK(r.ok);
}

// ---------------------------------------------------------------------------
// sum_last, mean_last

TEST_CASE_TEMPLATE("sum_last and mean_last reduce the last dim only", Real, float, double) {
  Tape<Real> tape;
  Var<Real> x(Tensor<Real>::from_data({2, 1, 3}, {1, 2, 3, 4, 5, 6}));
  Var<Real> s = ops::sum_last(tape, x), m = ops::mean_last(tape, x);
  REQUIRE(s.shape() == Shape{2, 1});
  CHECK(s.value()[0] == Real(6));
  CHECK(s.value()[1] == Real(15));
  CHECK(m.value()[1] == doctest::Approx(5).epsilon(tol<Real>()));
  Var<Real> v(Tensor<Real>::from_data({3}, {1, 2, 6}));
  CHECK(ops::mean_last(tape, v).shape() == Shape{});
  CHECK(ops::mean_last(tape, v).item() == doctest::Approx(3).epsilon(tol<Real>()));
}

TEST_CASE("sum_last and mean_last: gradients match central differences") {
  Rng rng(34);
  auto x = randn<double>({2, 3, 4}, rng);
  auto sum_loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::sum_last(t, in[0]));
  };
  auto mean_loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::mean_last(t, in[0]));
  };
  GradcheckResult rs = gradcheck(sum_loss, {x});
  INFO("sum_last: ", rs.report());
  CHECK(rs.ok);
  GradcheckResult rm = gradcheck(mean_loss, {x});
  INFO("mean_last: ", rm.report());
  CHECK(rm.ok);
}

// ---------------------------------------------------------------------------
// Everything together: a 2-layer MLP learns a separable 3-class problem with plain SGD.

TEST_CASE("a 2-layer MLP (linear, gelu, layer_norm, cross_entropy) trains to near-zero loss") {
  // Three Gaussian blobs in the plane, centred on the vertices of a triangle: 30 points each.
  Rng rng(2024);
  const Index per_class = 30, K = 3, N = per_class * K, H = 16;
  Tensor<float> points({N, 2});
  std::vector<std::int64_t> labels(N);
  for (Index i = 0; i < N; ++i) {
    const Index k = i % K;
    const double angle = 2 * 3.14159265358979 * double(k) / double(K);
    points.at({i, 0}) = float(2 * std::cos(angle) + 0.3 * rng.normal());
    points.at({i, 1}) = float(2 * std::sin(angle) + 0.3 * rng.normal());
    labels[static_cast<std::size_t>(i)] = k;
  }
  Var<float> x(points);
  auto w1 = Var<float>::parameter(randn<float>({H, 2}, rng, 0.0f, 0.5f));
  auto b1 = Var<float>::parameter(Tensor<float>({H}));
  auto ln_g = Var<float>::parameter(Tensor<float>::ones({H}));
  auto ln_b = Var<float>::parameter(Tensor<float>({H}));
  auto w2 = Var<float>::parameter(randn<float>({K, H}, rng, 0.0f, 0.5f));
  auto b2 = Var<float>::parameter(Tensor<float>({K}));
  std::vector<Var<float>> params = {w1, b1, ln_g, ln_b, w2, b2};

  Tape<float> tape;
  Rng dropout_rng(5);
  auto step = [&](bool training) {
    Var<float> h = ops::gelu(tape, ops::linear(tape, x, w1, b1), ops::GeluForm::tanh);
    h = ops::dropout(tape, ops::layer_norm(tape, h, ln_g, ln_b), 0.1f, dropout_rng, training);
    return ops::cross_entropy(tape, ops::linear(tape, h, w2, b2), labels);
  };
  const float first_loss = step(false).item();
  tape.clear();
  for (int it = 0; it < 300; ++it) {
    Var<float> loss = step(true);
    tape.backward(loss);
    for (Var<float>& p : params) {  // SGD: p -= lr * dp
      for (Index i = 0; i < p.numel(); ++i) p.value()[i] -= 0.2f * p.grad()[i];
      p.zero_grad();
    }
    tape.clear();
  }
  const float final_loss = step(false).item();
  tape.clear();
  INFO("loss ", first_loss, " -> ", final_loss);
  CHECK(first_loss > 0.5f);
  CHECK(final_loss < 0.05f);
}
