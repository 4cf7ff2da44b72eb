// fourierft/ops/softmax.hpp — softmax and log_softmax over the last dim (max-subtracted: stable),
// and the losses: cross_entropy (fused log-softmax, ignore_index, label smoothing) and mse_loss.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"

namespace fourierft::ops {

namespace detail {
// log sum_v exp(row[v]) = max + log sum_v exp(row[v] - max), returned as the pair {max, log-sum}:
// no overflow for large logits, and row[v] - max - logsum keeps its digits in float, where
// rounding max + logsum (say 1002.41) first would cost ~1e-4.
template <class Real>
std::pair<Real, Real> max_and_log_sum_exp(const Real* row, Index V) {
  Real m = row[0];
  for (Index v = 1; v < V; ++v) m = std::max(m, row[v]);
  Real s = 0;
  for (Index v = 0; v < V; ++v) s += std::exp(row[v] - m);
  return {m, std::log(s)};
}

// The last dim of x as V (> 0) and the product of the others as N.
template <class Real>
std::pair<Index, Index> rows_and_width(const char* op, const Var<Real>& x) {
  check<ShapeError>(x.dim() >= 1 && x.size(-1) > 0, op, ": x must have a non-empty last dim, ",
                    "got shape ", shape_str(x.shape()));
  return {x.numel() / x.size(-1), x.size(-1)};
}
}  // namespace detail

// ---------------------------------------------------------------------------
// softmax over the last dim:  x, y: (N, V)
//   y[i, v] = exp(x[i, v] - max_i) / sum_u exp(x[i, u] - max_i)
//   dx[i, v] += y[i, v] * (dy[i, v] - sum_u dy[i, u] * y[i, u])      (from the saved output)
template <class Real>
void softmax_forward(std::span<Real> y, std::span<const Real> x, Index N, Index V) {
#pragma omp parallel for if (N * V > 16384)
  for (Index i = 0; i < N; ++i) {
    const Real* xr = x.data() + i * V;
    Real* yr = y.data() + i * V;
    Real m = xr[0];
    for (Index v = 1; v < V; ++v) m = std::max(m, xr[v]);
    Real s = 0;
    for (Index v = 0; v < V; ++v) s += (yr[v] = std::exp(xr[v] - m));
    const Real inv = Real(1) / s;
    for (Index v = 0; v < V; ++v) yr[v] *= inv;
  }
}

template <class Real>
void softmax_backward(std::span<Real> dx, std::span<const Real> dy, std::span<const Real> y,
                      Index N, Index V) {
#pragma omp parallel for if (N * V > 16384)
  for (Index i = 0; i < N; ++i) {
    const Real* yr = y.data() + i * V;
    const Real* gr = dy.data() + i * V;
    Real dot = 0;
    for (Index v = 0; v < V; ++v) dot += gr[v] * yr[v];
    Real* dxr = dx.data() + i * V;
    for (Index v = 0; v < V; ++v) dxr[v] += yr[v] * (gr[v] - dot);
  }
}

template <class Real>
Var<Real> softmax(Tape<Real>& tape, const Var<Real>& x) {
  const auto [N, V] = detail::rows_and_width("softmax", x);
  Var<Real> y = tape.output(x.shape());
  softmax_forward<Real>(y.data(), x.data(), N, V);
  const Tensor<Real> y_saved = y.value();  // shares storage; not the Var (that would be a cycle)
  tape.record("softmax", {x}, y, [=](std::span<const Real> dy) {
    auto dx = grad_if_needed(x);
    if (!dx.empty()) softmax_backward<Real>(dx, dy, y_saved.data(), N, V);
  });
  return y;
}

// ---------------------------------------------------------------------------
// log_softmax over the last dim:  x, y: (N, V)
//   y[i, v] = x[i, v] - lse_i,   lse_i = log sum_u exp(x[i, u]) = max_i + log sum_u exp(x - max_i)
//   dx[i, v] += dy[i, v] - exp(y[i, v]) * sum_u dy[i, u]
template <class Real>
void log_softmax_forward(std::span<Real> y, std::span<const Real> x, Index N, Index V) {
#pragma omp parallel for if (N * V > 16384)
  for (Index i = 0; i < N; ++i) {
    const Real* xr = x.data() + i * V;
    const auto [m, logsum] = detail::max_and_log_sum_exp(xr, V);
    Real* yr = y.data() + i * V;
    for (Index v = 0; v < V; ++v) yr[v] = (xr[v] - m) - logsum;
  }
}

template <class Real>
void log_softmax_backward(std::span<Real> dx, std::span<const Real> dy, std::span<const Real> y,
                          Index N, Index V) {
#pragma omp parallel for if (N * V > 16384)
  for (Index i = 0; i < N; ++i) {
    const Real* yr = y.data() + i * V;
    const Real* gr = dy.data() + i * V;
    Real total = 0;
    for (Index v = 0; v < V; ++v) total += gr[v];
    Real* dxr = dx.data() + i * V;
    for (Index v = 0; v < V; ++v) dxr[v] += gr[v] - std::exp(yr[v]) * total;
  }
}

template <class Real>
Var<Real> log_softmax(Tape<Real>& tape, const Var<Real>& x) {
  const auto [N, V] = detail::rows_and_width("log_softmax", x);
  Var<Real> y = tape.output(x.shape());
  log_softmax_forward<Real>(y.data(), x.data(), N, V);
  const Tensor<Real> y_saved = y.value();
  tape.record("log_softmax", {x}, y, [=](std::span<const Real> dy) {
    auto dx = grad_if_needed(x);
    if (!dx.empty()) log_softmax_backward<Real>(dx, dy, y_saved.data(), N, V);
  });
  return y;
}

// ---------------------------------------------------------------------------
// cross_entropy, PyTorch's F.cross_entropy(logits, targets, ignore_index=, label_smoothing=) with
// reduction 'mean', the log-softmax fused in (no (N, V) probabilities are stored).
//   logits: (N, V) (any leading dims: (B, T, V) for a language model)   targets: (N) in [0, V)
//   lse_i = log sum_v exp(logits[i, v]) = max_i + logsum_i,   -log p[i, v] = lse_i - logits[i, v]
//   loss_i = (1 - eps) * (lse_i - logits[i, t_i]) + eps * (lse_i - mean_v logits[i, v])
//            (label smoothing: the target distribution is (1 - eps) one-hot + eps uniform)
//   loss = sum_{kept i} loss_i / n_kept;  rows with t_i == ignore_index are not kept;
//          0 when no row is kept (PyTorch returns NaN there; a padded-out batch should not)
//   dlogits[i, v] += dloss / n_kept * (p[i, v] - (1 - eps) [v == t_i] - eps / V)   for kept rows
// The forward saves row_max, logsum: (N); the backward recomputes p = exp(x - row_max - logsum).
struct CrossEntropyOptions {
  Index ignore_index = -100;     // PyTorch's default, and the label HF puts on padding
  double label_smoothing = 0.0;  // eps in [0, 1]
};

namespace detail {
inline Index count_kept(std::span<const std::int64_t> targets, Index ignore_index) {
  return static_cast<Index>(std::count_if(targets.begin(), targets.end(),
                                          [&](std::int64_t t) { return t != ignore_index; }));
}
}  // namespace detail

// Returns the loss and writes row_max, logsum (N). Targets must be in [0, V) or ignore_index (not
// checked here: cross_entropy() checks them).
template <class Real>
Real cross_entropy_forward(std::span<Real> row_max, std::span<Real> logsum,
                           std::span<const Real> logits, std::span<const std::int64_t> targets,
                           Index N, Index V, Index ignore_index, Real eps) {
  std::vector<double> row_loss(static_cast<std::size_t>(N), 0.0);
#pragma omp parallel for if (N * V > 16384)
  for (Index i = 0; i < N; ++i) {
    const Real* xr = logits.data() + i * V;
    const auto [m, ls] = detail::max_and_log_sum_exp(xr, V);
    row_max[i] = m;
    logsum[i] = ls;
    const std::int64_t t = targets[i];
    if (t == ignore_index) continue;
    Real loss = (Real(1) - eps) * ((m - xr[t]) + ls);
    if (eps != Real(0)) {
      Real mean_x = 0;
      for (Index v = 0; v < V; ++v) mean_x += xr[v] - m;
      loss += eps * (ls - mean_x / static_cast<Real>(V));
    }
    row_loss[static_cast<std::size_t>(i)] = static_cast<double>(loss);
  }
  const Index kept = detail::count_kept(targets, ignore_index);
  if (kept == 0) return Real(0);
  double total = 0;  // summed in row order: the same result for any thread count
  for (double l : row_loss) total += l;
  return static_cast<Real>(total / static_cast<double>(kept));
}

template <class Real>
void cross_entropy_backward(std::span<Real> dlogits, Real dloss, std::span<const Real> logits,
                            std::span<const std::int64_t> targets, std::span<const Real> row_max,
                            std::span<const Real> logsum, Index N, Index V, Index ignore_index,
                            Real eps) {
  const Index kept = detail::count_kept(targets, ignore_index);
  if (kept == 0 || dlogits.empty()) return;
  const Real g = dloss / static_cast<Real>(kept), smooth = eps / static_cast<Real>(V);
#pragma omp parallel for if (N * V > 16384)
  for (Index i = 0; i < N; ++i) {
    const std::int64_t t = targets[i];
    if (t == ignore_index) continue;
    const Real* xr = logits.data() + i * V;
    Real* dr = dlogits.data() + i * V;
    const Real m = row_max[i], ls = logsum[i];
    for (Index v = 0; v < V; ++v) dr[v] += g * (std::exp((xr[v] - m) - ls) - smooth);
    dr[t] -= g * (Real(1) - eps);
  }
}

template <class Real>
Var<Real> cross_entropy(Tape<Real>& tape, const Var<Real>& logits,
                        std::span<const std::int64_t> targets, CrossEntropyOptions options = {}) {
  const auto [N, V] = detail::rows_and_width("cross_entropy", logits);
  check<ShapeError>(static_cast<Index>(targets.size()) == N, "cross_entropy: logits ",
                    shape_str(logits.shape()), " have ", N, " rows but ", targets.size(),
                    " targets were given");
  const Index ignore = options.ignore_index;
  for (Index i = 0; i < N; ++i)
    check<IndexError>(targets[i] == ignore || (targets[i] >= 0 && targets[i] < V),
                      "cross_entropy: target of row ", i, " is ", targets[i], ", outside [0, ", V,
                      ") and not ignore_index (", ignore, ")");
  check(options.label_smoothing >= 0.0 && options.label_smoothing <= 1.0,
        "cross_entropy: label_smoothing = ", options.label_smoothing, " must be in [0, 1]");
  const Real eps = static_cast<Real>(options.label_smoothing);

  Tensor<Real> row_max({N}), logsum({N});  // captured below: alive until tape.clear()
  Tensor<std::int64_t> saved_targets = Tensor<std::int64_t>::from_data({N}, targets);
  Var<Real> loss = tape.output(Shape{});
  loss.data()[0] = cross_entropy_forward<Real>(row_max.data(), logsum.data(), logits.data(),
                                               targets, N, V, ignore, eps);
  tape.record("cross_entropy", {logits}, loss, [=](std::span<const Real> dy) {
    cross_entropy_backward<Real>(grad_if_needed(logits), dy[0], logits.data(),
                                 saved_targets.data(), row_max.data(), logsum.data(), N, V, ignore,
                                 eps);
  });
  return loss;
}

// ---------------------------------------------------------------------------
// mse_loss, PyTorch's F.mse_loss with reduction 'mean':  pred, target: same shape (n entries)
//   loss = sum_i (pred[i] - target[i])^2 / n
//   dpred[i] += dloss * 2 (pred[i] - target[i]) / n,   dtarget[i] -= the same
template <class Real>
Real mse_loss_forward(std::span<const Real> pred, std::span<const Real> target) {
  double total = 0;  // in double: many small squares
  for (std::size_t i = 0; i < pred.size(); ++i) {
    const double d = static_cast<double>(pred[i]) - static_cast<double>(target[i]);
    total += d * d;
  }
  return static_cast<Real>(total / static_cast<double>(pred.size()));
}

template <class Real>
void mse_loss_backward(std::span<Real> dpred, std::span<Real> dtarget, Real dloss,
                       std::span<const Real> pred, std::span<const Real> target) {
  const Index n = static_cast<Index>(pred.size());
  const Real g = Real(2) * dloss / static_cast<Real>(n);
#pragma omp parallel for if (n > 65536)
  for (Index i = 0; i < n; ++i) {
    const Real d = g * (pred[i] - target[i]);
    if (!dpred.empty()) dpred[i] += d;
    if (!dtarget.empty()) dtarget[i] -= d;
  }
}

template <class Real>
Var<Real> mse_loss(Tape<Real>& tape, const Var<Real>& pred, const Var<Real>& target) {
  check<ShapeError>(pred.shape() == target.shape(), "mse_loss: pred has shape ",
                    shape_str(pred.shape()), " but target has shape ", shape_str(target.shape()));
  check<ShapeError>(pred.numel() > 0, "mse_loss: pred is empty, shape ", shape_str(pred.shape()));
  Var<Real> loss = tape.output(Shape{});
  loss.data()[0] = mse_loss_forward<Real>(pred.data(), target.data());
  tape.record("mse_loss", {pred, target}, loss, [=](std::span<const Real> dy) {
    mse_loss_backward<Real>(grad_if_needed(pred), grad_if_needed(target), dy[0], pred.data(),
                            target.data());
  });
  return loss;
}
// A constant target (regression labels).
template <class Real>
Var<Real> mse_loss(Tape<Real>& tape, const Var<Real>& pred, const Tensor<Real>& target) {
  return mse_loss(tape, pred, Var<Real>(target));
}

}  // namespace fourierft::ops
