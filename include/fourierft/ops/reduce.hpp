// fourierft/ops/reduce.hpp — sum and mean over all elements (scalar result), and sum_last /
// mean_last over the last dim ((..., C) -> (...), e.g. pooling token features or per-row losses).
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

// ---------------------------------------------------------------------------
// sum_last: x: (N, C) (any leading dims, N = their product) -> y: (N) with the leading shape;
//   y[i] = factor * sum_c x[i, c];   dx[i, c] += factor * dy[i].
// mean_last is sum_last with factor = 1 / C. A 1-D x gives a scalar (shape ()).
template <class Real>
void sum_last_forward(std::span<Real> y, std::span<const Real> x, Index N, Index C, Real factor) {
#pragma omp parallel for if (N * C > 65536)
  for (Index i = 0; i < N; ++i) {
    const Real* row = x.data() + i * C;
    Real total = 0;
    for (Index c = 0; c < C; ++c) total += row[c];
    y[i] = factor * total;
  }
}

template <class Real>
void sum_last_backward(std::span<Real> dx, std::span<const Real> dy, Index N, Index C,
                       Real factor) {
#pragma omp parallel for if (N * C > 65536)
  for (Index i = 0; i < N; ++i) {
    const Real g = factor * dy[i];
    Real* row = dx.data() + i * C;
    for (Index c = 0; c < C; ++c) row[c] += g;
  }
}

template <class Real>
Var<Real> sum_last(Tape<Real>& tape, const Var<Real>& x, Real factor = Real(1)) {
  check<ShapeError>(x.dim() >= 1, "sum_last: x must have at least one dim, got shape ",
                    shape_str(x.shape()));
  const Index C = x.size(-1), N = C == 0 ? 0 : x.numel() / C;
  Var<Real> y = tape.output(Shape(x.shape().begin(), x.shape().end() - 1));
  sum_last_forward<Real>(y.data(), x.data(), N, C, factor);
  tape.record("sum_last", {x}, y, [=](std::span<const Real> dy) {
    auto dx = grad_if_needed(x);
    if (!dx.empty()) sum_last_backward<Real>(dx, dy, N, C, factor);
  });
  return y;
}

template <class Real>
Var<Real> mean_last(Tape<Real>& tape, const Var<Real>& x) {
  check<ShapeError>(x.dim() >= 1 && x.size(-1) > 0, "mean_last: the last dim of x is empty, shape ",
                    shape_str(x.shape()));
  return sum_last(tape, x, Real(1) / static_cast<Real>(x.size(-1)));
}

}  // namespace fourierft::ops
