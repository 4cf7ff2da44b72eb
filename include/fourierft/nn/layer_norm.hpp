// fourierft/nn/layer_norm.hpp — LayerNorm<Real>: normalisation over the last dim with a learned
// scale `weight` and shift `bias` (torch's nn.LayerNorm; HF keys `ln_1`, `LayerNorm`, `layernorm`).
#pragma once

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/ops/norm.hpp"

namespace fourierft::nn {

// ---------------------------------------------------------------------------
// LayerNorm: x: (..., C) -> y = (x - mean) / sqrt(var + eps) * weight + bias   (ops::layer_norm)
//   weight, bias: (C), initialised to 1 and 0 as in torch. eps comes from the checkpoint's config:
//   GPT-2 `layer_norm_epsilon` (1e-5), RoBERTa / ViT `layer_norm_eps` (1e-5 / 1e-12).
template <class Real>
class LayerNorm : public Module<Real> {
 public:
  Var<Real> weight;  // (C), gamma
  Var<Real> bias;    // (C), beta

  explicit LayerNorm(Index C, double eps = 1e-5) : eps_(eps) {
    check(C > 0, "LayerNorm: C must be positive, got ", C);
    check(eps >= 0.0, "LayerNorm: eps = ", eps, " must be >= 0");
    weight = Var<Real>::parameter(Tensor<Real>::ones({C}));
    bias = Var<Real>::parameter(Tensor<Real>::zeros({C}));
    this->register_parameter("weight", weight);
    this->register_parameter("bias", bias);
  }

  Index normalized_size() const { return weight.size(0); }
  double eps() const { return eps_; }

  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x) const {
    return ops::layer_norm(tape, x, weight, bias, static_cast<Real>(eps_));
  }

 private:
  double eps_;
};

}  // namespace fourierft::nn
