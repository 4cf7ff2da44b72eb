// fourierft/detail/vector_math.hpp — loops the compiler vectorises without -ffast-math, for the
// softmax rows of cross-entropy and attention: a float exp, and sums and dot products over eight
// fixed lanes (the order of additions depends only on n, never on the data's address, so results
// are bit-reproducible run to run — unlike a reduction that first aligns its pointer). Kernels are
// built per ISA level by detail/isa.hpp.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace fourierft::ops::detail {

// exp(x) for float without a library call, so a loop over a row vectorises (SSE2 at -O3):
// x = k·ln 2 + r with |r| <= ln 2 / 2, exp(r) by Cephes' degree-6 polynomial (relative error
// below 2e-7, ~1 ulp), 2^k through the exponent bits. x is clamped to [-87.3, 88.3], so results
// below ~1e-38 come out as ~1e-38 instead of 0 (harmless in a softmax over shifted logits; not for
// masks that need exact zeros). Double uses std::exp (gradient checks want the exact function).
template <class Real>
inline Real exp_fast(Real x) {
  if constexpr (std::is_same_v<Real, float>) {
    x = std::min(std::max(x, -87.3f), 88.3f);
    // Round x·log2(e) to the nearest integer with the 1.5·2^23 trick (vectorises without SSE4.1).
    const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float e = p * r * r + r + 1.0f;
    const std::int32_t bits = (static_cast<std::int32_t>(k) + 127) << 23;
    return e * std::bit_cast<float>(bits);
  } else {
    return std::exp(x);
  }
}

// max_j term(j), j < n >= 1, over 16 fixed lanes (vectorises without -ffast-math). The maximum
// does not depend on the order; a NaN is skipped unless term(0) (or a lane's first entry) is one,
// like a serial std::max loop.
template <class Real, class Term>
inline Real max_lanes_of(std::ptrdiff_t n, Term term) {
  Real m = term(0);
  std::ptrdiff_t j = 0;
  if (n >= 16) {
    Real lane[16];
    for (int k = 0; k < 16; ++k) lane[k] = term(k);
    for (j = 16; j + 16 <= n; j += 16)
      for (int k = 0; k < 16; ++k) {
        const Real v = term(j + k);
        lane[k] = lane[k] < v ? v : lane[k];
      }
    m = lane[0];
    for (int k = 1; k < 16; ++k) m = std::max(m, lane[k]);
  }
  for (; j < n; ++j) m = std::max(m, term(j));
  return m;
}

// max_j x[j], j < n >= 1 (max_lanes_of).
template <class Real>
inline Real max_lanes(const Real* x, std::ptrdiff_t n) {
  return max_lanes_of<Real>(n, [x](std::ptrdiff_t j) { return x[j]; });
}

// Σ_j x[j], j < n: lane k sums x[k], x[k + 8], ...; then the lanes pairwise, then the tail.
template <class Real>
inline Real sum_lanes(const Real* x, std::ptrdiff_t n) {
  Real lane[8] = {};
  std::ptrdiff_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) lane[k] += x[j + k];
  Real tail = 0;
  for (; j < n; ++j) tail += x[j];
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7])) +
         tail;
}

// Σ_j x[j]·y[j], j < n, in the same fixed order as sum_lanes.
template <class Real>
inline Real dot_lanes(const Real* x, const Real* y, std::ptrdiff_t n) {
  Real lane[8] = {};
  std::ptrdiff_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) lane[k] += x[j + k] * y[j + k];
  Real tail = 0;
  for (; j < n; ++j) tail += x[j] * y[j];
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7])) +
         tail;
}

// Σ_j term(j), j < n, accumulated in Acc in the fixed order of sum_lanes (for sums of products
// of several rows, or a float row summed in double).
template <class Acc, class Term>
inline Acc sum_lanes_of(std::ptrdiff_t n, Term term) {
  Acc lane[8] = {};
  std::ptrdiff_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) lane[k] += term(j + k);
  Acc tail = 0;
  for (; j < n; ++j) tail += term(j);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7])) +
         tail;
}

}  // namespace fourierft::ops::detail
