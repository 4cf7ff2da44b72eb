// fourierft/ops/linalg.hpp — matmul (2-D and batched, optional transposes) and linear in both
// weight layouts: PyTorch nn.Linear (d_out, d_in) and GPT-2's Conv1D (d_in, d_out).
// Every product goes through detail::gemm (OpenBLAS or Eigen, chosen at configure time).
#pragma once

#include <algorithm>
#include <span>
#include <type_traits>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/half.hpp"
#include "fourierft/detail/bf16_gemm.hpp"
#include "fourierft/detail/gemm.hpp"
#include "fourierft/detail/half_gemm.hpp"
#include "fourierft/detail/isa.hpp"

namespace fourierft::ops {

// Which way a linear layer stores its weight.
enum class WeightLayout {
  out_in,  // (d_out, d_in): nn.Linear, RoBERTa, ViT;  y = x·Wᵀ + b
  in_out,  // (d_in, d_out): GPT-2 Conv1D;               y = x·W + b
};

// ---------------------------------------------------------------------------
// linear: x: (N, d_in) (any leading dims, N = their product)  W: layout above  b: (d_out) or none
//   y: (N, d_out) = x·Wᵀ + b         (out_in)        = x·W + b   (in_out)
//   dx += dy·W (out_in) or dy·Wᵀ (in_out);  dW += dyᵀ·x (out_in) or xᵀ·dy (in_out);  db += sum_N dy
// Empty gradient spans are skipped: a frozen weight costs no weight-gradient GEMM.
// y[i, :] = b for each of the N rows of y: (N, d_out). The forward GEMMs then add x·Wᵀ to it
// (beta = 1), as torch.addmm does: one write pass over y instead of the BLAS zeroing y (beta = 0)
// and a second pass adding b.
template <class Real>
void fill_rows_with_bias(std::span<Real> y, std::span<const Real> b, Index N, Index d_out) {
#pragma omp parallel for if (N * d_out > 65536)
  for (Index i = 0; i < N; ++i) std::copy_n(b.data(), d_out, y.data() + i * d_out);
}

// y = x·op(W) (+ b): the GEMM writes y (beta = 0), or adds to the bias rows (beta = 1).
template <class Real>
void linear_forward(std::span<Real> y, std::span<const Real> x, std::span<const Real> w,
                    std::span<const Real> b, Index N, Index d_in, Index d_out, WeightLayout layout) {
  const bool out_in = layout == WeightLayout::out_in;
  if (!b.empty()) fill_rows_with_bias(y, b, N, d_out);
  fourierft::detail::gemm<Real>(false, out_in, N, d_out, d_in, Real(1), x.data(), d_in, w.data(),
                                out_in ? d_in : d_out, b.empty() ? Real(0) : Real(1), y.data(),
                                d_out);
}

// db[j] += Σ_i dy[i, j] over the N rows of dy: (N, d_out); nothing when db is empty. Columns are
// split over threads; each thread adds its columns row by row (vectorised along j), so every db[j]
// is summed in row order whatever the thread count.
template <class Real>
void sum_rows_into(std::span<Real> db, std::span<const Real> dy, Index N, Index d_out) {
  if (db.empty()) return;
  constexpr Index block = 256;  // columns per task
  const Index blocks = (d_out + block - 1) / block;
#pragma omp parallel for schedule(static) if (N * d_out > 65536 && blocks > 1)
  for (Index c = 0; c < blocks; ++c) {
    const Index j0 = c * block, j1 = std::min(d_out, j0 + block);
    fourierft::detail::run_dispatched([&] {
      for (Index i = 0; i < N; ++i)
        for (Index j = j0; j < j1; ++j) db[j] += dy[i * d_out + j];
    });
  }
}

// accumulate_dx = false: dx is written (beta = 0), not added to — a gradient made by
// Var::grad_to_fill, which saves zeroing it first.
template <class Real>
void linear_backward(std::span<Real> dx, std::span<Real> dw, std::span<Real> db,
                     std::span<const Real> dy, std::span<const Real> x, std::span<const Real> w,
                     Index N, Index d_in, Index d_out, WeightLayout layout,
                     bool accumulate_dx = true) {
  const bool out_in = layout == WeightLayout::out_in;
  if (!dx.empty())
    fourierft::detail::gemm<Real>(false, !out_in, N, d_in, d_out, Real(1), dy.data(), d_out,
                                  w.data(), out_in ? d_in : d_out, accumulate_dx ? Real(1) : Real(0),
                                  dx.data(), d_in);
  if (!dw.empty()) {
    if (out_in)
      fourierft::detail::gemm<Real>(true, false, d_out, d_in, N, Real(1), dy.data(), d_out,
                                    x.data(), d_in, Real(1), dw.data(), d_in);
    else
      fourierft::detail::gemm<Real>(true, false, d_in, d_out, N, Real(1), x.data(), d_in,
                                    dy.data(), d_out, Real(1), dw.data(), d_out);
  }
  sum_rows_into(db, dy, N, d_out);
}

// Checks x and W against each other and returns {d_in, d_out}.
template <class Real>
std::pair<Index, Index> linear_dims(const char* op, const Var<Real>& x, const Var<Real>& w,
                                    const Var<Real>& b, WeightLayout layout) {
  check<ShapeError>(w.dim() == 2, op, ": weight must be 2-D, got shape ", shape_str(w.shape()));
  check<ShapeError>(x.dim() >= 1, op, ": x must have at least one dim");
  const bool out_in = layout == WeightLayout::out_in;
  const Index d_in = out_in ? w.size(1) : w.size(0), d_out = out_in ? w.size(0) : w.size(1);
  check<ShapeError>(x.size(-1) == d_in, op, ": x has shape ", shape_str(x.shape()), " but weight ",
                    shape_str(w.shape()), " expects last dim ", d_in);
  if (b.defined())
    check<ShapeError>(b.shape() == Shape{d_out}, op, ": bias has shape ", shape_str(b.shape()),
                      " but weight ", shape_str(w.shape()), " needs (", d_out, ")");
  return {d_in, d_out};
}

template <class Real>
Var<Real> linear(Tape<Real>& tape, const Var<Real>& x, const Var<Real>& w,
                 const Var<Real>& b = Var<Real>(), WeightLayout layout = WeightLayout::out_in) {
  const auto dims = linear_dims("linear", x, w, b, layout);  // (not a structured binding: lambdas capture these)
  const Index d_in = dims.first, d_out = dims.second;
  const Index N = x.numel() / d_in;
  Shape out_shape = x.shape();
  out_shape.back() = d_out;
  Var<Real> y = tape.output_uninitialized(out_shape);  // linear_forward writes all of y
  linear_forward<Real>(y.data(), x.data(), w.data(),
                       b.defined() ? b.data() : std::span<const Real>(), N, d_in, d_out, layout);
  tape.record("linear", {x, w, b}, y, [=](std::span<const Real> dy) {
    bool fresh = false;  // x's first gradient is written by the dx GEMM, not zeroed and added to
    const std::span<Real> dx = grad_to_fill_if_needed(x, fresh);
    linear_backward<Real>(dx, grad_if_needed(w), b.defined() ? grad_if_needed(b) : std::span<Real>(),
                          dy, x.data(), w.data(), N, d_in, d_out, layout, !fresh);
  });
  return y;
}

// ---------------------------------------------------------------------------
// half_linear: linear against a frozen 16-bit weight W (HalfMatrix, BF16 / F16; no gradient).
//   x: (N, d_in) (any leading dims)  W: (d_out, d_in) (out_in) or (d_in, d_out) (in_out)  b: (d_out)
//   y = x·Wᵀ + b (out_in)  or  x·W + b (in_out);   dx += dy·W (out_in) or dy·Wᵀ (in_out);
//   db += sum_N dy.  compute = exact: equal to ops::linear on W converted to Real
//   (detail/half_gemm.hpp), up to the order of float additions. compute = bf16 (BF16 W, float):
//   x in forward and dy in backward are rounded to BF16 too, products accumulate in float
//   (detail/bf16_gemm.hpp) — the BF16 compute mode; the bias and its gradient stay float.
namespace detail {
// C = A·op(W) + beta·C through the GEMM `compute` asks for (see half_linear).
template <class Real>
void half_weight_gemm(HalfCompute compute, bool trans_w, Index M, Index N, Index K, const Real* A,
                      const HalfMatrix& w, Real beta, Real* C) {
  if constexpr (std::is_same_v<Real, float>) {
    if (compute == HalfCompute::bf16 && w.dtype() == io::Dtype::BF16) {
      fourierft::detail::bf16_gemm(trans_w, M, N, K, 1.0f, A, K, w, beta, C, N);
      return;
    }
  }
  fourierft::detail::half_gemm<Real>(trans_w, M, N, K, Real(1), A, K, w, beta, C, N);
}
}  // namespace detail

template <class Real>
void half_linear_forward(std::span<Real> y, std::span<const Real> x, const HalfMatrix& w,
                         std::span<const Real> b, Index N, Index d_in, Index d_out,
                         WeightLayout layout, HalfCompute compute = HalfCompute::exact) {
  const bool out_in = layout == WeightLayout::out_in;
  if (!b.empty()) fill_rows_with_bias(y, b, N, d_out);
  detail::half_weight_gemm<Real>(compute, out_in, N, d_out, d_in, x.data(), w,
                                 b.empty() ? Real(0) : Real(1), y.data());
}

template <class Real>
void half_linear_backward(std::span<Real> dx, std::span<Real> db, std::span<const Real> dy,
                          const HalfMatrix& w, Index N, Index d_in, Index d_out,
                          WeightLayout layout, HalfCompute compute = HalfCompute::exact,
                          bool accumulate_dx = true) {
  const bool out_in = layout == WeightLayout::out_in;
  if (!dx.empty())
    detail::half_weight_gemm<Real>(compute, !out_in, N, d_in, d_out, dy.data(), w,
                                   accumulate_dx ? Real(1) : Real(0), dx.data());
  sum_rows_into(db, dy, N, d_out);
}

template <class Real>
Var<Real> half_linear(Tape<Real>& tape, const Var<Real>& x, const HalfMatrix& w,
                      const Var<Real>& b = Var<Real>(),
                      WeightLayout layout = WeightLayout::out_in,
                      HalfCompute compute = HalfCompute::exact) {
  check<ShapeError>(w.defined() && w.has_data(), "half_linear: the weight has no data");
  check<ShapeError>(x.dim() >= 1, "half_linear: x must have at least one dim");
  const bool out_in = layout == WeightLayout::out_in;
  const Index d_in = out_in ? w.cols() : w.rows(), d_out = out_in ? w.rows() : w.cols();
  check<ShapeError>(x.size(-1) == d_in, "half_linear: x has shape ", shape_str(x.shape()),
                    " but weight ", shape_str(w.shape()), " expects last dim ", d_in);
  if (b.defined())
    check<ShapeError>(b.shape() == Shape{d_out}, "half_linear: bias has shape ",
                      shape_str(b.shape()), " but weight ", shape_str(w.shape()), " needs (",
                      d_out, ")");
  const Index N = x.numel() / d_in;
  Shape out_shape = x.shape();
  out_shape.back() = d_out;
  Var<Real> y = tape.output_uninitialized(out_shape);  // half_linear_forward writes all of y
  half_linear_forward<Real>(y.data(), x.data(), w,
                            b.defined() ? b.data() : std::span<const Real>(), N, d_in, d_out,
                            layout, compute);
  tape.record("half_linear", {x, b}, y, [=](std::span<const Real> dy) {
    bool fresh = false;  // x's first gradient is written by the dx GEMM, not zeroed and added to
    const std::span<Real> dx = grad_to_fill_if_needed(x, fresh);
    half_linear_backward<Real>(dx, b.defined() ? grad_if_needed(b) : std::span<Real>(), dy, w, N,
                               d_in, d_out, layout, compute, !fresh);
  });
  return y;
}

// ---------------------------------------------------------------------------
// matmul: a: (..., M, K) (or (..., K, M) with trans_a), b: (..., K, N) (or (..., N, K) with trans_b)
// with equal batch dims, or b 2-D (shared by every batch).   y: (..., M, N) = op(a)·op(b)
//   da += dy·op(b)ᵀ (stored back in a's layout),  db += op(a)ᵀ·dy (summed over batches if shared)
template <class Real>
Var<Real> matmul(Tape<Real>& tape, const Var<Real>& a, const Var<Real>& b, bool trans_a = false,
                 bool trans_b = false) {
  check<ShapeError>(a.dim() >= 2 && b.dim() >= 2, "matmul: a ", shape_str(a.shape()), " and b ",
                    shape_str(b.shape()), " must both be at least 2-D");
  const Index M = trans_a ? a.size(-1) : a.size(-2), K = trans_a ? a.size(-2) : a.size(-1);
  const Index Kb = trans_b ? b.size(-1) : b.size(-2), N = trans_b ? b.size(-2) : b.size(-1);
  check<ShapeError>(K == Kb, "matmul: a ", shape_str(a.shape()), (trans_a ? " (transposed)" : ""),
                    " and b ", shape_str(b.shape()), (trans_b ? " (transposed)" : ""),
                    " have inner dims ", K, " and ", Kb);
  const Index batches = a.numel() / (M * K == 0 ? 1 : M * K);
  const bool shared_b = b.dim() == 2 && a.dim() > 2;
  if (!shared_b) {
    check<ShapeError>(Shape(a.shape().begin(), a.shape().end() - 2) ==
                          Shape(b.shape().begin(), b.shape().end() - 2),
                      "matmul: batch dims of a ", shape_str(a.shape()), " and b ",
                      shape_str(b.shape()), " differ");
  }
  Shape out_shape(a.shape().begin(), a.shape().end() - 2);
  out_shape.push_back(M);
  out_shape.push_back(N);
  Var<Real> y = tape.output_uninitialized(out_shape);  // each batch's GEMM (beta = 0) writes it
  const Index a_step = M * K, b_step = shared_b ? 0 : K * N, y_step = M * N;
  const Index lda = trans_a ? M : K, ldb = trans_b ? K : N;
  for (Index i = 0; i < batches; ++i)
    fourierft::detail::gemm<Real>(trans_a, trans_b, M, N, K, Real(1), a.data().data() + i * a_step,
                                  lda, b.data().data() + i * b_step, ldb, Real(0),
                                  y.data().data() + i * y_step, N);
  tape.record("matmul", {a, b}, y, [=](std::span<const Real> dy) {
    auto da = grad_if_needed(a);
    auto db = grad_if_needed(b);
    for (Index i = 0; i < batches; ++i) {
      const Real* A = a.data().data() + i * a_step;
      const Real* B = b.data().data() + i * b_step;
      const Real* G = dy.data() + i * y_step;
      if (!da.empty()) {  // dA (M, K) = G·op(B)ᵀ; stored transposed: dAᵀ (K, M) = op(B)·Gᵀ
        if (!trans_a)
          fourierft::detail::gemm<Real>(false, !trans_b, M, K, N, Real(1), G, N, B, ldb, Real(1),
                                        da.data() + i * a_step, K);
        else
          fourierft::detail::gemm<Real>(trans_b, true, K, M, N, Real(1), B, ldb, G, N, Real(1),
                                        da.data() + i * a_step, M);
      }
      if (!db.empty()) {  // dB (K, N) = op(A)ᵀ·G; stored transposed: dBᵀ (N, K) = Gᵀ·op(A)
        if (!trans_b)
          fourierft::detail::gemm<Real>(!trans_a, false, K, N, M, Real(1), A, lda, G, N, Real(1),
                                        db.data() + i * b_step, N);
        else
          fourierft::detail::gemm<Real>(true, trans_a, N, K, M, Real(1), G, N, A, lda, Real(1),
                                        db.data() + i * b_step, K);
      }
    }
  });
  return y;
}

}  // namespace fourierft::ops
