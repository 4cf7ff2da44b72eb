// fourierft/core/recompute.hpp — STAND-IN (replaced by branch recompute): activation checkpointing's
// signature only; this version runs the block on the caller's tape and keeps its activations.
#pragma once

#include <utility>

#include "fourierft/core/tape.hpp"

namespace fourierft {

// Block: Var<Real>(Tape<Real>&, const Var<Real>& x). The real version records one node and re-runs
// the block in backward; this stand-in just calls it.
template <class Real, class Block>
Var<Real> recompute(Tape<Real>& tape, const Var<Real>& x, Block&& block) {
  return std::forward<Block>(block)(tape, x);
}

}  // namespace fourierft
