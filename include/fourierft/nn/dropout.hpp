// fourierft/nn/dropout.hpp — Dropout<Real>: torch's nn.Dropout(p) as a Module with its own seeded
// stream, so reseeding (train/seeds.hpp) and train/eval reach every site by walking the tree.
#pragma once

#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/ops/elementwise.hpp"

namespace fourierft::nn {

// Inverted dropout in training mode (keep with probability 1 - p, scale by 1 / (1 - p)), the
// identity in evaluation mode. No parameters: registering it changes no checkpoint key, only
// lists it in named_modules() under HF's name (`attn_dropout`, `dropout`, `drop`).
//   x: any shape -> same shape; the mask is drawn from `rng` in index order.
template <class Real>
class Dropout : public Module<Real> {
 public:
  double p = 0.0;
  Rng rng;  // this site's stream: split from the model's Rng at construction, reseeded per step

  Dropout(double p_drop, Rng stream) : p(p_drop), rng(stream) {}

  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x) {
    return ops::dropout(tape, x, static_cast<Real>(p), rng, this->is_training());
  }
  // The same with the mode given by the caller (code that drives a block's layers itself).
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x, bool training) {
    return ops::dropout(tape, x, static_cast<Real>(p), rng, training);
  }
};

}  // namespace fourierft::nn
