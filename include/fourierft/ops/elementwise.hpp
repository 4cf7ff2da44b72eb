// fourierft/ops/elementwise.hpp — add, sub, mul, div with trailing-dim broadcasting, and scale.
// Broadcasting: the smaller operand's shape is a suffix of the larger's (a bias (C) against (B, T, C))
// or it holds one element (a scalar).
#pragma once

#include <span>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"

namespace fourierft::ops {

namespace detail {
// Output shape of a broadcast binary op, and the period of each operand (its numel: operand index
// for output element i is i % period).
inline Shape broadcast_shape(const char* op, const Shape& a, const Shape& b) {
  const Index na = numel_of(a), nb = numel_of(b);
  const Shape& big = a.size() >= b.size() ? a : b;
  const Shape& small = a.size() >= b.size() ? b : a;
  if (numel_of(small) == 1) return na >= nb ? a : b;
  bool suffix = small.size() <= big.size();
  for (std::size_t i = 0; suffix && i < small.size(); ++i)
    suffix = small[small.size() - 1 - i] == big[big.size() - 1 - i];
  check<ShapeError>(suffix, op, ": shapes ", shape_str(a), " and ", shape_str(b),
                    " do not broadcast (the smaller must be a trailing part of the larger, or a "
                    "scalar)");
  return big;
}

// Adds the gradient of a broadcast operand: dsmall[i % n_small] += dy[i] * factor(i).
template <class Real, class Factor>
void reduce_broadcast(std::span<Real> dsmall, std::span<const Real> dy, Factor factor) {
  const std::size_t n = dsmall.size();
  for (std::size_t i = 0; i < dy.size(); ++i) dsmall[i % n] += dy[i] * factor(i);
}
}  // namespace detail

// ---------------------------------------------------------------------------
// Binary elementwise ops. y[i] = a[i % Na] (op) b[i % Nb]; y: broadcast shape.
//   add: da += dy, db += dy        sub: da += dy, db -= dy
//   mul: da += dy * b, db += dy * a
//   div: da += dy / b, db -= dy * a / b^2
enum class BinaryOp { add, sub, mul, div };

template <class Real>
void binary_forward(BinaryOp op, std::span<Real> y, std::span<const Real> a,
                    std::span<const Real> b) {
  const std::size_t na = a.size(), nb = b.size(), n = y.size();
  auto run = [&](auto f) {
    if (na == n && nb == n) {
#pragma omp parallel for if (n > 65536)
      for (std::size_t i = 0; i < n; ++i) y[i] = f(a[i], b[i]);
    } else {
#pragma omp parallel for if (n > 65536)
      for (std::size_t i = 0; i < n; ++i) y[i] = f(a[i % na], b[i % nb]);
    }
  };
  switch (op) {
    case BinaryOp::add: run([](Real u, Real v) { return u + v; }); break;
    case BinaryOp::sub: run([](Real u, Real v) { return u - v; }); break;
    case BinaryOp::mul: run([](Real u, Real v) { return u * v; }); break;
    case BinaryOp::div: run([](Real u, Real v) { return u / v; }); break;
  }
}

template <class Real>
void binary_backward(BinaryOp op, std::span<Real> da, std::span<Real> db, std::span<const Real> dy,
                     std::span<const Real> a, std::span<const Real> b) {
  const std::size_t na = a.size(), nb = b.size();
  auto A = [&](std::size_t i) { return a[i % na]; };
  auto B = [&](std::size_t i) { return b[i % nb]; };
  if (!da.empty()) {
    switch (op) {
      case BinaryOp::add:
      case BinaryOp::sub: detail::reduce_broadcast(da, dy, [](std::size_t) { return Real(1); }); break;
      case BinaryOp::mul: detail::reduce_broadcast(da, dy, B); break;
      case BinaryOp::div:
        detail::reduce_broadcast(da, dy, [&](std::size_t i) { return Real(1) / B(i); });
        break;
    }
  }
  if (!db.empty()) {
    switch (op) {
      case BinaryOp::add: detail::reduce_broadcast(db, dy, [](std::size_t) { return Real(1); }); break;
      case BinaryOp::sub: detail::reduce_broadcast(db, dy, [](std::size_t) { return Real(-1); }); break;
      case BinaryOp::mul: detail::reduce_broadcast(db, dy, A); break;
      case BinaryOp::div:
        detail::reduce_broadcast(db, dy, [&](std::size_t i) { return -A(i) / (B(i) * B(i)); });
        break;
    }
  }
}

template <class Real>
Var<Real> binary(Tape<Real>& tape, BinaryOp op, const char* name, const Var<Real>& a,
                 const Var<Real>& b) {
  Var<Real> y = tape.output(detail::broadcast_shape(name, a.shape(), b.shape()));
  binary_forward<Real>(op, y.data(), a.data(), b.data());
  tape.record(name, {a, b}, y, [=](std::span<const Real> dy) {
    binary_backward<Real>(op, grad_if_needed(a), grad_if_needed(b), dy, a.data(), b.data());
  });
  return y;
}

template <class Real>
Var<Real> add(Tape<Real>& tape, const Var<Real>& a, const Var<Real>& b) {
  return binary(tape, BinaryOp::add, "add", a, b);
}
template <class Real>
Var<Real> sub(Tape<Real>& tape, const Var<Real>& a, const Var<Real>& b) {
  return binary(tape, BinaryOp::sub, "sub", a, b);
}
template <class Real>
Var<Real> mul(Tape<Real>& tape, const Var<Real>& a, const Var<Real>& b) {
  return binary(tape, BinaryOp::mul, "mul", a, b);
}
template <class Real>
Var<Real> div(Tape<Real>& tape, const Var<Real>& a, const Var<Real>& b) {
  return binary(tape, BinaryOp::div, "div", a, b);
}
// A constant tensor operand (no gradient): mul(tape, x, probe) in gradient checks and masks.
template <class Real>
Var<Real> mul(Tape<Real>& tape, const Var<Real>& a, const Tensor<Real>& b) {
  return binary(tape, BinaryOp::mul, "mul", a, Var<Real>(b));
}
template <class Real>
Var<Real> add(Tape<Real>& tape, const Var<Real>& a, const Tensor<Real>& b) {
  return binary(tape, BinaryOp::add, "add", a, Var<Real>(b));
}

// ---------------------------------------------------------------------------
// scale: y = s * x + shift;  dx += s * dy.
template <class Real>
Var<Real> scale(Tape<Real>& tape, const Var<Real>& x, Real s, Real shift = Real(0)) {
  Var<Real> y = tape.output(x.shape());
  auto yd = y.data();
  auto xd = x.data();
  for (std::size_t i = 0; i < xd.size(); ++i) yd[i] = s * xd[i] + shift;
  tape.record("scale", {x}, y, [=](std::span<const Real> dy) {
    auto dx = grad_if_needed(x);
    for (std::size_t i = 0; i < dx.size(); ++i) dx[i] += s * dy[i];
  });
  return y;
}

}  // namespace fourierft::ops
