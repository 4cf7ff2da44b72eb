// fourierft/ops/indexing.hpp — ops that pick parts of tensors: embedding (rows of a table by id),
// narrow (a slice of one dim), select (one index of one dim, e.g. the CLS token) and concat.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/ops/shape.hpp"

namespace fourierft::ops {

namespace detail {
// Views a shape around one dim as (outer, shape[dim], inner): outer = product of the dims before,
// inner = product of the dims after. Every op here works on that 3-d view.
inline std::pair<Index, Index> outer_inner(const Shape& shape, Index dim) {
  Index outer = 1, inner = 1;
  for (Index k = 0; k < static_cast<Index>(shape.size()); ++k) {
    if (k < dim) outer *= shape[static_cast<std::size_t>(k)];
    if (k > dim) inner *= shape[static_cast<std::size_t>(k)];
  }
  return {outer, inner};
}

// "(1, 3)": the multi-index of flat position n in a row-major shape (for error messages).
inline std::string position_str(Index n, const Shape& shape) {
  Shape index(shape.size());
  for (std::size_t k = shape.size(); k-- > 0;) {
    index[k] = shape[k] == 0 ? 0 : n % shape[k];
    n = shape[k] == 0 ? 0 : n / shape[k];
  }
  return shape_str(index);
}
}  // namespace detail

// ---------------------------------------------------------------------------
// embedding: rows of a table looked up by id (token or position embeddings).
//   weight: (V, C)   ids: N = numel(ids_shape) integers in [0, V)   ->   y: (ids_shape..., C)
//   y[n, :] = weight[ids[n], :]
//   dweight[ids[n], :] += dy[n, :]   (scatter-add: a repeated id sums its rows)
template <class Real>
void embedding_forward(std::span<Real> y, std::span<const Real> weight,
                       std::span<const std::int64_t> ids, Index C) {
  const Index N = static_cast<Index>(ids.size());
#pragma omp parallel for if (N * C > 65536)
  for (Index n = 0; n < N; ++n)
    std::copy_n(weight.data() + ids[static_cast<std::size_t>(n)] * C, C, y.data() + n * C);
}

// Repeated ids make rows of dweight collide, so threads split the columns instead: each owns a
// block of columns of every row and walks all N ids. No atomics, and the sum order per entry is
// fixed (deterministic for any thread count).
template <class Real>
void embedding_backward(std::span<Real> dweight, std::span<const Real> dy,
                        std::span<const std::int64_t> ids, Index C) {
  if (dweight.empty()) return;
  const Index N = static_cast<Index>(ids.size());
  constexpr Index block = 64;  // columns per work item: 256 contiguous bytes of a float row
  const Index blocks = (C + block - 1) / block;
#pragma omp parallel for schedule(static) if (N * C > 65536)
  for (Index cb = 0; cb < blocks; ++cb) {
    const Index c0 = cb * block, c1 = std::min(C, c0 + block);
    for (Index n = 0; n < N; ++n) {
      Real* row = dweight.data() + ids[static_cast<std::size_t>(n)] * C;
      const Real* g = dy.data() + n * C;
      for (Index c = c0; c < c1; ++c) row[c] += g[c];
    }
  }
}

template <class Real>
Var<Real> embedding(Tape<Real>& tape, const Var<Real>& weight, std::span<const std::int64_t> ids,
                    const Shape& ids_shape) {
  check<ShapeError>(weight.dim() == 2, "embedding: weight must be 2-D (V, C), got shape ",
                    shape_str(weight.shape()));
  const Index V = weight.size(0), C = weight.size(1), N = numel_of(ids_shape);
  check<ShapeError>(static_cast<Index>(ids.size()) == N, "embedding: ids_shape ",
                    shape_str(ids_shape), " holds ", N, " ids but ", ids.size(), " were given");
  for (Index n = 0; n < N; ++n) {  // (the message is built only on failure: this loop is hot)
    const std::int64_t id = ids[static_cast<std::size_t>(n)];
    if (id < 0 || id >= V)
      throw IndexError(str_cat("embedding: id ", id, " at position ",
                               detail::position_str(n, ids_shape), " of ids ", shape_str(ids_shape),
                               " is out of range for weight ", shape_str(weight.shape()),
                               " (V = ", V, ")"));
  }
  Shape y_shape = ids_shape;
  y_shape.push_back(C);
  Var<Real> y = tape.output(y_shape);
  embedding_forward<Real>(y.data(), weight.data(), ids, C);
  // The caller's ids may not outlive the forward pass: backward keeps its own copy.
  const std::vector<std::int64_t> saved(ids.begin(), ids.end());
  tape.record("embedding", {weight}, y, [=](std::span<const Real> dy) {
    embedding_backward<Real>(grad_if_needed(weight), dy, saved, C);
  });
  return y;
}
// The same with ids held in a tensor: y: (ids.shape()..., C).
template <class Real>
Var<Real> embedding(Tape<Real>& tape, const Var<Real>& weight, const Tensor<std::int64_t>& ids) {
  return embedding(tape, weight, ids.data(), ids.shape());
}

// ---------------------------------------------------------------------------
// narrow: `length` consecutive entries of one dim, from `start` (torch.narrow), copied.
//   x: viewed as (outer, S, inner)   ->   y: (outer, length, inner)
//   y[o, i, :] = x[o, start + i, :]         dx[o, start + i, :] += dy[o, i, :]
template <class Real>
void narrow_forward(std::span<Real> y, std::span<const Real> x, Index outer, Index S, Index inner,
                    Index start, Index length) {
  const Index width = length * inner;  // contiguous run per outer row
#pragma omp parallel for if (outer * width > 65536)
  for (Index o = 0; o < outer; ++o)
    std::copy_n(x.data() + (o * S + start) * inner, width, y.data() + o * width);
}

template <class Real>
void narrow_backward(std::span<Real> dx, std::span<const Real> dy, Index outer, Index S,
                     Index inner, Index start, Index length) {
  if (dx.empty()) return;
  const Index width = length * inner;
#pragma omp parallel for if (outer * width > 65536)
  for (Index o = 0; o < outer; ++o) {
    Real* d = dx.data() + (o * S + start) * inner;
    const Real* g = dy.data() + o * width;
    for (Index i = 0; i < width; ++i) d[i] += g[i];
  }
}

namespace detail {
// narrow and select share the kernels; select drops the dim from the output shape.
template <class Real>
Var<Real> narrow_op(Tape<Real>& tape, const char* op, const Var<Real>& x, Index dim, Index start,
                    Index length, Shape y_shape) {
  const auto [outer, inner] = outer_inner(x.shape(), dim);
  const Index S = x.shape()[static_cast<std::size_t>(dim)];
  Var<Real> y = tape.output(std::move(y_shape));
  narrow_forward<Real>(y.data(), x.data(), outer, S, inner, start, length);
  tape.record(op, {x}, y, [=](std::span<const Real> dy) {
    narrow_backward<Real>(grad_if_needed(x), dy, outer, S, inner, start, length);
  });
  return y;
}
}  // namespace detail

// narrow(x, 1, 0, 16): the first 16 tokens of (B, T, C). A negative start counts from the end.
template <class Real>
Var<Real> narrow(Tape<Real>& tape, const Var<Real>& x, Index dim, Index start, Index length) {
  const Index d = detail::wrap_dim("narrow", "dim", dim, x.shape());
  const Index S = x.shape()[static_cast<std::size_t>(d)];
  check<IndexError>(start >= -S && start <= S, "narrow: start = ", start,
                    " is out of range for dim ", d, " of size ", S, " (shape ",
                    shape_str(x.shape()), ")");
  const Index first = start < 0 ? start + S : start;
  check<IndexError>(length >= 0 && first + length <= S, "narrow: start ", first, " + length ",
                    length, " exceeds size ", S, " of dim ", d, " (shape ", shape_str(x.shape()),
                    ")");
  Shape y_shape = x.shape();
  y_shape[static_cast<std::size_t>(d)] = length;
  return detail::narrow_op(tape, "narrow", x, d, first, length, std::move(y_shape));
}

// ---------------------------------------------------------------------------
// select: one index of one dim, the dim removed: select(h, 1, 0) takes the CLS token,
// (B, T, C) -> (B, C). A negative index counts from the end. Same math as narrow with length 1.
template <class Real>
Var<Real> select(Tape<Real>& tape, const Var<Real>& x, Index dim, Index index) {
  const Index d = detail::wrap_dim("select", "dim", dim, x.shape());
  const Index S = x.shape()[static_cast<std::size_t>(d)];
  check<IndexError>(index >= -S && index < S, "select: index ", index, " is out of range for dim ",
                    d, " of size ", S, " (shape ", shape_str(x.shape()), ")");
  Shape y_shape = x.shape();
  y_shape.erase(y_shape.begin() + d);
  return detail::narrow_op(tape, "select", x, d, index < 0 ? index + S : index, 1,
                           std::move(y_shape));
}

// ---------------------------------------------------------------------------
// concat: tensors equal in every dim but `dim`, joined along it (torch.cat).
//   x_i: viewed as (outer, S_i, inner)   ->   y: (outer, sum_i S_i, inner);  off_i = sum_{j<i} S_j
//   y[o, off_i + s, :] = x_i[o, s, :]         dx_i[o, s, :] += dy[o, off_i + s, :]
// Empty spans in dxs mark inputs that need no gradient.
template <class Real>
void concat_forward(std::span<Real> y, std::span<const std::span<const Real>> xs,
                    std::span<const Index> sizes, Index outer, Index inner) {
  Index total = 0;
  for (Index s : sizes) total += s;
  const Index row = total * inner;  // one outer row of y
#pragma omp parallel for if (outer * row > 65536)
  for (Index o = 0; o < outer; ++o) {
    Real* out = y.data() + o * row;
    for (std::size_t i = 0; i < xs.size(); ++i) {
      const Index width = sizes[i] * inner;
      out = std::copy_n(xs[i].data() + o * width, width, out);
    }
  }
}

template <class Real>
void concat_backward(std::span<const std::span<Real>> dxs, std::span<const Real> dy,
                     std::span<const Index> sizes, Index outer, Index inner) {
  Index total = 0;
  for (Index s : sizes) total += s;
  const Index row = total * inner;
#pragma omp parallel for if (outer * row > 65536)
  for (Index o = 0; o < outer; ++o) {
    const Real* g = dy.data() + o * row;
    for (std::size_t i = 0; i < dxs.size(); ++i) {
      const Index width = sizes[i] * inner;
      if (!dxs[i].empty()) {
        Real* d = dxs[i].data() + o * width;
        for (Index j = 0; j < width; ++j) d[j] += g[j];
      }
      g += width;
    }
  }
}

// concat(tape, {a, b}, -1): joins along the last dim.
template <class Real>
Var<Real> concat(Tape<Real>& tape, const std::vector<Var<Real>>& xs, Index dim) {
  check(!xs.empty(), "concat: needs at least one input, got none");
  const Shape& first = xs[0].shape();
  const Index d = detail::wrap_dim("concat", "dim", dim, first);
  std::vector<Index> sizes;
  Shape y_shape = first;
  y_shape[static_cast<std::size_t>(d)] = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    Shape s = xs[i].shape();
    bool fits = s.size() == first.size();
    for (std::size_t k = 0; fits && k < s.size(); ++k)
      fits = static_cast<Index>(k) == d || s[k] == first[k];
    check<ShapeError>(fits, "concat: input ", i, " has shape ", shape_str(s), " but input 0 has ",
                      shape_str(first), "; they may differ only in dim ", d);
    sizes.push_back(s[static_cast<std::size_t>(d)]);
    y_shape[static_cast<std::size_t>(d)] += sizes.back();
  }
  const auto [outer, inner] = detail::outer_inner(first, d);
  Var<Real> y = tape.output(y_shape);
  std::vector<std::span<const Real>> values;
  for (const Var<Real>& x : xs) values.push_back(x.data());
  concat_forward<Real>(y.data(), values, sizes, outer, inner);
  // record() takes a fixed list of inputs but only asks whether any needs a gradient: pass one
  // that does (if any). The closure keeps all of them alive.
  const auto needs =
      std::find_if(xs.begin(), xs.end(), [](const Var<Real>& x) { return x.requires_grad(); });
  tape.record("concat", {needs == xs.end() ? xs[0] : *needs}, y, [=](std::span<const Real> dy) {
    std::vector<std::span<Real>> grads;
    for (const Var<Real>& x : xs) grads.push_back(grad_if_needed(x));
    concat_backward<Real>(grads, dy, sizes, outer, inner);
  });
  return y;
}

}  // namespace fourierft::ops
