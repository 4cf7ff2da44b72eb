// fourierft/ops/reduce.hpp — sum and mean over all elements (scalar result) or over the last dim.
#pragma once

#include <span>

#include "fourierft/core/tape.hpp"

namespace fourierft::ops {

// ---------------------------------------------------------------------------
// sum: y = sum_i x[i] (shape ());  dx[i] += dy.   mean: y = sum / N;  dx[i] += dy / N.
template <class Real>
Var<Real> sum(Tape<Real>& tape, const Var<Real>& x, Real factor = Real(1)) {
  Var<Real> y = tape.output(Shape{});
  double total = 0;  // accumulate in double: sums of many floats lose digits
  for (Real v : x.data()) total += static_cast<double>(v);
  y.data()[0] = static_cast<Real>(total * static_cast<double>(factor));
  tape.record("sum", {x}, y, [=](std::span<const Real> dy) {
    auto dx = grad_if_needed(x);
    const Real g = dy[0] * factor;
    for (Real& v : dx) v += g;
  });
  return y;
}
template <class Real>
Var<Real> mean(Tape<Real>& tape, const Var<Real>& x) {
  check<ShapeError>(x.numel() > 0, "mean: input is empty, shape ", shape_str(x.shape()));
  return sum(tape, x, Real(1) / static_cast<Real>(x.numel()));
}

}  // namespace fourierft::ops
