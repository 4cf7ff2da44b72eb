// fourierft/optim/clip.hpp — clip_grad_norm: rescales gradients so their global L2 norm is at most
// max_norm, with torch.nn.utils.clip_grad_norm_'s semantics; returns the norm before clipping.
#pragma once

#include <cmath>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"

namespace fourierft::optim {

// total = sqrt(sum over parameters with a gradient of sum(g²))
// coef  = min(1, max_norm / (total + 1e-6));   every gradient *= coef
// The 1e-6 keeps coef finite for zero gradients and makes the clipped norm slightly below max_norm.
// A NaN/Inf total norm is a ValueError if error_if_nonfinite, else it propagates (as in torch).
template <class Real>
double clip_grad_norm(const std::vector<Var<Real>>& params, double max_norm,
                      bool error_if_nonfinite = false) {
  check(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got ", max_norm);
  double sum_sq = 0;  // in double: millions of squared floats
  for (const Var<Real>& p : params) {
    if (!p.defined() || !p.has_grad()) continue;
    for (Real g : p.grad().data()) sum_sq += static_cast<double>(g) * static_cast<double>(g);
  }
  const double total = std::sqrt(sum_sq);
  check(!error_if_nonfinite || std::isfinite(total), "clip_grad_norm: the total gradient norm is ",
        total);
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0 || std::isnan(coef)) {
    const Real c = static_cast<Real>(coef);
    for (Var<Real> p : params) {  // a copy of the handle: same gradient
      if (!p.defined() || !p.has_grad()) continue;
      for (Real& g : p.grad().data()) g *= c;
    }
  }
  return total;
}

}  // namespace fourierft::optim
