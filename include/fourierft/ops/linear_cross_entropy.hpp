// fourierft/ops/linear_cross_entropy.hpp — a language model's output projection and its
// cross-entropy in one op, over chunks of rows, so the (N, V) logits never sit in memory whole.
#pragma once

// GPT-2 small at 8 × 128 tokens has N·V = 1024 × 50257 logits: 206 MB, and as much again for their
// gradient, for a loss that is one number. linear_cross_entropy computes the same value as
//   cross_entropy(linear(x, w, b), targets, options)                       (ops/softmax.hpp)
// one chunk of R rows at a time:
//   logits_c = x_c·wᵀ + b                    (R, V)   one GEMM, into a reused buffer
//   lse_i = log Σ_v exp(logits_c[i, v]);  loss_i as in cross_entropy (label smoothing eps)
// and, when a gradient is needed, turns the chunk's logits into their gradient right away (the loss
// is a scalar, so dL/dlogits = dloss · D with D known in the forward pass):
//   D[i, v] = (softmax_i[v] − eps/V − (1 − eps)[v == t_i]) / n_kept
//   dx_c = D·w (R, C),   dw += Dᵀ·x_c (V, C),   db += Σ_i D[i, :]
// The backward then only scales the saved dx (N_kept, C) — and dw, db when w, b train — by dloss.
// Rows whose target is ignore_index cost nothing (no GEMM row): they have no loss and no gradient.
// FLOPs are those of the unfused forward + backward; memory is R·V (a workspace kept per thread)
// instead of 2·N·V.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/detail/vector_math.hpp"
#include "fourierft/core/half.hpp"
#include "fourierft/detail/bf16_gemm.hpp"
#include "fourierft/detail/gemm.hpp"
#include "fourierft/detail/isa.hpp"
#include "fourierft/ops/softmax.hpp"

