// fourierft/ops/elementwise.hpp — add, sub, mul, div with trailing-dim broadcasting, and scale;
// the activations gelu (exact and tanh forms), silu and swiglu, tanh, relu; and seeded inverted dropout.
// Broadcasting: the smaller operand's shape is a suffix of the larger's (a bias (C) against (B, T, C))
// or it holds one element (a scalar).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>
#include <type_traits>

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>  // Array::erf()

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/detail/isa.hpp"
#include "fourierft/detail/vector_math.hpp"

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

// Adds the gradient of an operand: dsmall[i % n_small] += dy[i] * factor(i). Same size: one
// parallel pass; broadcast: dy as (rows, n_small), summed row by row (no division per element:
// the modulo made a residual add's backward 6x slower than its forward).
template <class Real, class Factor>
void reduce_broadcast(std::span<Real> dsmall, std::span<const Real> dy, Factor factor) {
  const std::size_t n = dsmall.size(), total = dy.size();
  if (n == total) {
#pragma omp parallel for if (total > 65536)
    for (std::size_t i = 0; i < total; ++i) dsmall[i] += dy[i] * factor(i);
    return;
  }
  for (std::size_t row = 0; row < total; row += n)
    for (std::size_t j = 0; j < n; ++j) dsmall[j] += dy[row + j] * factor(row + j);
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
    } else if (na == n) {  // b repeats: y as (n / nb, nb) rows
#pragma omp parallel for if (n > 65536)
      for (std::size_t row = 0; row < n; row += nb)
        for (std::size_t j = 0; j < nb; ++j) y[row + j] = f(a[row + j], b[j]);
    } else if (nb == n) {
#pragma omp parallel for if (n > 65536)
      for (std::size_t row = 0; row < n; row += na)
        for (std::size_t j = 0; j < na; ++j) y[row + j] = f(a[j], b[row + j]);
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
  const std::size_t na = a.size(), nb = b.size(), n = dy.size();
  auto A = [&](std::size_t i) { return a[na == n ? i : i % na]; };
  auto B = [&](std::size_t i) { return b[nb == n ? i : i % nb]; };
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
  Var<Real> y = tape.output_uninitialized(detail::broadcast_shape(name, a.shape(), b.shape()));
  binary_forward<Real>(op, y.data(), a.data(), b.data());
  const Index y_numel = y.numel();
  tape.record(name, {a, b}, y, [=](std::span<const Real> dy) {
    // Same shapes, add / sub (residual connections): each gradient is ±dy, made on first use.
    if ((op == BinaryOp::add || op == BinaryOp::sub) && a.numel() == y_numel &&
        b.numel() == y_numel) {
      if (a.requires_grad()) const_cast<Var<Real>&>(a).accumulate_grad(dy);
      if (b.requires_grad())
        const_cast<Var<Real>&>(b).accumulate_grad(dy, op == BinaryOp::add ? Real(1) : Real(-1));
      return;
    }
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
  Var<Real> y = tape.output_uninitialized(x.shape());
  auto yd = y.data();
  auto xd = x.data();
  for (std::size_t i = 0; i < xd.size(); ++i) yd[i] = s * xd[i] + shift;
  tape.record("scale", {x}, y, [=](std::span<const Real> dy) {
    auto dx = grad_if_needed(x);
    for (std::size_t i = 0; i < dx.size(); ++i) dx[i] += s * dy[i];
  });
  return y;
}

// ---------------------------------------------------------------------------
// gelu, in the two forms checkpoints use (HF config `hidden_act`):
//   exact ("gelu": RoBERTa, ViT; torch approximate='none'):
//     y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
//     dy/dx = Phi(x) + x * phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//   tanh ("gelu_new": GPT-2; torch approximate='tanh'):
//     y = 0.5 x (1 + t),   t = tanh(u),   u = k (x + 0.044715 x^3),   k = sqrt(2 / pi)
//     dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 * 0.044715 x^2)
//   x, y: any shape, same shape.
enum class GeluForm { exact, tanh };

namespace detail {
template <class Real>
inline constexpr Real gelu_k = static_cast<Real>(0.7978845608028654);  // sqrt(2 / pi)
template <class Real>
inline constexpr Real gelu_c = static_cast<Real>(0.044715);

// 1-D Eigen array views of span pieces: Eigen's tanh is vectorised (~10x std::tanh for float).
template <class Real>
using ArrayMap = Eigen::Map<Eigen::Array<Real, Eigen::Dynamic, 1>>;
template <class Real>
using ConstArrayMap = Eigen::Map<const Eigen::Array<Real, Eigen::Dynamic, 1>>;

// Calls f(begin, count) over [0, n) in chunks of 16384 entries, in parallel when there are more
// than 4: each chunk is one vectorised Eigen expression, the chunks are spread over threads.
template <class F>
void parallel_chunks(Index n, F f) {
  constexpr Index chunk = 16384;
  const Index chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for if (chunks > 4)
  for (Index c = 0; c < chunks; ++c) f(c * chunk, std::min(chunk, n - c * chunk));
}
// Float activations as plain loops over exp_fast, for the AVX-512 level only: there GCC runs them
// 16 wide (~2x Eigen's SSE2 expressions on GELU at GPT-2's shapes, docs/performance.md); below it
// exp_fast's clamp keeps such a loop scalar, so lower levels keep the Eigen expressions. The two
// paths differ by a few ulp (tests/test_dispatch.cpp bounds it); each is deterministic.
template <class Real>
bool activations_as_loops() {
  return std::is_same_v<Real, float> &&
         ::fourierft::detail::active_isa() == ::fourierft::detail::Isa::avx512;
}

// tanh(u) = 1 − 2 / (1 + e^{2u}): absolute error below 3e-7 (exp_fast's ~1 ulp); ±1 at the clamp.
inline float tanh_from_exp(float u) { return 1.0f - 2.0f / (1.0f + exp_fast(2.0f * u)); }

// erf(z) by Abramowitz & Stegun 7.1.26: 1 − t·(a1 + t·(a2 + … + t·a5))·e^{−z²}, t = 1 / (1 + p·|z|),
// with the sign of z; absolute error below 1.5e-7 (+ exp_fast's).
// erf_from_exp_and_gauss also returns e^{−z²} (the Gaussian GELU's backward needs, with z = v/√2).
inline float erf_from_exp_and_gauss(float z, float& gauss) {
  const float a = std::fabs(z);
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  const float poly =
      t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  gauss = exp_fast(-a * a);
  const float r = 1.0f - poly * gauss;
  return z < 0.0f ? -r : r;
}
inline float erf_from_exp(float z) {
  float gauss;
  return erf_from_exp_and_gauss(z, gauss);
}

// f(i) for i in [0, n), chunked over threads, each chunk a loop built for the active ISA.
template <class F>
void parallel_dispatched(Index n, F f) {
  parallel_chunks(n, [&](Index begin, Index count) {
    ::fourierft::detail::run_dispatched([&] {
      for (Index i = begin; i < begin + count; ++i) f(i);
    });
  });
}
}  // namespace detail

template <class Real>
void gelu_forward(GeluForm form, std::span<Real> y, std::span<const Real> x) {
  const Index n = static_cast<Index>(x.size());
  if constexpr (std::is_same_v<Real, float>) {
    if (detail::activations_as_loops<Real>()) {
      const float* xp = x.data();
      float* yp = y.data();
      if (form == GeluForm::exact)
        detail::parallel_dispatched(n, [=](Index i) {
          const float v = xp[i];
          yp[i] = 0.5f * v * (1.0f + detail::erf_from_exp(v * 0.70710678118654752f));
        });
      else
        detail::parallel_dispatched(n, [=](Index i) {
          const float v = xp[i];
          yp[i] = 0.5f * v * (1.0f + detail::tanh_from_exp(detail::gelu_k<float> * (v + detail::gelu_c<float> * v * v * v)));
        });
      return;
    }
  }
  const Real k = detail::gelu_k<Real>, c = detail::gelu_c<Real>;
  const Real inv_sqrt2 = static_cast<Real>(std::numbers::sqrt2 / 2);
  if (form == GeluForm::exact) {
    // Eigen's erf: for float a vectorised rational approximation good to a couple of ulp (~8x
    // std::erf here); for double std::erf, so gradient checks see the exact function.
    detail::parallel_chunks(n, [&](Index begin, Index count) {
      const detail::ConstArrayMap<Real> v(x.data() + begin, count);
      detail::ArrayMap<Real>(y.data() + begin, count) =
          Real(0.5) * v * (Real(1) + (v * inv_sqrt2).erf());
    });
  } else {
    detail::parallel_chunks(n, [&](Index begin, Index count) {
      const detail::ConstArrayMap<Real> v(x.data() + begin, count);
      detail::ArrayMap<Real>(y.data() + begin, count) =
          Real(0.5) * v * (Real(1) + (k * (v + c * v.cube())).tanh());
    });
  }
}

template <class Real>
// (accumulate = false: dx is written, not added to — a gradient made by Var::grad_to_fill.)
void gelu_backward(GeluForm form, std::span<Real> dx, std::span<const Real> dy,
                   std::span<const Real> x, bool accumulate = true) {
  const Index n = static_cast<Index>(dx.size());
  const Real k = detail::gelu_k<Real>, c = detail::gelu_c<Real>;
  const Real inv_sqrt2 = static_cast<Real>(std::numbers::sqrt2 / 2);
  const Real inv_sqrt2pi = static_cast<Real>(std::numbers::inv_sqrtpi * std::numbers::sqrt2 / 2);
  if constexpr (std::is_same_v<Real, float>) {
    if (detail::activations_as_loops<Real>()) {
      const float *xp = x.data(), *gp = dy.data();
      float* dxp = dx.data();
      if (form == GeluForm::exact)
        detail::parallel_dispatched(n, [=](Index i) {
          const float v = xp[i];
          float gauss;  // e^{−v²/2}: the same exponential erf's approximation takes
          const float cdf = 0.5f * (1.0f + detail::erf_from_exp_and_gauss(v * inv_sqrt2, gauss));
          const float pdf = inv_sqrt2pi * gauss;
          const float d = gp[i] * (cdf + v * pdf);
          dxp[i] = accumulate ? dxp[i] + d : d;
        });
      else
        detail::parallel_dispatched(n, [=](Index i) {
          const float v = xp[i];
          // q = 2 / (1 + e^{2u}) = 1 − t, so 1 − t² = q·(2 − q) without cancellation near |t| = 1.
          const float q = 2.0f / (1.0f + detail::exp_fast(2.0f * k * (v + c * v * v * v)));
          const float du = k * (1.0f + 3.0f * c * v * v);
          const float d = gp[i] * (0.5f * (2.0f - q) + 0.5f * v * (q * (2.0f - q)) * du);
          dxp[i] = accumulate ? dxp[i] + d : d;
        });
      return;
    }
  }
  if (form == GeluForm::exact) {
    detail::parallel_chunks(n, [&](Index begin, Index count) {
      const detail::ConstArrayMap<Real> v(x.data() + begin, count), g(dy.data() + begin, count);
      const auto cdf = Real(0.5) * (Real(1) + (v * inv_sqrt2).erf());
      const auto pdf = inv_sqrt2pi * (Real(-0.5) * v.square()).exp();
      if (accumulate)
        detail::ArrayMap<Real>(dx.data() + begin, count) += g * (cdf + v * pdf);
      else
        detail::ArrayMap<Real>(dx.data() + begin, count) = g * (cdf + v * pdf);
    });
  } else {
    detail::parallel_chunks(n, [&](Index begin, Index count) {
      const detail::ConstArrayMap<Real> v(x.data() + begin, count), g(dy.data() + begin, count);
      const auto t = (k * (v + c * v.cube())).tanh().eval();
      const auto du = k * (Real(1) + Real(3) * c * v.square());
      const auto d = g * (Real(0.5) * (Real(1) + t) + Real(0.5) * v * (Real(1) - t.square()) * du);
      if (accumulate)
        detail::ArrayMap<Real>(dx.data() + begin, count) += d;
      else
        detail::ArrayMap<Real>(dx.data() + begin, count) = d;
    });
  }
}

template <class Real>
Var<Real> gelu(Tape<Real>& tape, const Var<Real>& x, GeluForm form = GeluForm::exact) {
  Var<Real> y = tape.output_uninitialized(x.shape());
  gelu_forward<Real>(form, y.data(), x.data());
  tape.record("gelu", {x}, y, [=](std::span<const Real> dy) {
    if (!x.requires_grad()) return;
    bool fresh = false;
    const auto dx = const_cast<Var<Real>&>(x).grad_to_fill(fresh);
    gelu_backward<Real>(form, dx, dy, x.data(), !fresh);
  });
  return y;
}

// ---------------------------------------------------------------------------
// silu (swish): y = x·σ(x), σ(x) = 1 / (1 + exp(-x));  dx += dy·σ(x)·(1 + x·(1 - σ(x))).
// swiglu (the LLaMA family's MLP, HF's act_fn(gate_proj(x)) * up_proj(x) with act silu), fused so
// the (N, intermediate) silu(gate) is never stored:
//   gate, up: (...)  ->  y = silu(gate) · up
//   dgate += dy·up·σ(gate)·(1 + gate·(1 - σ(gate))),   dup += dy·silu(gate)
template <class Real>
void silu_forward(std::span<Real> y, std::span<const Real> x) {
  if constexpr (std::is_same_v<Real, float>) {
    if (detail::activations_as_loops<Real>()) {
      const float* xp = x.data();
      float* yp = y.data();
      detail::parallel_dispatched(static_cast<Index>(x.size()), [=](Index i) {
        yp[i] = xp[i] / (1.0f + detail::exp_fast(-xp[i]));
      });
      return;
    }
  }
  detail::parallel_chunks(static_cast<Index>(x.size()), [&](Index begin, Index count) {
    const detail::ConstArrayMap<Real> v(x.data() + begin, count);
    detail::ArrayMap<Real>(y.data() + begin, count) = v / (Real(1) + (-v).exp());
  });
}

template <class Real>
void silu_backward(std::span<Real> dx, std::span<const Real> dy, std::span<const Real> x) {
  if constexpr (std::is_same_v<Real, float>) {
    if (detail::activations_as_loops<Real>()) {
      const float *xp = x.data(), *gp = dy.data();
      float* dxp = dx.data();
      detail::parallel_dispatched(static_cast<Index>(dx.size()), [=](Index i) {
        const float v = xp[i], sig = 1.0f / (1.0f + detail::exp_fast(-v));
        dxp[i] += gp[i] * sig * (1.0f + v * (1.0f - sig));
      });
      return;
    }
  }
  detail::parallel_chunks(static_cast<Index>(dx.size()), [&](Index begin, Index count) {
    const detail::ConstArrayMap<Real> v(x.data() + begin, count), g(dy.data() + begin, count);
    const auto sig = (Real(1) / (Real(1) + (-v).exp())).eval();
    detail::ArrayMap<Real>(dx.data() + begin, count) += g * sig * (Real(1) + v * (Real(1) - sig));
  });
}

template <class Real>
Var<Real> silu(Tape<Real>& tape, const Var<Real>& x) {
  Var<Real> y = tape.output_uninitialized(x.shape());
  silu_forward<Real>(y.data(), x.data());
  tape.record("silu", {x}, y, [=](std::span<const Real> dy) {
    silu_backward<Real>(grad_if_needed(x), dy, x.data());
  });
  return y;
}

template <class Real>
void swiglu_forward(std::span<Real> y, std::span<const Real> gate, std::span<const Real> up) {
  if constexpr (std::is_same_v<Real, float>) {
    if (detail::activations_as_loops<Real>()) {
      const float *gp = gate.data(), *upp = up.data();
      float* yp = y.data();
      detail::parallel_dispatched(static_cast<Index>(y.size()), [=](Index i) {
        yp[i] = gp[i] / (1.0f + detail::exp_fast(-gp[i])) * upp[i];
      });
      return;
    }
  }
  detail::parallel_chunks(static_cast<Index>(y.size()), [&](Index begin, Index count) {
    const detail::ConstArrayMap<Real> g(gate.data() + begin, count), u(up.data() + begin, count);
    detail::ArrayMap<Real>(y.data() + begin, count) = g / (Real(1) + (-g).exp()) * u;
  });
}

// Empty dgate / dup spans are skipped.
template <class Real>
void swiglu_backward(std::span<Real> dgate, std::span<Real> dup, std::span<const Real> dy,
                     std::span<const Real> gate, std::span<const Real> up) {
  if (dgate.empty() && dup.empty()) return;
  if constexpr (std::is_same_v<Real, float>) {
    if (detail::activations_as_loops<Real>()) {
      const float *gp = gate.data(), *upp = up.data(), *dp = dy.data();
      float *dgp = dgate.data(), *dup_p = dup.data();
      const bool want_gate = !dgate.empty(), want_up = !dup.empty();
      detail::parallel_dispatched(static_cast<Index>(dy.size()), [=](Index i) {
        const float g = gp[i], sig = 1.0f / (1.0f + detail::exp_fast(-g));
        if (want_gate) dgp[i] += dp[i] * upp[i] * sig * (1.0f + g * (1.0f - sig));
        if (want_up) dup_p[i] += dp[i] * g * sig;
      });
      return;
    }
  }
  detail::parallel_chunks(static_cast<Index>(dy.size()), [&](Index begin, Index count) {
    const detail::ConstArrayMap<Real> g(gate.data() + begin, count), u(up.data() + begin, count),
        d(dy.data() + begin, count);
    const auto sig = (Real(1) / (Real(1) + (-g).exp())).eval();
    if (!dgate.empty())
      detail::ArrayMap<Real>(dgate.data() + begin, count) +=
          d * u * sig * (Real(1) + g * (Real(1) - sig));
    if (!dup.empty()) detail::ArrayMap<Real>(dup.data() + begin, count) += d * g * sig;
  });
}

template <class Real>
Var<Real> swiglu(Tape<Real>& tape, const Var<Real>& gate, const Var<Real>& up) {
  check<ShapeError>(gate.shape() == up.shape(), "swiglu: gate has shape ",
                    shape_str(gate.shape()), " but up has ", shape_str(up.shape()));
  Var<Real> y = tape.output_uninitialized(gate.shape());
  swiglu_forward<Real>(y.data(), gate.data(), up.data());
  tape.record("swiglu", {gate, up}, y, [=](std::span<const Real> dy) {
    swiglu_backward<Real>(grad_if_needed(gate), grad_if_needed(up), dy, gate.data(), up.data());
  });
  return y;
}

// ---------------------------------------------------------------------------
// tanh: y = tanh(x);  dx += dy * (1 - y^2)  (from the saved output, no second tanh).
template <class Real>
void tanh_forward(std::span<Real> y, std::span<const Real> x) {
  detail::parallel_chunks(static_cast<Index>(x.size()), [&](Index begin, Index count) {
    detail::ArrayMap<Real>(y.data() + begin, count) =
        detail::ConstArrayMap<Real>(x.data() + begin, count).tanh();
  });
}

template <class Real>
void tanh_backward(std::span<Real> dx, std::span<const Real> dy, std::span<const Real> y) {
  const Index n = static_cast<Index>(dx.size());
#pragma omp parallel for if (n > 65536)
  for (Index i = 0; i < n; ++i) dx[i] += dy[i] * (Real(1) - y[i] * y[i]);
}

template <class Real>
Var<Real> tanh(Tape<Real>& tape, const Var<Real>& x) {
  Var<Real> y = tape.output(x.shape());
  tanh_forward<Real>(y.data(), x.data());
  const Tensor<Real> y_saved = y.value();  // shares storage; not the Var (that would be a cycle)
  tape.record("tanh", {x}, y, [=](std::span<const Real> dy) {
    tanh_backward<Real>(grad_if_needed(x), dy, y_saved.data());
  });
  return y;
}

// ---------------------------------------------------------------------------
// relu: y = max(x, 0);  dx += dy * [x > 0]  (the subgradient at 0 is 0, as in PyTorch).
template <class Real>
void relu_forward(std::span<Real> y, std::span<const Real> x) {
  const Index n = static_cast<Index>(x.size());
#pragma omp parallel for if (n > 65536)
  for (Index i = 0; i < n; ++i) y[i] = x[i] > Real(0) ? x[i] : Real(0);
}

template <class Real>
void relu_backward(std::span<Real> dx, std::span<const Real> dy, std::span<const Real> x) {
  const Index n = static_cast<Index>(dx.size());
#pragma omp parallel for if (n > 65536)
  for (Index i = 0; i < n; ++i)
    if (x[i] > Real(0)) dx[i] += dy[i];
}

template <class Real>
Var<Real> relu(Tape<Real>& tape, const Var<Real>& x) {
  Var<Real> y = tape.output(x.shape());
  relu_forward<Real>(y.data(), x.data());
  tape.record("relu", {x}, y, [=](std::span<const Real> dy) {
    relu_backward<Real>(grad_if_needed(x), dy, x.data());
  });
  return y;
}

// ---------------------------------------------------------------------------
// dropout (inverted): keep[i] = 1 with probability 1 - p, drawn from rng in index order;
//   y = x * keep / (1 - p),   dx += dy * keep / (1 - p).   x, y, keep: same shape.
// The 1/(1-p) at training time keeps E[y] = x, so evaluation is the identity. Masks are
// reproducible: the same seed and shape give the same mask whatever the thread count.
template <class Real>
void dropout_forward(std::span<Real> y, std::span<std::uint8_t> keep, std::span<const Real> x,
                     Real p, Rng& rng) {
  const Real scale = Real(1) / (Real(1) - p);
  const double drop = static_cast<double>(p);
  for (std::size_t i = 0; i < x.size(); ++i) {
    keep[i] = rng.uniform() >= drop ? 1 : 0;  // serial: the draw order defines the mask
    y[i] = keep[i] ? x[i] * scale : Real(0);
  }
}

template <class Real>
void dropout_backward(std::span<Real> dx, std::span<const Real> dy,
                      std::span<const std::uint8_t> keep, Real p) {
  const Real scale = Real(1) / (Real(1) - p);
  const Index n = static_cast<Index>(dx.size());
#pragma omp parallel for if (n > 65536)
  for (Index i = 0; i < n; ++i)
    if (keep[i]) dx[i] += dy[i] * scale;
}

// Returns x itself (no copy, nothing recorded) when !training or p == 0.
template <class Real>
Var<Real> dropout(Tape<Real>& tape, const Var<Real>& x, Real p, Rng& rng, bool training = true) {
  check(p >= Real(0) && p < Real(1), "dropout: p = ", p, " must be in [0, 1)");
  if (!training || p == Real(0)) return x;
  Var<Real> y = tape.output(x.shape());
  Tensor<std::uint8_t> keep(x.shape());  // captured below: alive until tape.clear()
  dropout_forward<Real>(y.data(), keep.data(), x.data(), p, rng);
  tape.record("dropout", {x}, y, [=](std::span<const Real> dy) {
    dropout_backward<Real>(grad_if_needed(x), dy, keep.data(), p);
  });
  return y;
}

}  // namespace fourierft::ops
