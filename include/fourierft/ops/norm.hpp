// fourierft/ops/norm.hpp — layer_norm over the last dim (GPT-2, RoBERTa, ViT all use it), with the
// kernels layer_norm_forward / layer_norm_backward: OpenMP over rows, no atomics.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"

namespace fourierft::ops {

// ---------------------------------------------------------------------------
// layer_norm over the last dim; N = product of the leading dims (B*T for text).
//   x: (N, C)   gamma, beta: (C)   ->   y: (N, C);   saves mean, rstd: (N)
//   y = (x - mean) * rstd * gamma + beta,   rstd = 1 / sqrt(var + eps)
//   var is the biased variance mean_C((x - mean)^2), as in PyTorch; two passes over the row.
template <class Real>
void layer_norm_forward(std::span<Real> y, std::span<Real> mean, std::span<Real> rstd,
                        std::span<const Real> x, std::span<const Real> gamma,
                        std::span<const Real> beta, Index N, Index C, Real eps) {
  const Real inv_C = Real(1) / static_cast<Real>(C);
#pragma omp parallel for if (N * C > 16384)
  for (Index i = 0; i < N; ++i) {
    const Real* xr = x.data() + i * C;
    Real* yr = y.data() + i * C;
    Real m = 0;
    for (Index c = 0; c < C; ++c) m += xr[c];
    m *= inv_C;
    Real v = 0;
    for (Index c = 0; c < C; ++c) v += (xr[c] - m) * (xr[c] - m);
    const Real r = Real(1) / std::sqrt(v * inv_C + eps);
    for (Index c = 0; c < C; ++c) yr[c] = (xr[c] - m) * r * gamma[c] + beta[c];
    mean[i] = m;
    rstd[i] = r;
  }
}

// g = dy * gamma, xhat = (x - mean) * rstd; an empty output span means "not needed".
//   dx += rstd * (g - mean_C(g) - xhat * mean_C(g * xhat))
//   dgamma += sum_N dy * xhat,   dbeta += sum_N dy
// dx rows are independent: a parallel loop over rows. dgamma/dbeta sum over rows: each of a fixed
// number of row blocks accumulates its own partial (C), then the partials are added in block order,
// so the result does not depend on the thread count and no atomics are needed.
template <class Real>
void layer_norm_backward(std::span<Real> dx, std::span<Real> dgamma, std::span<Real> dbeta,
                         std::span<const Real> dy, std::span<const Real> x,
                         std::span<const Real> gamma, std::span<const Real> mean,
                         std::span<const Real> rstd, Index N, Index C) {
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
    for (Index i = b * N / blocks; i < (b + 1) * N / blocks; ++i) {
      const Real* xr = x.data() + i * C;
      const Real* gr = dy.data() + i * C;
      const Real m = mean[i], r = rstd[i];
      if (need_dx) {
        Real mean_g = 0, mean_gx = 0;  // mean_C(g), mean_C(g * xhat)
        for (Index c = 0; c < C; ++c) {
          const Real g = gr[c] * gamma[c];
          mean_g += g;
          mean_gx += g * (xr[c] - m) * r;
        }
        mean_g *= inv_C;
        mean_gx *= inv_C;
        Real* dxr = dx.data() + i * C;
        for (Index c = 0; c < C; ++c)
          dxr[c] += r * (gr[c] * gamma[c] - mean_g - (xr[c] - m) * r * mean_gx);
      }
      if (pg)
        for (Index c = 0; c < C; ++c) pg[c] += gr[c] * (xr[c] - m) * r;
      if (pb)
        for (Index c = 0; c < C; ++c) pb[c] += gr[c];
    }
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
    layer_norm_backward<Real>(grad_if_needed(x), grad_if_needed(gamma), grad_if_needed(beta), dy,
                              x.data(), gamma.data(), mean.data(), rstd.data(), N, C);
  });
  return y;
}

}  // namespace fourierft::ops
