// fourierft/nn/rms_norm.hpp — RMSNorm<Real>: normalisation by the root mean square over the last dim
// with a learned scale `weight` and no bias (HF's LlamaRMSNorm: `input_layernorm`, `model.norm`).
#pragma once

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/ops/norm.hpp"

namespace fourierft::nn {

// ---------------------------------------------------------------------------
// RMSNorm: x: (..., C) -> y = weight * x / sqrt(mean_C(x^2) + eps)   (ops::rms_norm)
//   weight: (C), initialised to 1 as in HF. eps is the config's `rms_norm_eps`.
template <class Real>
class RMSNorm : public Module<Real> {
 public:
  Var<Real> weight;  // (C)

  explicit RMSNorm(Index C, double eps = 1e-6) : eps_(eps) {
    check(C > 0, "RMSNorm: C must be positive, got ", C);
    check(eps >= 0.0, "RMSNorm: eps = ", eps, " must be >= 0");
    weight = Var<Real>::parameter(Tensor<Real>::ones({C}));
    this->register_parameter("weight", weight);
  }

  Index normalized_size() const { return weight.size(0); }
  double eps() const { return eps_; }

  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x) const {
    return ops::rms_norm(tape, x, weight, static_cast<Real>(eps_));
  }

 private:
  double eps_;
};

}  // namespace fourierft::nn
