// fourierft/core/tensor.hpp — Tensor<Real>: an N-d, row-major, contiguous array with shared storage.
// Shapes are in PyTorch order ({B, T, C}); as_matrix() views a tensor as a row-major Eigen matrix.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <iomanip>
#include <memory>
#include <numeric>
#include <ostream>
#include <span>
#include <type_traits>
#include <utility>
#include <sstream>
#include <vector>

#include <Eigen/Core>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"

namespace fourierft {

inline Index numel_of(const Shape& shape) {
  Index n = 1;
  for (Index d : shape) {
    check<ShapeError>(d >= 0, "shape ", shape_str(shape), " has a negative dimension");
    n *= d;
  }
  return n;
}

namespace detail {
// Eigen's aligned allocator, except that a bare `construct(p)` default-initialises: a Buffer(n)
// of floats is left unwritten (Buffer(n, value) still fills). For op outputs the op overwrites
// completely, where zero-filling would be one more pass over every activation of a step.
template <class T>
struct DefaultInitAllocator : Eigen::aligned_allocator<T> {
  template <class U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() = default;
  template <class U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
}  // namespace detail

// Tensor<T>: `T` is float or double for values, std::int64_t / std::int32_t for ids and masks.
// Copies share storage (like torch tensors); clone() copies the data. Storage is 64-byte aligned
// so Eigen and BLAS see aligned rows.
template <class T>
class Tensor {
 public:
  using value_type = T;
  using RowMajorMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  Tensor() : Tensor(Shape{0}) {}
  // Zero-filled tensor of the given shape.
  explicit Tensor(Shape shape) : shape_(std::move(shape)), numel_(numel_of(shape_)) {
    storage_ = std::make_shared<Buffer>(static_cast<std::size_t>(numel_), T(0));
  }
  Tensor(std::initializer_list<Index> shape) : Tensor(Shape(shape)) {}
  // A tensor whose values are unspecified until written: for an op's output that the op
  // overwrites entirely (Tape::output_uninitialized), and for copies.
  static Tensor uninitialized(Shape shape) {
    Tensor t(Shape{0});
    t.shape_ = std::move(shape);
    t.numel_ = numel_of(t.shape_);
    t.storage_ = std::make_shared<Buffer>(static_cast<std::size_t>(t.numel_));
    return t;
  }

  static Tensor zeros(Shape shape) { return Tensor(std::move(shape)); }
  static Tensor full(Shape shape, T value) {
    Tensor t(std::move(shape));
    t.fill(value);
    return t;
  }
  static Tensor ones(Shape shape) { return full(std::move(shape), T(1)); }
  // Copies `values` (row-major) into a tensor of `shape`; the sizes must agree.
  static Tensor from_data(Shape shape, std::span<const T> values) {
    Tensor t(std::move(shape));
    check<ShapeError>(static_cast<Index>(values.size()) == t.numel(), "Tensor::from_data: shape ",
                      shape_str(t.shape()), " holds ", t.numel(), " values but ", values.size(),
                      " were given");
    std::copy(values.begin(), values.end(), t.data().begin());
    return t;
  }
  static Tensor from_data(Shape shape, std::initializer_list<T> values) {
    return from_data(std::move(shape), std::span<const T>(values.begin(), values.size()));
  }
  static Tensor scalar(T value) { return from_data(Shape{}, {value}); }

  const Shape& shape() const { return shape_; }
  Index dim() const { return static_cast<Index>(shape_.size()); }
  // size(-1) is the last dimension, as in PyTorch.
  Index size(Index axis) const {
    const Index d = dim();
    const Index a = axis < 0 ? axis + d : axis;
    if (a < 0 || a >= d)
      throw IndexError(str_cat("Tensor::size: axis ", axis, " out of range for shape ", shape_str(shape_)));
    return shape_[static_cast<std::size_t>(a)];
  }
  Index numel() const { return numel_; }
  bool empty() const { return numel_ == 0; }

  std::span<T> data() { return {storage_->data(), static_cast<std::size_t>(numel_)}; }
  std::span<const T> data() const { return {storage_->data(), static_cast<std::size_t>(numel_)}; }
  T* ptr() { return storage_->data(); }
  const T* ptr() const { return storage_->data(); }
  bool shares_storage_with(const Tensor& other) const { return storage_ == other.storage_; }

  // Flat (row-major) element access.
  T& operator[](Index i) { return storage_->data()[i]; }
  const T& operator[](Index i) const { return storage_->data()[i]; }
  // Multi-index access with bounds checks: t.at({b, t, c}).
  T& at(std::initializer_list<Index> index) { return storage_->data()[offset(index)]; }
  const T& at(std::initializer_list<Index> index) const { return storage_->data()[offset(index)]; }
  T item() const {
    check<ShapeError>(numel_ == 1, "Tensor::item: expected one element, shape is ",
                      shape_str(shape_));
    return (*storage_)[0];
  }

