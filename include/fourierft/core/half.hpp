// fourierft/core/half.hpp — 16-bit floats (bfloat16, IEEE half): scalar and bulk conversions to and
// from float, and HalfMatrix, a frozen 2-D weight kept in 2 bytes per number (owned or mmapped).
#pragma once

// Why: a 7B-parameter model is 27 GB in float32 but 13.5 GB in BF16, the dtype it is published in.
// A frozen weight can stay in that form; detail/half_gemm.hpp multiplies against it by converting
// tiles to float on the fly, which is exact (every BF16 / F16 value is a float), so the result is
// that of a float32 model holding the rounded weights.

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define FOURIERFT_HALF_X86_DISPATCH 1
#endif

#include "fourierft/core/error.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/dtype.hpp"

namespace fourierft {

// ---------------------------------------------------------------------------
// 16-bit floats. Both keep float's sign; bfloat16 is float's top 16 bits (8-bit exponent, 7-bit
// mantissa); IEEE half has a 5-bit exponent (bias 15) and a 10-bit mantissa.
inline float bf16_to_float(std::uint16_t h) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}
// Round to nearest, ties to even (as torch's float -> bfloat16): add 0x7FFF plus the lowest kept
// bit, then truncate. NaN stays a (quiet) NaN.
inline std::uint16_t float_to_bf16(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if (std::isnan(f)) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
  return static_cast<std::uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

inline float f16_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu;
  if (exponent == 0x1F)  // infinity or NaN
    return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  // Normal: re-bias the exponent (15 -> 127) and widen the mantissa (10 -> 23 bits).
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}
// Round to nearest, ties to even, as torch's float -> half: values >= 65520 become infinity, values
// below half's smallest normal (2^-14) become subnormals (multiples of 2^-24) or zero.
inline std::uint16_t float_to_f16(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7FFFFFFFu;             // |f|
  if (a > 0x7F800000u) return sign | 0x7E00u;          // NaN
  if (a >= 0x477FF000u) return sign | 0x7C00u;         // >= 65520 (or inf): infinity
  auto round_shift = [](std::uint32_t m, int shift) {  // m / 2^shift, ties to even
    const std::uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    return q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
  };
  if (a < 0x38800000u) {                                  // |f| < 2^-14: subnormal half
    if (a <= 0x33000000u) return sign;                    // <= 2^-25 rounds to zero
    const std::uint32_t m = (a & 0x7FFFFFu) | 0x800000u;  // |f| = m * 2^(e - 150)
    const int e = static_cast<int>(a >> 23);              // in units of 2^-24: m * 2^(e - 126)
    return sign | static_cast<std::uint16_t>(round_shift(m, 126 - e));
  }
  // Normal: exponent re-biased (127 -> 15: subtract 112 << 23), mantissa 23 -> 10 bits; a carry
  // out of the mantissa correctly bumps the exponent.
  return sign | static_cast<std::uint16_t>(round_shift(a - 0x38000000u, 13));
}