namespace fourierft::ops {

namespace detail {

// One row of logits (V) -> its loss term; with `to_gradient`, the row is overwritten by
// g·(softmax − eps/V − (1 − eps)·onehot(t)). The max and the sums run over fixed lanes
// (detail/vector_math.hpp), so they vectorise. Called through cross_entropy_row below.
template <class Real>
Real cross_entropy_row_kernel(Real* row, Index V, std::int64_t t, Real eps, bool to_gradient,
                              Real g) {
  const Real m = max_lanes(row, V);
  const Real shifted_sum =  // Σ (x_v − m), for label smoothing
      eps != Real(0) ? sum_lanes_of<Real>(V, [&](std::ptrdiff_t v) { return row[v] - m; }) : Real(0);
  const Real target_shifted = row[t] - m;
  const Real s = to_gradient ? sum_lanes_of<Real>(V, [&](std::ptrdiff_t v) {
                                 const Real e = exp_fast(row[v] - m);
                                 row[v] = e;
                                 return e;
                               })
                             : sum_lanes_of<Real>(V, [&](std::ptrdiff_t v) { return exp_fast(row[v] - m); });
  const Real ls = std::log(s);
  Real loss = (Real(1) - eps) * (ls - target_shifted);
  if (eps != Real(0)) loss += eps * (ls - shifted_sum / static_cast<Real>(V));
  if (to_gradient) {
    const Real scale = g / s, smooth = g * eps / static_cast<Real>(V);
    for (Index v = 0; v < V; ++v) row[v] = row[v] * scale - smooth;
    row[t] -= g * (Real(1) - eps);
  }
  return loss;
}

// cross_entropy_row_kernel at the CPU's ISA level (detail/isa.hpp; the same bits at every level).
template <class Real>
Real cross_entropy_row(Real* row, Index V, std::int64_t t, Real eps, bool to_gradient, Real g) {
  Real loss = 0;
  fourierft::detail::run_dispatched(
      [&] { loss = cross_entropy_row_kernel(row, V, t, eps, to_gradient, g); });
  return loss;
}

}  // namespace detail

// Rows per chunk when the caller passes 0, for K rows with a loss: at most about 64 MB of logits,
// a multiple of 32 rows, the K rows split into equal chunks. The BLAS splits a GEMM's rows over
// its threads: at 2 threads GPT-2's former chunks of 166 rows ran at 83% of the rate at 256 rows,
// and its 20-row last chunk at 33% (docs/performance.md).
inline Index linear_cross_entropy_chunk_rows(Index V, std::size_t bytes_per_value, Index K) {
  constexpr Index align = 32;
  const auto fit = static_cast<Index>((64u << 20) / (bytes_per_value * static_cast<std::size_t>(V)));
  const Index most = std::max(align, fit / align * align);
  const Index chunks = (K + most - 1) / most;
  const Index even = (K + chunks - 1) / std::max<Index>(chunks, 1);
  return std::min(most, (even + align - 1) / align * align);
}

// ---------------------------------------------------------------------------
// linear_cross_entropy(x, w, b, targets) == cross_entropy(linear(x, w, b), targets) (mean over the
// rows whose target is not ignore_index; 0 when there are none), computed in chunks of rows.
//   x: (N, C) (any leading dims)   w: (V, C) (nn.Linear layout; GPT-2's tied wte)   b: (V) or none
//   targets: (N) in [0, V) or ignore_index   ->   scalar
// chunk_rows: rows per GEMM (0: linear_cross_entropy_chunk_rows, at most about 64 MB of logits).
// w_bf16: the BF16 compute mode (GPT-2's tied head, GPT2LMHeadModel::set_bf16_lm_head): w rounded
// to BF16, (V, C); when given, for float, the logits and dx GEMMs take BF16 operands with FP32
// accumulation (detail/bf16_gemm.hpp). w must then be frozen (it still gives the shapes).
template <class Real>
Var<Real> linear_cross_entropy(Tape<Real>& tape, const Var<Real>& x, const Var<Real>& w,
                               const Var<Real>& bias, std::span<const std::int64_t> targets,
                               CrossEntropyOptions options = {}, Index chunk_rows = 0,
                               const HalfMatrix* w_bf16 = nullptr) {
  check<ShapeError>(w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(1),
                    "linear_cross_entropy: x ", shape_str(x.shape()), " and weight ",
                    shape_str(w.shape()), " do not fit: need x (..., C) and weight (V, C)");
  const Index V = w.size(0), C = w.size(1), N = x.numel() / C;
  if (bias.defined())
    check<ShapeError>(bias.shape() == Shape{V}, "linear_cross_entropy: bias ",
                      shape_str(bias.shape()), " must be (", V, ")");
  check<ShapeError>(static_cast<Index>(targets.size()) == N, "linear_cross_entropy: x ",
                    shape_str(x.shape()), " has ", N, " rows but ", targets.size(),
                    " targets were given");
  const Index ignore = options.ignore_index;
  for (Index i = 0; i < N; ++i)
    check<IndexError>(targets[i] == ignore || (targets[i] >= 0 && targets[i] < V),
                      "linear_cross_entropy: target of row ", i, " is ", targets[i],
                      ", outside [0, ", V, ") and not ignore_index (", ignore, ")");
  check(options.label_smoothing >= 0.0 && options.label_smoothing <= 1.0,
        "linear_cross_entropy: label_smoothing = ", options.label_smoothing, " must be in [0, 1]");
  const Real eps = static_cast<Real>(options.label_smoothing);

  std::vector<Index> kept;  // the rows that have a loss, in order
  for (Index i = 0; i < N; ++i)
    if (targets[i] != ignore) kept.push_back(i);
  const auto K = static_cast<Index>(kept.size());
  const bool need_x = tape.grad_enabled() && x.requires_grad();
  const bool need_w = tape.grad_enabled() && w.requires_grad();
  const bool need_b = tape.grad_enabled() && bias.defined() && bias.requires_grad();
  const bool to_gradient = need_x || need_w || need_b;
  const bool bf16 = std::is_same_v<Real, float> && w_bf16 != nullptr;
  if (w_bf16 != nullptr)
    check<ShapeError>(w_bf16->dtype() == io::Dtype::BF16 && w_bf16->shape() == w.shape() && !need_w,
                      "linear_cross_entropy: the BF16 weight must be a BF16 copy ",
                      shape_str(w_bf16->shape()), " of the frozen weight ", shape_str(w.shape()));
  // x_chunk · wᵀ or D·w: (rows, n_out) = op(A)·op(w), through the BF16 GEMM in the BF16 mode.
  auto gemm_w = [&](bool trans_w, Index rows, Index n_out, Index k, const Real* A, Real beta,
                    Real* out) {
    if constexpr (std::is_same_v<Real, float>) {
      if (bf16) {
        fourierft::detail::bf16_gemm(trans_w, rows, n_out, k, 1.0f, A, k, *w_bf16, beta, out, n_out);
        return;
      }
    }
    fourierft::detail::gemm<Real>(false, trans_w, rows, n_out, k, Real(1), A, k, w.data().data(), C,
                                  beta, out, n_out);
  };
  const Index R = std::min(std::max<Index>(K, 1), chunk_rows > 0 ? chunk_rows
                                                  : linear_cross_entropy_chunk_rows(V, sizeof(Real), K));

  // Saved for the backward pass, already divided by n_kept; scaled by dloss there.
  Tensor<Real> dx_kept(need_x ? Shape{K, C} : Shape{0}), dw_sum(need_w ? Shape{V, C} : Shape{0}),
      db_sum(need_b ? Shape{V} : Shape{0});
  std::vector<double> row_loss(static_cast<std::size_t>(K), 0.0);
  // The chunk's logits (R, V) live in a per-thread workspace kept between calls: at GPT-2's 256
  // rows it is 51 MB, above glibc's largest mmap threshold (core/memory.hpp), so a fresh buffer
  // would be mapped and page-faulted in again every step (12.6k faults per GPT-2 step).
  thread_local std::vector<Real> logits_workspace;
  if (logits_workspace.size() < static_cast<std::size_t>(R * V))
    logits_workspace.resize(static_cast<std::size_t>(R * V));
  const std::span<Real> logits(logits_workspace.data(), static_cast<std::size_t>(R * V));
  std::vector<Real> x_chunk(static_cast<std::size_t>(R * C));
  const Real g = K > 0 ? Real(1) / static_cast<Real>(K) : Real(0);
  const Real* xp = x.data().data();
  for (Index k0 = 0; k0 < K; k0 += R) {
    const Index rows = std::min(R, K - k0);
    for (Index r = 0; r < rows; ++r)  // the chunk's rows of x, gathered: (rows, C)
      std::copy_n(xp + kept[k0 + r] * C, C, x_chunk.data() + r * C);
    if (bias.defined()) {
      for (Index r = 0; r < rows; ++r) std::copy_n(bias.data().data(), V, logits.data() + r * V);
    }
    gemm_w(true, rows, V, C, x_chunk.data(), bias.defined() ? Real(1) : Real(0), logits.data());
#pragma omp parallel for schedule(static) if (rows * V > 65536)
    for (Index r = 0; r < rows; ++r)
      row_loss[static_cast<std::size_t>(k0 + r)] = static_cast<double>(detail::cross_entropy_row<Real>(
          logits.data() + r * V, V, targets[kept[k0 + r]], eps, to_gradient, g));
    if (!to_gradient) continue;
    if (need_x)  // dx_c = D·w : (rows, V)·(V, C)
      gemm_w(false, rows, C, V, logits.data(), Real(0), dx_kept.ptr() + k0 * C);
    if (need_w)  // dw += Dᵀ·x_c : (V, rows)·(rows, C)
      fourierft::detail::gemm<Real>(true, false, V, C, rows, Real(1), logits.data(), V,
                                    x_chunk.data(), C, k0 == 0 ? Real(0) : Real(1), dw_sum.ptr(), C);
    if (need_b)
      for (Index r = 0; r < rows; ++r)
        for (Index v = 0; v < V; ++v) db_sum[v] += logits[static_cast<std::size_t>(r * V + v)];
  }
  double total = 0;  // in row order: the same value for any thread count or chunk size
  for (double l : row_loss) total += l;
  Var<Real> loss = tape.output(Shape{});
  loss.data()[0] = K > 0 ? static_cast<Real>(total / static_cast<double>(K)) : Real(0);
  if (!to_gradient || K == 0) return loss;

  tape.record("linear_cross_entropy", {x, w, bias}, loss, [=](std::span<const Real> dloss) {
    const Real d = dloss[0];
    if (auto dx = grad_if_needed(x); !dx.empty() && need_x) {
#pragma omp parallel for schedule(static) if (K * C > 65536)
      for (Index k = 0; k < K; ++k) {
        Real* dst = dx.data() + kept[k] * C;
        const Real* src = dx_kept.ptr() + k * C;
        for (Index c = 0; c < C; ++c) dst[c] += d * src[c];
      }
    }
    if (auto dw = grad_if_needed(w); !dw.empty() && need_w) {
      const Real* src = dw_sum.ptr();
#pragma omp parallel for schedule(static) if (V * C > 65536)
      for (Index i = 0; i < V * C; ++i) dw[i] += d * src[i];
    }
    if (bias.defined())
      if (auto db = grad_if_needed(bias); !db.empty() && need_b)
        for (Index v = 0; v < V; ++v) db[v] += d * db_sum[v];
  });
  return loss;
}

}  // namespace fourierft::ops