  void fill(T value) { std::fill(data().begin(), data().end(), value); }
  Tensor clone() const {
    Tensor t = uninitialized(shape_);
    std::copy(data().begin(), data().end(), t.data().begin());
    return t;
  }
  // Same storage, new shape with the same number of elements; one dimension may be -1.
  Tensor reshape(Shape shape) const {
    Index known = 1, infer = -1;
    for (std::size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] == -1) {
        check<ShapeError>(infer < 0, "reshape: more than one -1 in ", shape_str(shape));
        infer = static_cast<Index>(i);
      } else {
        known *= shape[i];
      }
    }
    if (infer >= 0 && known > 0) shape[static_cast<std::size_t>(infer)] = numel_ / known;
    check<ShapeError>(numel_of(shape) == numel_, "reshape: cannot view shape ", shape_str(shape_),
                      " (", numel_, " elements) as ", shape_str(shape));
    Tensor t = *this;
    t.shape_ = std::move(shape);
    return t;
  }
  template <class U>
  Tensor<U> cast() const {
    Tensor<U> t(shape_);
    std::transform(data().begin(), data().end(), t.data().begin(),
                   [](T v) { return static_cast<U>(v); });
    return t;
  }

 private:
  using Buffer = std::vector<T, detail::DefaultInitAllocator<T>>;

  // Bounds-checked; the messages are built only on failure (at() sits in inner loops of tests).
  Index offset(std::initializer_list<Index> index) const {
    if (index.size() != shape_.size())
      throw IndexError(str_cat("Tensor::at: ", index.size(), " indices for shape ", shape_str(shape_)));
    Index off = 0, k = 0;
    for (Index i : index) {
      const Index extent = shape_[static_cast<std::size_t>(k)];
      if (i < 0 || i >= extent)
        throw IndexError(str_cat("Tensor::at: index ", i, " out of range for dim ", k, " of shape ",
                                 shape_str(shape_)));
      off = off * extent + i;
      ++k;
    }
    return off;
  }

  Shape shape_;
  Index numel_ = 0;
  std::shared_ptr<Buffer> storage_;
};

// Row-major Eigen views: a tensor of shape (..., C) as a (numel / C, C) matrix. Used for GEMM and
// reductions; writes through the map go to the tensor.
template <class T>
Eigen::Map<typename Tensor<T>::RowMajorMatrix> as_matrix(Tensor<T>& t) {
  const Index cols = t.dim() == 0 ? 1 : t.size(-1);
  return {t.ptr(), cols == 0 ? 0 : t.numel() / cols, cols};
}
template <class T>
Eigen::Map<const typename Tensor<T>::RowMajorMatrix> as_matrix(const Tensor<T>& t) {
  const Index cols = t.dim() == 0 ? 1 : t.size(-1);
  return {t.ptr(), cols == 0 ? 0 : t.numel() / cols, cols};
}
// The same as a (rows, cols) matrix of any compatible split.
template <class T>
Eigen::Map<typename Tensor<T>::RowMajorMatrix> as_matrix(Tensor<T>& t, Index rows, Index cols) {
  check<ShapeError>(rows * cols == t.numel(), "as_matrix: ", shape_str(t.shape()),
                    " cannot be viewed as (", rows, ", ", cols, ")");
  return {t.ptr(), rows, cols};
}

// Rows [begin, begin + count) along the first dimension, copied: shape (count, ...). A
// data-parallel rank's shard of a micro-batch.
template <class T>
Tensor<T> slice_rows(const Tensor<T>& t, Index begin, Index count) {
  check<ShapeError>(t.dim() >= 1 && begin >= 0 && count >= 0 && begin + count <= t.size(0),
                    "slice_rows: rows [", begin, ", ", begin + count, ") of ", shape_str(t.shape()));
  Shape shape = t.shape();
  shape[0] = count;
  Tensor<T> out(std::move(shape));
  const Index per_row = t.size(0) == 0 ? 0 : t.numel() / t.size(0);
  std::copy_n(t.ptr() + begin * per_row, count * per_row, out.ptr());
  return out;
}

// Seeded random tensors: standard normal, and uniform in [low, high).
template <class Real>
Tensor<Real> randn(Shape shape, Rng& rng, Real mean = Real(0), Real stddev = Real(1)) {
  Tensor<Real> t(std::move(shape));
  for (Real& v : t.data()) v = mean + stddev * static_cast<Real>(rng.normal());
  return t;
}
template <class Real>
Tensor<Real> uniform(Shape shape, Rng& rng, Real low = Real(0), Real high = Real(1)) {
  Tensor<Real> t(std::move(shape));
  for (Real& v : t.data()) v = low + (high - low) * static_cast<Real>(rng.uniform());
  return t;
}

// Prints like PyTorch, summarised past 6 entries per dim: tensor([[1, 2], [3, 4]], shape=(2, 2)).
template <class T>
std::ostream& operator<<(std::ostream& out, const Tensor<T>& t) {
  std::ostringstream body;
  body << std::setprecision(4);
  const Shape& s = t.shape();
  auto rec = [&](auto&& self, std::size_t axis, Index offset) -> void {
    if (axis == s.size()) {
      body << t[offset];
      return;
    }
    Index stride = 1;
    for (std::size_t k = axis + 1; k < s.size(); ++k) stride *= s[k];
    body << '[';
    const Index n = s[axis];
    for (Index i = 0; i < n; ++i) {
      if (n > 6 && i == 3) {
        body << "..., ";
        i = n - 3;
      }
      self(self, axis + 1, offset + i * stride);
      if (i + 1 < n) body << ", ";
    }
    body << ']';
  };
  if (t.numel() > 0 || s.empty()) rec(rec, 0, 0);
  else body << "[]";
  return out << "tensor(" << body.str() << ", shape=" << shape_str(s) << ")";
}

}  // namespace fourierft