// ---------------------------------------------------------------------------
// Bulk conversions: n values from src to dst. half -> float/double is exact; float -> half rounds
// to nearest even (the scalar functions above, so NaN, infinities and F16 subnormals behave alike).
// The float kernels are plain loops the compiler vectorises; on x86-64 they are also compiled for
// AVX2 / AVX-512 (and F16C for half) and chosen at run time, so no ISA is assumed at build time.
namespace detail {

// f16 -> float without branches (so it vectorises): normal numbers re-bias the exponent,
// infinities / NaNs bias it once more to 0xFF, zeros and subnormals are em·2^-24 exactly.
inline float f16_to_float_branchless(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t em = h & 0x7FFFu;                 // exponent and mantissa
  std::uint32_t bits = (em << 13) + 0x38000000u;         // exponent + (127 - 15)
  bits = em >= 0x7C00u ? bits + 0x38000000u : bits;      // inf / NaN: exponent 0xFF
  const float subnormal = static_cast<float>(em) * 0x1p-24f;
  const float magnitude = em < 0x0400u ? subnormal : std::bit_cast<float>(bits);
  return std::bit_cast<float>(std::bit_cast<std::uint32_t>(magnitude) | sign);
}

template <class Real>
[[gnu::always_inline]] inline void bf16_to_real_loop(const std::uint16_t* src, Real* dst,
                                                     std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    dst[i] = static_cast<Real>(std::bit_cast<float>(static_cast<std::uint32_t>(src[i]) << 16));
}
template <class Real>
[[gnu::always_inline]] inline void f16_to_real_loop(const std::uint16_t* src, Real* dst,
                                                    std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<Real>(f16_to_float_branchless(src[i]));
}

using HalfToFloatKernel = void (*)(const std::uint16_t*, float*, std::size_t);
inline void bf16_to_float_generic(const std::uint16_t* s, float* d, std::size_t n) {
  bf16_to_real_loop(s, d, n);
}
inline void f16_to_float_generic(const std::uint16_t* s, float* d, std::size_t n) {
  f16_to_real_loop(s, d, n);
}

#ifdef FOURIERFT_HALF_X86_DISPATCH
[[gnu::target("avx2")]] inline void bf16_to_float_avx2(const std::uint16_t* s, float* d,
                                                       std::size_t n) {
  bf16_to_real_loop(s, d, n);
}
[[gnu::target("avx512f,avx512bw")]] inline void bf16_to_float_avx512(const std::uint16_t* s,
                                                                     float* d, std::size_t n) {
  bf16_to_real_loop(s, d, n);
}
// F16C's vcvtph2ps converts 8 halves per instruction (subnormals, infinities and NaNs included).
[[gnu::target("avx2,f16c")]] inline void f16_to_float_f16c(const std::uint16_t* s, float* d,
                                                           std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  f16_to_real_loop(s + i, d + i, n - i);
}
#endif

// The best kernel this CPU runs, chosen once.
inline HalfToFloatKernel half_to_float_kernel(io::Dtype dtype) {
#ifdef FOURIERFT_HALF_X86_DISPATCH
  static const HalfToFloatKernel bf16 = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512bw")) return &bf16_to_float_avx512;
    if (__builtin_cpu_supports("avx2")) return &bf16_to_float_avx2;
    return &bf16_to_float_generic;
  }();
  static const HalfToFloatKernel f16 = [] {
    __builtin_cpu_init();
#if defined(__clang__) && __clang_major__ < 16  // cannot name "f16c"; every AVX2 CPU has F16C
    if (__builtin_cpu_supports("avx2")) return &f16_to_float_f16c;
#else
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) return &f16_to_float_f16c;
#endif
    return &f16_to_float_generic;
  }();
#else
  static const HalfToFloatKernel bf16 = &bf16_to_float_generic, f16 = &f16_to_float_generic;
#endif
  return dtype == io::Dtype::BF16 ? bf16 : f16;
}

}  // namespace detail

// How a product against a frozen 16-bit weight treats its float operand (nn::Linear::half_compute):
//   exact  the weight's numbers converted to float, FP32 GEMM (detail/half_gemm.hpp): the result of
//          an FP32 model holding the rounded weight; storage saving only.
//   bf16   the BF16 compute mode (HF Trainer's bf16=True, PyTorch's autocast): the float operand is
//          rounded to BF16 as well and the product runs with FP32 accumulation
//          (detail/bf16_gemm.hpp). BF16 weights and Real = float only; otherwise exact.
enum class HalfCompute { exact, bf16 };

inline bool is_half_dtype(io::Dtype dtype) {
  return dtype == io::Dtype::BF16 || dtype == io::Dtype::F16;
}

