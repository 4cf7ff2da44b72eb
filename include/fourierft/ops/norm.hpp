// fourierft/ops/norm.hpp — layer_norm (GPT-2, RoBERTa, ViT) and rms_norm (the LLaMA family) over the
// last dim, with their kernels <op>_forward / <op>_backward: OpenMP over rows, no atomics.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/detail/isa.hpp"
#include "fourierft/detail/vector_math.hpp"

namespace fourierft::ops {

// ---------------------------------------------------------------------------
// layer_norm over the last dim; N = product of the leading dims (B*T for text).
//   x: (N, C)   gamma, beta: (C)   ->   y: (N, C);   saves mean, rstd: (N)
//   y = (x - mean) * rstd * gamma + beta,   rstd = 1 / sqrt(var + eps)
//   var is the biased variance mean_C((x - mean)^2), as in PyTorch; two passes over the row.
// Row sums run in 8 fixed lanes (detail::sum_lanes_of): vectorised, and the same bits at every
// ISA level.
template <class Real>
void layer_norm_forward(std::span<Real> y, std::span<Real> mean, std::span<Real> rstd,
                        std::span<const Real> x, std::span<const Real> gamma,
                        std::span<const Real> beta, Index N, Index C, Real eps) {
  const Real inv_C = Real(1) / static_cast<Real>(C);
#pragma omp parallel for if (N * C > 16384)
  for (Index i = 0; i < N; ++i) {
    fourierft::detail::run_dispatched([&] {  // the row at the CPU's ISA level (detail/isa.hpp)
      const Real* xr = x.data() + i * C;
      Real* yr = y.data() + i * C;
      const Real m = detail::sum_lanes(xr, C) * inv_C;
      const Real v =
          detail::sum_lanes_of<Real>(C, [&](Index c) { return (xr[c] - m) * (xr[c] - m); });
      const Real r = Real(1) / std::sqrt(v * inv_C + eps);
      for (Index c = 0; c < C; ++c) yr[c] = (xr[c] - m) * r * gamma[c] + beta[c];
      mean[i] = m;
      rstd[i] = r;
    });
  }
}

// g = dy * gamma, xhat = (x - mean) * rstd; an empty output span means "not needed".
//   dx += rstd * (g - mean_C(g) - xhat * mean_C(g * xhat))   (dx = ... with accumulate_dx false:
//                                                             a gradient made by grad_to_fill)
//   dgamma += sum_N dy * xhat,   dbeta += sum_N dy
// dx rows are independent: a parallel loop over rows. dgamma/dbeta sum over rows: each of a fixed
// number of row blocks accumulates its own partial (C), then the partials are added in block order,
// so the result does not depend on the thread count and no atomics are needed.
template <class Real>
void layer_norm_backward(std::span<Real> dx, std::span<Real> dgamma, std::span<Real> dbeta,
                         std::span<const Real> dy, std::span<const Real> x,
                         std::span<const Real> gamma, std::span<const Real> mean,
                         std::span<const Real> rstd, Index N, Index C, bool accumulate_dx = true) {
  const bool need_dx = !dx.empty(), need_dgamma = !dgamma.empty(), need_dbeta = !dbeta.empty();
  if ((!need_dx && !need_dgamma && !need_dbeta) || N == 0) return;
  const Real inv_C = Real(1) / static_cast<Real>(C);
  const Index blocks = std::min<Index>(N, 64);
  std::vector<Real> part_gamma(need_dgamma ? blocks * C : 0);
  std::vector<Real> part_beta(need_dbeta ? blocks * C : 0);

#pragma omp parallel for schedule(static) if (N * C > 16384)
  for (Index b = 0; b < blocks; ++b) {
    Real* pg = need_dgamma ? part_gamma.data() + b * C : nullptr;
    Real* pb = need_dbeta ? part_beta.data() + b * C : nullptr;
    fourierft::detail::run_dispatched([&] {  // the block at the CPU's ISA level (detail/isa.hpp)
      for (Index i = b * N / blocks; i < (b + 1) * N / blocks; ++i) {
        const Real* xr = x.data() + i * C;
        const Real* gr = dy.data() + i * C;
        const Real m = mean[i], r = rstd[i];
        if (need_dx) {
          const Real mean_g =  // mean_C(g), mean_C(g * xhat)
              detail::sum_lanes_of<Real>(C, [&](Index c) { return gr[c] * gamma[c]; }) * inv_C;
          const Real mean_gx = detail::sum_lanes_of<Real>(C, [&](Index c) {
                                 return gr[c] * gamma[c] * (xr[c] - m) * r;
                               }) * inv_C;
          Real* dxr = dx.data() + i * C;
          if (accumulate_dx)
            for (Index c = 0; c < C; ++c)
              dxr[c] += r * (gr[c] * gamma[c] - mean_g - (xr[c] - m) * r * mean_gx);
          else
            for (Index c = 0; c < C; ++c)
              dxr[c] = r * (gr[c] * gamma[c] - mean_g - (xr[c] - m) * r * mean_gx);
        }
        if (pg)
          for (Index c = 0; c < C; ++c) pg[c] += gr[c] * (xr[c] - m) * r;
        if (pb)
          for (Index c = 0; c < C; ++c) pb[c] += gr[c];
      }
    });
  }
  // Sum the block partials in block order; parallel over channels (each owns its output entry).
#pragma omp parallel for if (blocks * C > 16384)
  for (Index c = 0; c < C; ++c) {
    if (need_dgamma) {
      Real s = 0;
      for (Index b = 0; b < blocks; ++b) s += part_gamma[b * C + c];
      dgamma[c] += s;
    }
    if (need_dbeta) {
      Real s = 0;
      for (Index b = 0; b < blocks; ++b) s += part_beta[b * C + c];
      dbeta[c] += s;
    }
  }
}

// x: (..., C), gamma and beta: (C). eps defaults to PyTorch's 1e-5; checkpoints state their own
// (GPT-2 `layer_norm_epsilon` 1e-5, RoBERTa `layer_norm_eps` 1e-5, ViT 1e-12): pass it through.
template <class Real>
Var<Real> layer_norm(Tape<Real>& tape, const Var<Real>& x, const Var<Real>& gamma,
                     const Var<Real>& beta, Real eps = Real(1e-5)) {
  check<ShapeError>(x.dim() >= 1 && x.size(-1) > 0,
                    "layer_norm: x must have a non-empty last dim, got shape ",
                    shape_str(x.shape()));
  const Index C = x.size(-1), N = x.numel() / C;
  check<ShapeError>(gamma.shape() == Shape{C}, "layer_norm: gamma has shape ",
                    shape_str(gamma.shape()), " but x ", shape_str(x.shape()), " needs (", C, ")");
  check<ShapeError>(beta.shape() == Shape{C}, "layer_norm: beta has shape ",
                    shape_str(beta.shape()), " but x ", shape_str(x.shape()), " needs (", C, ")");
  check(eps >= Real(0), "layer_norm: eps = ", eps, " must be >= 0");
  Tensor<Real> mean({N}), rstd({N});  // captured below: alive until tape.clear()
  Var<Real> y = tape.output_uninitialized(x.shape());  // every row written
  layer_norm_forward<Real>(y.data(), mean.data(), rstd.data(), x.data(), gamma.data(),
                           beta.data(), N, C, eps);
  tape.record("layer_norm", {x, gamma, beta}, y, [=](std::span<const Real> dy) {
    bool fresh = false;  // x's first gradient is written, not zeroed and added to
    const std::span<Real> dx = grad_to_fill_if_needed(x, fresh);
    layer_norm_backward<Real>(dx, grad_if_needed(gamma), grad_if_needed(beta), dy, x.data(),
                              gamma.data(), mean.data(), rstd.data(), N, C, !fresh);
  });
  return y;
}

// ---------------------------------------------------------------------------
// rms_norm over the last dim (LlamaRMSNorm, T5's layer norm): no mean, no bias.
//   x: (N, C)   weight: (C)   ->   y: (N, C);   saves rstd: (N)
//   y = weight * x * rstd,   rstd = 1 / sqrt(mean_C(x^2) + eps)
// HF computes it in float32 (upcasting half inputs) and multiplies by the weight after casting back:
// with float activations that is this formula in float. The sum of squares is accumulated in
// double, so a wide row (C = 4096) loses nothing to the order of the additions. Sums run in 8 fixed
// lanes (detail::sum_lanes_of), so every ISA level (detail/isa.hpp) gives the same bits.
template <class Real>
void rms_norm_forward(std::span<Real> y, std::span<Real> rstd, std::span<const Real> x,
                      std::span<const Real> weight, Index N, Index C, Real eps) {
#pragma omp parallel for if (N * C > 16384)
  for (Index i = 0; i < N; ++i) {
    fourierft::detail::run_dispatched([&] {  // the row at the CPU's ISA level
      const Real* xr = x.data() + i * C;
      Real* yr = y.data() + i * C;
      const double sum_sq = detail::sum_lanes_of<double>(
          C, [&](Index c) { return static_cast<double>(xr[c]) * xr[c]; });
      const Real r = static_cast<Real>(
          1.0 / std::sqrt(sum_sq / static_cast<double>(C) + static_cast<double>(eps)));
      for (Index c = 0; c < C; ++c) yr[c] = weight[c] * (xr[c] * r);
      rstd[i] = r;
    });
  }
}

// g = dy * weight; an empty output span means "not needed".
//   dx += rstd * g - x * rstd^3 * mean_C(g * x)        (d rstd / d x_k = -rstd^3 x_k / C)
//   dweight += sum_N dy * x * rstd
// dweight sums over rows in a fixed number of row blocks, added in block order (as layer_norm):
// the result does not depend on the thread count.
template <class Real>
void rms_norm_backward(std::span<Real> dx, std::span<Real> dweight, std::span<const Real> dy,
                       std::span<const Real> x, std::span<const Real> weight,
                       std::span<const Real> rstd, Index N, Index C) {
  const bool need_dx = !dx.empty(), need_dw = !dweight.empty();
  if ((!need_dx && !need_dw) || N == 0) return;
  const Real inv_C = Real(1) / static_cast<Real>(C);
  const Index blocks = need_dw ? std::min<Index>(N, 64) : std::min<Index>(N, 256);
  std::vector<Real> part(need_dw ? blocks * C : 0);
#pragma omp parallel for schedule(static) if (N * C > 16384)
  for (Index b = 0; b < blocks; ++b) {
    Real* pw = need_dw ? part.data() + b * C : nullptr;
    fourierft::detail::run_dispatched([&] {  // the block at the CPU's ISA level
      for (Index i = b * N / blocks; i < (b + 1) * N / blocks; ++i) {
        const Real* xr = x.data() + i * C;
        const Real* gr = dy.data() + i * C;
        const Real r = rstd[i];
        if (need_dx) {
          const Real mean_gx = detail::sum_lanes_of<Real>(
              C, [&](Index c) { return gr[c] * weight[c] * xr[c]; });
          const Real k = r * r * r * mean_gx * inv_C;
          Real* dxr = dx.data() + i * C;
          for (Index c = 0; c < C; ++c) dxr[c] += r * gr[c] * weight[c] - xr[c] * k;
        }
        if (pw)
          for (Index c = 0; c < C; ++c) pw[c] += gr[c] * xr[c] * r;
      }
    });
  }
  if (!need_dw) return;
#pragma omp parallel for if (blocks * C > 16384)
  for (Index c = 0; c < C; ++c) {
    Real s = 0;
    for (Index b = 0; b < blocks; ++b) s += part[b * C + c];
    dweight[c] += s;
  }
}

// x: (..., C), weight: (C); eps from the config (`rms_norm_eps`: Llama-2 1e-5, HF's default 1e-6).
// Qwen3's q_norm / k_norm normalise each head: x viewed as (..., heads, head_dim), C = head_dim.
template <class Real>
Var<Real> rms_norm(Tape<Real>& tape, const Var<Real>& x, const Var<Real>& weight,
                   Real eps = Real(1e-6)) {
  check<ShapeError>(x.dim() >= 1 && x.size(-1) > 0,
                    "rms_norm: x must have a non-empty last dim, got shape ", shape_str(x.shape()));
  const Index C = x.size(-1), N = x.numel() / C;
  check<ShapeError>(weight.shape() == Shape{C}, "rms_norm: weight has shape ",
                    shape_str(weight.shape()), " but x ", shape_str(x.shape()), " needs (", C, ")");
  check(eps >= Real(0), "rms_norm: eps = ", eps, " must be >= 0");
  Tensor<Real> rstd({N});  // captured below: alive until tape.clear()
  Var<Real> y = tape.output_uninitialized(x.shape());  // every row written
  rms_norm_forward<Real>(y.data(), rstd.data(), x.data(), weight.data(), N, C, eps);
  tape.record("rms_norm", {x, weight}, y, [=](std::span<const Real> dy) {
    rms_norm_backward<Real>(grad_if_needed(x), grad_if_needed(weight), dy, x.data(),
                            weight.data(), rstd.data(), N, C);
  });
  return y;
}

}  // namespace fourierft::ops
