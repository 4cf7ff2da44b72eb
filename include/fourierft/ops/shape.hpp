// fourierft/ops/shape.hpp — ops that rearrange a tensor without computing: reshape (a view of the
// same storage), transpose and permute (copies). Dims may be negative, counted from the end.
#pragma once

#include <initializer_list>
#include <span>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"

namespace fourierft::ops {

namespace detail {
// A dim in [-ndim, ndim) as an index in [0, ndim); -1 is the last dim (PyTorch's convention).
inline Index wrap_dim(const char* op, const char* arg, Index dim, const Shape& shape) {
  const Index ndim = static_cast<Index>(shape.size());
  if (dim < -ndim || dim >= ndim)  // the message is built only on failure
    throw IndexError(str_cat(op, ": ", arg, " = ", dim, " is out of range for shape ",
                             shape_str(shape), " (expected ", -ndim, " <= ", arg, " < ", ndim,
                             ")"));
  return dim < 0 ? dim + ndim : dim;
}

// Row-major strides of a shape: stride[k] = product of shape[k+1:].
inline std::vector<Index> strides_of(const Shape& shape) {
  std::vector<Index> stride(shape.size(), 1);
  for (std::size_t k = shape.size(); k-- > 1;) stride[k - 1] = stride[k] * shape[k];
  return stride;
}

// dst[y] (=, or += with accumulate) src[x] where y runs over the permuted shape in row-major order
// and x is the same element of src: output dim k is input dim dims[k].
// Parallel over output rows (all dims but the last); each row is one strided walk through src.
template <class Real>
void permute_copy(std::span<Real> dst, std::span<const Real> src, const Shape& src_shape,
                  std::span<const Index> dims, bool accumulate) {
  const std::size_t nd = src_shape.size();
  if (dst.empty()) return;
  if (nd == 0) {
    dst[0] = accumulate ? dst[0] + src[0] : src[0];
    return;
  }
  const std::vector<Index> src_stride = strides_of(src_shape);
  Shape out_shape(nd);
  std::vector<Index> step(nd);  // how far src moves when output index k grows by one
  for (std::size_t k = 0; k < nd; ++k) {
    out_shape[k] = src_shape[static_cast<std::size_t>(dims[k])];
    step[k] = src_stride[static_cast<std::size_t>(dims[k])];
  }
  const Index cols = out_shape.back(), col_step = step.back();
  const Index rows = static_cast<Index>(dst.size()) / cols;
#pragma omp parallel for if (dst.size() > 65536)
  for (Index r = 0; r < rows; ++r) {
    Index offset = 0, rest = r;  // decompose r over the leading output dims, last dim fastest
    for (std::size_t k = nd - 1; k-- > 0;) {
      offset += (rest % out_shape[k]) * step[k];
      rest /= out_shape[k];
    }
    Real* out = dst.data() + r * cols;
    const Real* in = src.data() + offset;
    if (accumulate)
      for (Index c = 0; c < cols; ++c) out[c] += in[c * col_step];
    else
      for (Index c = 0; c < cols; ++c) out[c] = in[c * col_step];
  }
}

// Checks that dims is a permutation of 0..ndim-1 (negative entries allowed) and returns it wrapped.
inline std::vector<Index> check_permutation(const char* op, std::span<const Index> dims,
                                            const Shape& shape) {
  const std::size_t nd = shape.size();
  check<ShapeError>(dims.size() == nd, op, ": dims has ", dims.size(), " entries but the input ",
                    "has shape ", shape_str(shape), " with ", nd, " dims");
  std::vector<Index> wrapped(nd);
  std::vector<bool> seen(nd, false);
  for (std::size_t k = 0; k < nd; ++k) {
    const Index d = wrap_dim(op, "dims entry", dims[k], shape);
    if (seen[static_cast<std::size_t>(d)])
      throw ShapeError(str_cat(op, ": dims is not a permutation: dim ", d, " appears twice (shape ",
                               shape_str(shape), ")"));
    seen[static_cast<std::size_t>(d)] = true;
    wrapped[k] = d;
  }
  return wrapped;
}
}  // namespace detail

// ---------------------------------------------------------------------------
// reshape: y has x's elements in the same row-major order, in a new shape (one dim may be -1).
// y's value shares x's storage (no copy; do not write into it); its gradient is separate.
//   dx += dy (same elements, x's shape)
template <class Real>
Var<Real> reshape(Tape<Real>& tape, const Var<Real>& x, Shape shape) {
  Var<Real> y(x.value().reshape(std::move(shape)));  // throws ShapeError on a size mismatch
  tape.record("reshape", {x}, y, [=](std::span<const Real> dy) {
    auto dx = grad_if_needed(x);
    for (std::size_t i = 0; i < dx.size(); ++i) dx[i] += dy[i];
  });
  return y;
}

// ---------------------------------------------------------------------------
// permute: y = x with its dims reordered; output dim k is input dim dims[k].
//   x: (s_0, ..., s_{n-1})  ->  y: (s_dims[0], ..., s_dims[n-1])   (a copy, row-major)
//   dx += permute(dy, inverse(dims)),   inverse[dims[k]] = k
template <class Real>
void permute_forward(std::span<Real> y, std::span<const Real> x, const Shape& x_shape,
                     std::span<const Index> dims) {
  detail::permute_copy(y, x, x_shape, dims, /*accumulate=*/false);
}

template <class Real>
void permute_backward(std::span<Real> dx, std::span<const Real> dy, const Shape& x_shape,
                      std::span<const Index> dims) {
  if (dx.empty()) return;
  const std::size_t nd = dims.size();
  Shape y_shape(nd);
  std::vector<Index> inverse(nd);
  for (std::size_t k = 0; k < nd; ++k) {
    y_shape[k] = x_shape[static_cast<std::size_t>(dims[k])];
    inverse[static_cast<std::size_t>(dims[k])] = static_cast<Index>(k);
  }
  detail::permute_copy(dx, dy, y_shape, inverse, /*accumulate=*/true);
}

namespace detail {
template <class Real>
Var<Real> permute_op(Tape<Real>& tape, const char* op, const Var<Real>& x,
                     std::vector<Index> dims) {
  const Shape x_shape = x.shape();
  Shape y_shape(dims.size());
  for (std::size_t k = 0; k < dims.size(); ++k)
    y_shape[k] = x_shape[static_cast<std::size_t>(dims[k])];
  Var<Real> y = tape.output(y_shape);
  permute_forward<Real>(y.data(), x.data(), x_shape, dims);
  tape.record(op, {x}, y, [=](std::span<const Real> dy) {
    permute_backward<Real>(grad_if_needed(x), dy, x_shape, dims);
  });
  return y;
}
}  // namespace detail

// permute(x, {0, 2, 1, 3}): (B, T, NH, HS) -> (B, NH, T, HS).
template <class Real>
Var<Real> permute(Tape<Real>& tape, const Var<Real>& x, std::span<const Index> dims) {
  return detail::permute_op(tape, "permute", x,
                            detail::check_permutation("permute", dims, x.shape()));
}
template <class Real>
Var<Real> permute(Tape<Real>& tape, const Var<Real>& x, std::initializer_list<Index> dims) {
  return permute(tape, x, std::span<const Index>(dims.begin(), dims.size()));
}

// transpose(x, dim0, dim1): swaps two dims (a permute), e.g. (B, T, C) -> (B, C, T) with (1, 2).
template <class Real>
Var<Real> transpose(Tape<Real>& tape, const Var<Real>& x, Index dim0, Index dim1) {
  const Index a = detail::wrap_dim("transpose", "dim0", dim0, x.shape());
  const Index b = detail::wrap_dim("transpose", "dim1", dim1, x.shape());
  std::vector<Index> dims(x.shape().size());
  for (std::size_t k = 0; k < dims.size(); ++k) dims[k] = static_cast<Index>(k);
  std::swap(dims[static_cast<std::size_t>(a)], dims[static_cast<std::size_t>(b)]);
  return detail::permute_op(tape, "transpose", x, std::move(dims));
}

}  // namespace fourierft::ops