// dst[i] = the value of the 16-bit number src[i] (dtype BF16 or F16), exactly.
template <class Real>
void half_to_real(io::Dtype dtype, const std::uint16_t* src, Real* dst, std::size_t n) {
  if constexpr (std::is_same_v<Real, float>) {
    detail::half_to_float_kernel(dtype)(src, dst, n);
  } else {
    if (dtype == io::Dtype::BF16)
      detail::bf16_to_real_loop(src, dst, n);
    else
      detail::f16_to_real_loop(src, dst, n);
  }
}
// dst[i] = src[i] rounded to BF16 / F16, nearest even (a double is rounded to float first).
template <class Real>
void real_to_half(io::Dtype dtype, const Real* src, std::uint16_t* dst, std::size_t n) {
  if (dtype == io::Dtype::BF16)
    for (std::size_t i = 0; i < n; ++i) dst[i] = float_to_bf16(static_cast<float>(src[i]));
  else
    for (std::size_t i = 0; i < n; ++i) dst[i] = float_to_f16(static_cast<float>(src[i]));
}

// ---------------------------------------------------------------------------
// HalfMatrix: a (rows, cols) row-major matrix of BF16 or F16 numbers, frozen by design (no
// gradient; only merge / unmerge of an adapter writes to it). Copies share storage, like Tensor.
// The storage is either owned (a vector of uint16_t) or a view into memory someone else keeps
// alive — a memory-mapped safetensors file (SafetensorsFile::load_half maps a tensor whose file
// dtype is the one asked for and whose data is 2-byte aligned, which Hugging Face's writer
// guarantees; otherwise it copies). Writing to a mapped matrix first copies it into owned memory
// (copy on write, seen by every copy of the handle).
// Three states: undefined (default), a placeholder (shape and dtype, no storage yet: what a model
// built for half loading holds until the checkpoint fills it), and defined with data.
class HalfMatrix {
 public:
  HalfMatrix() = default;
  // Zeros, owned.
  HalfMatrix(Index rows, Index cols, io::Dtype dtype) : HalfMatrix(placeholder(rows, cols, dtype)) {
    storage_ = std::make_shared<Storage>();
    storage_->owned.assign(static_cast<std::size_t>(rows * cols), 0);
  }
  // Shape and dtype only; has_data() is false until storage is assigned (by a loader).
  static HalfMatrix placeholder(Index rows, Index cols, io::Dtype dtype) {
    check(is_half_dtype(dtype), "HalfMatrix: dtype must be BF16 or F16, got ",
          io::dtype_name(dtype));
    check(rows >= 0 && cols >= 0, "HalfMatrix: negative shape (", rows, ", ", cols, ")");
    HalfMatrix m;
    m.rows_ = rows, m.cols_ = cols, m.dtype_ = dtype, m.defined_ = true;
    return m;
  }
  // `values` (rows·cols, row-major) rounded to dtype.
  template <class Real>
  static HalfMatrix from_values(std::span<const Real> values, Index rows, Index cols,
                                io::Dtype dtype) {
    check<ShapeError>(static_cast<Index>(values.size()) == rows * cols, "HalfMatrix: ",
                      values.size(), " values for a (", rows, ", ", cols, ") matrix");
    HalfMatrix m(rows, cols, dtype);
    real_to_half(dtype, values.data(), m.storage_->owned.data(), values.size());
    return m;
  }
  // A view of rows·cols numbers at `data`, kept valid by `owner` (e.g. a file mapping).
  static HalfMatrix view(Index rows, Index cols, io::Dtype dtype, const std::uint16_t* data,
                         std::shared_ptr<const void> owner) {
    HalfMatrix m = placeholder(rows, cols, dtype);
    m.storage_ = std::make_shared<Storage>();
    m.storage_->view = data;
    m.storage_->owner = std::move(owner);
    return m;
  }

