// tests/gradcheck.hpp — compares a tape's gradients with central differences, in double precision.
// Small inputs are checked entry by entry; large ones along random directions v: <grad, v> against
// (L(x + eps·v) - L(x - eps·v)) / (2·eps).
#pragma once

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/reduce.hpp"

namespace fourierft::testing {

struct GradcheckOptions {
  double eps = 1e-6;
  double rtol = 1e-6;
  double atol = 1e-9;
  Index max_entries = 64;     // inputs with more entries are checked along random directions
  int directions = 6;         // how many random directions for a large input
  std::uint64_t seed = 1234;  // for the directions
};

struct GradcheckResult {
  bool ok = true;
  double worst_error = 0.0;  // |analytic - numeric| - rtol·|numeric|, the largest over all checks
  std::string worst;         // which input and entry/direction, analytic vs numeric
  int checks = 0;
  std::string report() const {
    std::ostringstream out;
    out << (ok ? "gradcheck ok" : "gradcheck FAILED") << " after " << checks
        << " checks; worst: " << worst;
    return out.str();
  }
};

// L = sum(y * probe), probe ~ N(0, 1) seeded: a random projection of the output, so every output
// entry matters (a plain sum hides errors that cancel, e.g. in softmax or layer norm backward).
inline Var<double> project(Tape<double>& t, const Var<double>& y, std::uint64_t seed = 99) {
  Rng rng(seed);
  return ops::sum(t, ops::mul(t, y, randn<double>(y.shape(), rng)));
}

using LossFn = std::function<Var<double>(Tape<double>&, std::span<const Var<double>>)>;

// loss(tape, inputs) must return a scalar Var computed from the inputs with the tape's ops.
inline GradcheckResult gradcheck(const LossFn& loss, std::vector<Tensor<double>> inputs,
                                 GradcheckOptions opt = {}) {
  GradcheckResult result;
  std::vector<Var<double>> vars;
  for (auto& t : inputs) vars.push_back(Var<double>::parameter(t.clone()));
  Tape<double> tape;
  Var<double> l = loss(tape, vars);
  tape.backward(l);
  tape.clear();

  auto evaluate = [&]() {
    Tape<double> t;
    NoGradScope<double> no_grad(t);
    return loss(t, vars).item();
  };
  auto compare = [&](double analytic, double numeric, const std::string& where) {
    const double err = std::abs(analytic - numeric) - opt.rtol * std::abs(numeric);
    ++result.checks;
    if (result.worst.empty() || err > result.worst_error) {
      result.worst_error = err;
      std::ostringstream w;
      w.precision(10);
      w << where << ": analytic " << analytic << " vs numeric " << numeric;
      result.worst = w.str();
    }
    if (!(err <= opt.atol)) result.ok = false;
  };

  Rng rng(opt.seed);
  for (std::size_t k = 0; k < vars.size(); ++k) {
    Tensor<double>& x = vars[k].value();
    const Tensor<double> grad = vars[k].has_grad() ? vars[k].grad() : Tensor<double>(x.shape());
    if (x.numel() <= opt.max_entries) {
      for (Index i = 0; i < x.numel(); ++i) {
        const double saved = x[i];
        x[i] = saved + opt.eps;
        const double plus = evaluate();
        x[i] = saved - opt.eps;
        const double minus = evaluate();
        x[i] = saved;
        compare(grad[i], (plus - minus) / (2 * opt.eps),
                "input " + std::to_string(k) + " entry " + std::to_string(i));
      }
    } else {
      for (int d = 0; d < opt.directions; ++d) {
        Tensor<double> v = randn<double>(x.shape(), rng);
        const Tensor<double> saved = x.clone();
        double analytic = 0;
        for (Index i = 0; i < x.numel(); ++i) analytic += grad[i] * v[i];
        for (Index i = 0; i < x.numel(); ++i) x[i] = saved[i] + opt.eps * v[i];
        const double plus = evaluate();
        for (Index i = 0; i < x.numel(); ++i) x[i] = saved[i] - opt.eps * v[i];
        const double minus = evaluate();
        for (Index i = 0; i < x.numel(); ++i) x[i] = saved[i];
        compare(analytic, (plus - minus) / (2 * opt.eps),
                "input " + std::to_string(k) + " direction " + std::to_string(d));
      }
    }
  }
  return result;
}

}  // namespace fourierft::testing