  bool defined() const { return defined_; }
  bool has_data() const { return storage_ != nullptr; }
  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  Index numel() const { return rows_ * cols_; }
  Shape shape() const { return {rows_, cols_}; }
  io::Dtype dtype() const { return dtype_; }
  std::size_t bytes() const { return static_cast<std::size_t>(numel()) * 2; }
  // Whether the numbers live in someone else's memory (a mapped file) rather than our own.
  bool memory_mapped() const { return storage_ != nullptr && storage_->view != nullptr; }
  bool shares_storage_with(const HalfMatrix& other) const {
    return storage_ != nullptr && storage_ == other.storage_;
  }

  const std::uint16_t* data() const { return storage().get(); }
  // For merge / unmerge: owned memory (a mapped matrix is copied first; every handle sees it).
  // Drops the kernels' cached forms (cached() below): the numbers are about to change.
  std::uint16_t* mutable_data() {
    Storage& s = storage();
    {
      const std::lock_guard<std::mutex> lock(s.cache_mutex);
      for (auto& c : s.cache) c.reset();
    }
    if (s.view != nullptr) {
      s.owned.assign(s.view, s.view + numel());
      s.view = nullptr;
      s.owner.reset();
    }
    return s.owned.data();
  }
  std::span<const std::uint16_t> span() const {
    return {data(), static_cast<std::size_t>(numel())};
  }

  // dst[r·ld + c] = value at (row0 + r, col0 + c) for r < nrows, c < ncols: one tile, exactly.
  template <class Real>
  void tile_to(Index row0, Index nrows, Index col0, Index ncols, Real* dst, Index ld) const {
    const std::uint16_t* src = data();
    for (Index r = 0; r < nrows; ++r)
      half_to_real(dtype_, src + (row0 + r) * cols_ + col0, dst + r * ld,
                   static_cast<std::size_t>(ncols));
  }
  // A form of the numbers a kernel derives once and reuses (detail/bf16_gemm.hpp: the weight
  // packed into panels, one slot per transpose), made by make() -> T on first use and kept with
  // the storage, shared by every copy of the handle, until mutable_data() is called. slot < 2.
  template <class T, class Make>
  std::shared_ptr<const T> cached(int slot, Make&& make) const {
    Storage& s = storage();
    const std::lock_guard<std::mutex> lock(s.cache_mutex);
    std::shared_ptr<const void>& entry = s.cache.at(static_cast<std::size_t>(slot));
    if (entry == nullptr) entry = std::make_shared<const T>(make());
    return std::static_pointer_cast<const T>(entry);
  }
  // Whether slot holds a cached form (tests).
  bool has_cached(int slot) const {
    Storage& s = storage();
    const std::lock_guard<std::mutex> lock(s.cache_mutex);
    return s.cache.at(static_cast<std::size_t>(slot)) != nullptr;
  }

  // The whole matrix as a (rows, cols) tensor.
  template <class Real>
  Tensor<Real> to_tensor() const {
    Tensor<Real> out({rows_, cols_});
    half_to_real(dtype_, data(), out.ptr(), static_cast<std::size_t>(numel()));
    return out;
  }

 private:
  struct Storage {
    std::vector<std::uint16_t> owned;
    const std::uint16_t* view = nullptr;  // non-null: not ours, kept valid by `owner`
    std::shared_ptr<const void> owner;
    std::mutex cache_mutex;                          // guards cache
    std::array<std::shared_ptr<const void>, 2> cache;  // kernels' derived forms (cached())
    const std::uint16_t* get() const { return view != nullptr ? view : owned.data(); }
  };
  Storage& storage() const {
    check(storage_ != nullptr, defined_ ? "HalfMatrix: no data yet (a placeholder)"
                                        : "HalfMatrix: use of an undefined matrix");
    return *storage_;
  }

  Index rows_ = 0, cols_ = 0;
  io::Dtype dtype_ = io::Dtype::BF16;
  bool defined_ = false;
  std::shared_ptr<Storage> storage_;
};

}  // namespace fourierft
