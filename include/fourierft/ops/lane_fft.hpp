// fourierft/ops/lane_fft.hpp — real DFTs of 16 rows at once, one row per SIMD lane.
//
// The FourierFT layer transforms blocks of 16 rows (the coefficient gradient's DFTs of x and dy,
// ΔW's row c2rs, the beside product). Here each of the 16 rows is one lane of a vector: every
// butterfly is a vertical operation on 16-wide vectors (one AVX-512 register of floats), with no
// shuffles inside the transform. A real row of length N = 2H is transformed as the complex row
// z[j] = x[2j] + i·x[2j+1] of length H (mixed-radix Stockham passes, radix 8, 4, 2, 3, 5), then
// split into the half spectrum of x. The kernels run through fourierft::detail::run_dispatched,
// whose copies do not contract multiply-adds and never reassociate: every ISA level gives the
// same bits.
// Lengths whose H has another prime factor are left to FFTW (LaneFft::supports).
#pragma once

#include <cmath>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "fourierft/core/error.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/detail/isa.hpp"
#include "fourierft/detail/kept_per_size.hpp"

namespace fourierft::ops::spectral {

namespace lane_detail {

inline constexpr int L = 16;  // lanes: rows per block

// A complex vector of L lanes is 2·L reals: re[0..L), then im[0..L).
// Stockham pass of radix p over a length-n sub-transform at stride s (n·s = H), forward (e^{−i}):
//   a_j = x[k + s·(q + j·m)],  m = n/p,  j < p
//   y[k + s·(p·q + r)] = (Σ_j a_j·ω_p^{jr}) · w_n^{rq},   q < m, k < s, r < p
// tw holds w_n^{rq} for q < m, r = 1..p−1 as (cos, sin) pairs, (p−1) pairs per q.
// y = b·(c + i·s) for one lane; y = b where the twiddle is 1 (q = 0: Unit).
#define FOURIERFT_LANE_TWIDDLE(y, br, bi, c, s) \
  if constexpr (Unit) {                         \
    (y)[l] = (br);                              \
    (y)[L + l] = (bi);                          \
  } else {                                      \
    (y)[l] = (br) * (c) - (bi) * (s);           \
    (y)[L + l] = (br) * (s) + (bi) * (c);       \
  }

// One pass: butterfly<Unit>(q, k) for q < m, k < s, with the q = 0 butterflies (twiddles 1)
// built without their multiplications.
template <class Butterfly>
inline void run_pass(Index m, Index s, Butterfly&& butterfly) {
  for (Index k = 0; k < s; ++k) butterfly(std::true_type{}, 0, k);
  for (Index q = 1; q < m; ++q)
    for (Index k = 0; k < s; ++k) butterfly(std::false_type{}, q, k);
}

template <class Real>
void pass2(const Real* x, Real* y, Index n, Index s, const Real* tw) {
  const Index m = n / 2;
  run_pass(m, s, [&](auto unit, Index q, Index k) {
    constexpr bool Unit = decltype(unit)::value;
    const Real c1 = tw[2 * q], s1 = tw[2 * q + 1];
    const Real* a0 = x + 2 * L * (k + s * q);
    const Real* a1 = a0 + 2 * L * s * m;
    Real* y0 = y + 2 * L * (k + s * (2 * q));
    Real* y1 = y0 + 2 * L * s;
#pragma GCC ivdep
    for (int l = 0; l < L; ++l) {
      y0[l] = a0[l] + a1[l];
      y0[L + l] = a0[L + l] + a1[L + l];
      const Real br = a0[l] - a1[l], bi = a0[L + l] - a1[L + l];
      FOURIERFT_LANE_TWIDDLE(y1, br, bi, c1, s1);
    }
  });
}

template <class Real>
void pass4(const Real* x, Real* y, Index n, Index s, const Real* tw) {
  const Index m = n / 4;
  run_pass(m, s, [&](auto unit, Index q, Index k) {
    constexpr bool Unit = decltype(unit)::value;
    const Real* w = tw + 6 * q;
    const Real c1 = w[0], s1 = w[1], c2 = w[2], s2 = w[3], c3 = w[4], s3 = w[5];
    const Real* a0 = x + 2 * L * (k + s * q);
    const Real* a1 = a0 + 2 * L * s * m;
    const Real* a2 = a1 + 2 * L * s * m;
    const Real* a3 = a2 + 2 * L * s * m;
    Real* y0 = y + 2 * L * (k + s * (4 * q));
    Real* y1 = y0 + 2 * L * s;
    Real* y2 = y1 + 2 * L * s;
    Real* y3 = y2 + 2 * L * s;
#pragma GCC ivdep
    for (int l = 0; l < L; ++l) {
      const Real t0r = a0[l] + a2[l], t0i = a0[L + l] + a2[L + l];
      const Real t1r = a0[l] - a2[l], t1i = a0[L + l] - a2[L + l];
      const Real t2r = a1[l] + a3[l], t2i = a1[L + l] + a3[L + l];
      const Real t3r = a1[l] - a3[l], t3i = a1[L + l] - a3[L + l];
      y0[l] = t0r + t2r;
      y0[L + l] = t0i + t2i;
      // r = 1: t1 − i·t3;  r = 2: t0 − t2;  r = 3: t1 + i·t3
      FOURIERFT_LANE_TWIDDLE(y1, t1r + t3i, t1i - t3r, c1, s1);
      FOURIERFT_LANE_TWIDDLE(y2, t0r - t2r, t0i - t2i, c2, s2);
      FOURIERFT_LANE_TWIDDLE(y3, t1r - t3i, t1i + t3r, c3, s3);
    }
  });
}

// Radix 8 as a radix-2 step, b_j = a_j + a_{j+4} and c_j = (a_j − a_{j+4})·ω^j (ω = e^{−2πi/8},
// j < 4), then two DFT4s: X[2r] = DFT4(b)[r], X[2r+1] = DFT4(c)[r].
template <class Real>
void pass8(const Real* x, Real* y, Index n, Index s, const Real* tw) {
  const Index m = n / 8;
  const Real h = Real(0.70710678118654752440);  // 1/√2
  run_pass(m, s, [&](auto unit, Index q, Index k) {
    constexpr bool Unit = decltype(unit)::value;
    const Real* w = tw + 14 * q;
    const Real* a[8];
    Real* o[8];
    a[0] = x + 2 * L * (k + s * q);
    o[0] = y + 2 * L * (k + s * (8 * q));
    for (int j = 1; j < 8; ++j) a[j] = a[j - 1] + 2 * L * s * m, o[j] = o[j - 1] + 2 * L * s;
#pragma GCC ivdep
    for (int l = 0; l < L; ++l) {
      Real br[4], bi[4], cr[4], ci[4];
      for (int j = 0; j < 4; ++j) {
        br[j] = a[j][l] + a[j + 4][l];
        bi[j] = a[j][L + l] + a[j + 4][L + l];
        cr[j] = a[j][l] - a[j + 4][l];
        ci[j] = a[j][L + l] - a[j + 4][L + l];
      }
      // c1·ω = ((x + y) + i(y − x))/√2;  c2·ω² = y − ix;  c3·ω³ = ((y − x) − i(x + y))/√2
      const Real c1r = h * (cr[1] + ci[1]), c1i = h * (ci[1] - cr[1]);
      const Real c2r = ci[2], c2i = -cr[2];
      const Real c3r = h * (ci[3] - cr[3]), c3i = -h * (cr[3] + ci[3]);
      cr[1] = c1r, ci[1] = c1i, cr[2] = c2r, ci[2] = c2i, cr[3] = c3r, ci[3] = c3i;
      // DFT4 of (b) into outputs 0, 2, 4, 6 and of (c) into 1, 3, 5, 7.
      for (int half = 0; half < 2; ++half) {
        const Real* xr = half == 0 ? br : cr;
        const Real* xi = half == 0 ? bi : ci;
        const Real t0r = xr[0] + xr[2], t0i = xi[0] + xi[2];
        const Real t1r = xr[0] - xr[2], t1i = xi[0] - xi[2];
        const Real t2r = xr[1] + xr[3], t2i = xi[1] + xi[3];
        const Real t3r = xr[1] - xr[3], t3i = xi[1] - xi[3];
        const int r0 = half;  // output index of DFT4 term 0: 2·0 + half
        if (r0 == 0) {
          o[0][l] = t0r + t2r;
          o[0][L + l] = t0i + t2i;
        } else {
          FOURIERFT_LANE_TWIDDLE(o[1], t0r + t2r, t0i + t2i, w[0], w[1]);
        }
        FOURIERFT_LANE_TWIDDLE(o[2 + half], t1r + t3i, t1i - t3r, w[2 * (1 + half)],
                               w[2 * (1 + half) + 1]);
        FOURIERFT_LANE_TWIDDLE(o[4 + half], t0r - t2r, t0i - t2i, w[2 * (3 + half)],
                               w[2 * (3 + half) + 1]);
        FOURIERFT_LANE_TWIDDLE(o[6 + half], t1r - t3i, t1i + t3r, w[2 * (5 + half)],
                               w[2 * (5 + half) + 1]);
      }
    }
  });
}

template <class Real>
void pass3(const Real* x, Real* y, Index n, Index s, const Real* tw) {
  const Index m = n / 3;
  const Real h = Real(0.5), c = Real(0.86602540378443864676);  // sin(2π/3)
  run_pass(m, s, [&](auto unit, Index q, Index k) {
    constexpr bool Unit = decltype(unit)::value;
    const Real c1 = tw[4 * q], s1 = tw[4 * q + 1], c2 = tw[4 * q + 2], s2 = tw[4 * q + 3];
    const Real* a0 = x + 2 * L * (k + s * q);
    const Real* a1 = a0 + 2 * L * s * m;
    const Real* a2 = a1 + 2 * L * s * m;
    Real* y0 = y + 2 * L * (k + s * (3 * q));
    Real* y1 = y0 + 2 * L * s;
    Real* y2 = y1 + 2 * L * s;
#pragma GCC ivdep
    for (int l = 0; l < L; ++l) {
      const Real tr = a1[l] + a2[l], ti = a1[L + l] + a2[L + l];
      const Real dr = a1[l] - a2[l], di = a1[L + l] - a2[L + l];
      const Real mr = a0[l] - h * tr, mi = a0[L + l] - h * ti;
      y0[l] = a0[l] + tr;
      y0[L + l] = a0[L + l] + ti;
      // b1 = m − i·c·d, b2 = m + i·c·d
      FOURIERFT_LANE_TWIDDLE(y1, mr + c * di, mi - c * dr, c1, s1);
      FOURIERFT_LANE_TWIDDLE(y2, mr - c * di, mi + c * dr, c2, s2);
    }
  });
}

template <class Real>
void pass5(const Real* x, Real* y, Index n, Index s, const Real* tw) {
  const Index m = n / 5;
  // cos 2π/5, cos 4π/5, sin 2π/5, sin 4π/5
  const Real c1 = Real(0.30901699437494742410), c2 = Real(-0.80901699437494742410);
  const Real s1 = Real(0.95105651629515357212), s2 = Real(0.58778525229247312917);
  run_pass(m, s, [&](auto unit, Index q, Index k) {
    constexpr bool Unit = decltype(unit)::value;
    const Real* w = tw + 8 * q;
    const Real* a0 = x + 2 * L * (k + s * q);
    const Real* a1 = a0 + 2 * L * s * m;
    const Real* a2 = a1 + 2 * L * s * m;
    const Real* a3 = a2 + 2 * L * s * m;
    const Real* a4 = a3 + 2 * L * s * m;
    Real* y0 = y + 2 * L * (k + s * (5 * q));
    Real* y1 = y0 + 2 * L * s;
    Real* y2 = y1 + 2 * L * s;
    Real* y3 = y2 + 2 * L * s;
    Real* y4 = y3 + 2 * L * s;
#pragma GCC ivdep
    for (int l = 0; l < L; ++l) {
      const Real t1r = a1[l] + a4[l], t1i = a1[L + l] + a4[L + l];
      const Real t2r = a2[l] + a3[l], t2i = a2[L + l] + a3[L + l];
      const Real t3r = a1[l] - a4[l], t3i = a1[L + l] - a4[L + l];
      const Real t4r = a2[l] - a3[l], t4i = a2[L + l] - a3[L + l];
      y0[l] = a0[l] + t1r + t2r;
      y0[L + l] = a0[L + l] + t1i + t2i;
      const Real m1r = a0[l] + c1 * t1r + c2 * t2r, m1i = a0[L + l] + c1 * t1i + c2 * t2i;
      const Real m2r = a0[l] + c2 * t1r + c1 * t2r, m2i = a0[L + l] + c2 * t1i + c1 * t2i;
      // n1 = −i·(s1·t3 + s2·t4), n2 = −i·(s2·t3 − s1·t4);  −i·(u + iv) = v − iu
      const Real u1r = s1 * t3r + s2 * t4r, u1i = s1 * t3i + s2 * t4i;
      const Real u2r = s2 * t3r - s1 * t4r, u2i = s2 * t3i - s1 * t4i;
      FOURIERFT_LANE_TWIDDLE(y1, m1r + u1i, m1i - u1r, w[0], w[1]);  // m1 + n1
      FOURIERFT_LANE_TWIDDLE(y2, m2r + u2i, m2i - u2r, w[2], w[3]);  // m2 + n2
      FOURIERFT_LANE_TWIDDLE(y3, m2r - u2i, m2i + u2r, w[4], w[5]);  // m2 − n2
      FOURIERFT_LANE_TWIDDLE(y4, m1r - u1i, m1i + u1r, w[6], w[7]);  // m1 − n1
    }
  });
}
#undef FOURIERFT_LANE_TWIDDLE

// Rows → lanes: element j of `to` gets x[l·ldx + 2j] (re) and x[l·ldx + 2j + 1] (im) for lanes
// l < rows, zero for the others (H elements).
template <class Real>
void rows_to_lanes(const Real* x, Index ldx, Index rows, Index H, Real* to) {
  for (Index j = 0; j < H; ++j) {
    Real* e = to + 2 * L * j;
    for (Index l = 0; l < L; ++l) {
      e[l] = l < rows ? x[l * ldx + 2 * j] : Real(0);
      e[L + l] = l < rows ? x[l * ldx + 2 * j + 1] : Real(0);
    }
  }
}

// Lanes → rows, conjugating (the inverse transform runs the forward one on conjugates):
// out[l·ldout + 2j] = re_j[l], out[l·ldout + 2j + 1] = −im_j[l], for l < rows.
template <class Real>
void lanes_to_rows_conj(const Real* from, Index H, Real* out, Index ldout, Index rows) {
  for (Index l = 0; l < rows; ++l)
    for (Index j = 0; j < H; ++j) {
      out[l * ldout + 2 * j] = from[2 * L * j + l];
      out[l * ldout + 2 * j + 1] = -from[2 * L * j + L + l];
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
// (GCC 12 warns that its own intrinsics' _mm512_undefined_ps() pass-through is uninitialised.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// A 16 x 16 transpose with AVX-512: out[i·ld_out + j] = in[j·ld_in + i], negated at odd j if
// negate_odd (exact, so the lane moves below give the bits of the loops above).
[[gnu::target("avx512f")]] inline void transpose16(const float* in, Index ld_in, float* out,
                                                   Index ld_out, bool negate_odd) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(in + i * ld_in);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] =
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(
        _mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(
        _mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);       // quarters 0, 2 of r[i], r[4+i]
    t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);   // quarters 1, 3
    t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
    r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xdd);
  }
  const __m512i sign = negate_odd ? _mm512_set_epi32(INT32_MIN, 0, INT32_MIN, 0, INT32_MIN, 0,
                                                    INT32_MIN, 0, INT32_MIN, 0, INT32_MIN, 0,
                                                    INT32_MIN, 0, INT32_MIN, 0)
                                  : _mm512_setzero_si512();
  for (int i = 0; i < 16; ++i)
    _mm512_storeu_ps(out + i * ld_out,
                     _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(r[i]), sign)));
}
#pragma GCC diagnostic pop
#endif

}  // namespace lane_detail

template <class Real>
class LaneFft {
 public:
  static constexpr int lanes = lane_detail::L;

  // The radices of H (8s first, then 4, 2, 3, 5), or empty if H has another prime factor.
  static std::vector<int> radices_of(Index H) {
    std::vector<int> r;
    while (H % 8 == 0) r.push_back(8), H /= 8;
    while (H % 4 == 0) r.push_back(4), H /= 4;
    while (H % 2 == 0) r.push_back(2), H /= 2;
    while (H % 3 == 0) r.push_back(3), H /= 3;
    while (H % 5 == 0) r.push_back(5), H /= 5;
    if (H != 1) r.clear();
    return r;
  }
  // Real rows of length N: N even and N/2 >= 2 a product of 2, 3 and 5.
  static bool supports(Index N) { return N >= 4 && N % 2 == 0 && !radices_of(N / 2).empty(); }

  explicit LaneFft(Index N) : N_(N), H_(N / 2) {
    check<ShapeError>(supports(N), "LaneFft: rows of ", N, " (needs an even length whose half is ",
                      "a product of 2, 3 and 5)");
    Index n = H_, s = 1;
    for (int p : radices_of(H_)) {
      Stage st{p, n, s, {}};
      const Index m = n / p;
      for (Index q = 0; q < m; ++q)
        for (int r = 1; r < p; ++r) {
          const double angle =
              -2.0 * std::numbers::pi * static_cast<double>(r * q) / static_cast<double>(n);
          st.twiddles.push_back(static_cast<Real>(std::cos(angle)));
          st.twiddles.push_back(static_cast<Real>(std::sin(angle)));
        }
      stages_.push_back(std::move(st));
      n = m;
      s *= p;
    }
    for (Index k = 0; k <= H_; ++k) {  // e^{−2πik/N}
      const double angle =
          -2.0 * std::numbers::pi * static_cast<double>(k) / static_cast<double>(N);
      half_turn_.push_back(static_cast<Real>(std::cos(angle)));
      half_turn_.push_back(static_cast<Real>(std::sin(angle)));
    }
  }

  // The transform for rows of N, made once per length and kept (the tables cost ~H sincos).
  static const LaneFft& cached(Index N) { return fourierft::detail::kept_per_size<LaneFft>(N); }

  Index length() const { return N_; }
  Index bins() const { return H_ + 1; }
  // Reals of work space forward / inverse need (two ping-pong arrays of H lane-vectors).
  std::size_t work_size() const { return static_cast<std::size_t>(4 * lanes * H_); }

  // Forward: out[k·16 + l] = Σ_q x[l·ldx + q]·e^{−2πi·kq/N}, k <= N/2, l < 16 (zero for l >= rows).
  void forward(const Real* x, Index ldx, Index rows, std::complex<Real>* out, Real* work) const {
    using namespace lane_detail;
    Real* a = work;
    Real* b = work + 2 * L * H_;
    to_lanes(x, ldx, rows, a);
    fourierft::detail::run_dispatched([&] {
      const Real* z = run_passes(a, b);
      // Z = DFT_H(z), z = x_even + i·x_odd:  E[k] = (Z[k] + conj Z[H−k])/2 (DFT of x_even),
      // O[k] = (Z[k] − conj Z[H−k])/(2i) (of x_odd);  X[k] = E[k] + e^{−2πik/N}·O[k].
      Real* o = reinterpret_cast<Real*>(out);
      for (Index k = 0; k <= H_; ++k) {
        const Real* zk = z + 2 * L * (k == H_ ? 0 : k);
        const Real* zc = z + 2 * L * (k == 0 ? 0 : H_ - k);
        const Real c = half_turn_[2 * k], s = half_turn_[2 * k + 1];
        Real* ok = o + 2 * L * k;
  #pragma GCC ivdep
      for (int l = 0; l < L; ++l) {
          const Real er = Real(0.5) * (zk[l] + zc[l]), ei = Real(0.5) * (zk[L + l] - zc[L + l]);
          const Real orr = Real(0.5) * (zk[L + l] + zc[L + l]), oi = Real(-0.5) * (zk[l] - zc[l]);
          ok[2 * l] = er + (c * orr - s * oi);
          ok[2 * l + 1] = ei + (c * oi + s * orr);
        }
      }
    });
  }

  // Inverse (FFTW's c2r, unnormalised): out[l·ldout + q] = Σ_{k<N} X_l[k]·e^{+2πi·kq/N} over the
  // Hermitian completion of in[k·16 + l], k <= N/2; the imaginary parts of bins 0 and N/2 are
  // ignored, as FFTW's c2r ignores them. Rows l < rows are written.
  void inverse(const std::complex<Real>* in, Real* out, Index ldout, Index rows, Real* work) const {
    using namespace lane_detail;
    Real* a = work;
    Real* b = work + 2 * L * H_;
    const Real* z = nullptr;
    fourierft::detail::run_dispatched([&] {
      // Z'[k] = (A + B) + i·e^{+2πik/N}·(A − B), A = X[k], B = conj X[H−k]: the DFT_H of
      // N·(x_even + i·x_odd)'s conjugate is taken as the forward transform of conj Z'.
      const Real* xin = reinterpret_cast<const Real*>(in);
      for (Index k = 0; k < H_; ++k) {
        const Real* xa = xin + 2 * L * k;
        const Real* xb = xin + 2 * L * (H_ - k);
        const bool edge = k == 0;  // A = X[0], B = conj X[H]: imaginary parts dropped
        const Real c = half_turn_[2 * k], s = -half_turn_[2 * k + 1];  // e^{+2πik/N}
        Real* e = a + 2 * L * k;
  #pragma GCC ivdep
      for (int l = 0; l < L; ++l) {
          const Real ar = xa[2 * l], ai = edge ? Real(0) : xa[2 * l + 1];
          const Real br = xb[2 * l], bi = edge ? Real(0) : -xb[2 * l + 1];
          const Real dr = ar - br, di = ai - bi;
          const Real vr = c * dr - s * di, vi = c * di + s * dr;
          e[l] = (ar + br) - vi;
          e[L + l] = -((ai + bi) + vr);  // conjugated
        }
      }
      z = run_passes(a, b);
    });
    from_lanes(z, out, ldout, rows);
  }

 private:
  struct Stage {
    int radix;
    Index n, s;
    std::vector<Real> twiddles;
  };

  // The Stockham passes from `a`, ping-ponging with `b`; returns where the result ended.
  const Real* run_passes(Real* a, Real* b) const {
    using namespace lane_detail;
    for (const Stage& st : stages_) {
      const Real* tw = st.twiddles.data();
      switch (st.radix) {
        case 8: pass8(a, b, st.n, st.s, tw); break;
        case 4: pass4(a, b, st.n, st.s, tw); break;
        case 2: pass2(a, b, st.n, st.s, tw); break;
        case 3: pass3(a, b, st.n, st.s, tw); break;
        default: pass5(a, b, st.n, st.s, tw); break;
      }
      std::swap(a, b);
    }
    return a;
  }

  void to_lanes(const Real* x, Index ldx, Index rows, Real* a) const {
    using namespace lane_detail;
#if defined(__x86_64__) && defined(__GNUC__)
    if constexpr (std::is_same_v<Real, float>) {
      // The lanes of element j are columns 2j (re) and 2j + 1 (im): a[L·c + l] = x[l·ldx + c].
      if (fourierft::detail::active_isa() == fourierft::detail::Isa::avx512 && rows == L &&
          N_ % 16 == 0) {
        for (Index c0 = 0; c0 < N_; c0 += 16) transpose16(x + c0, ldx, a + L * c0, L, false);
        return;
      }
    }
#endif
    fourierft::detail::run_dispatched([&] { rows_to_lanes(x, ldx, rows, H_, a); });
  }

  void from_lanes(const Real* z, Real* out, Index ldout, Index rows) const {
    using namespace lane_detail;
#if defined(__x86_64__) && defined(__GNUC__)
    if constexpr (std::is_same_v<Real, float>) {
      if (fourierft::detail::active_isa() == fourierft::detail::Isa::avx512 && rows == L &&
          N_ % 16 == 0) {
        for (Index c0 = 0; c0 < N_; c0 += 16) transpose16(z + L * c0, L, out + c0, ldout, true);
        return;
      }
    }
#endif
    fourierft::detail::run_dispatched([&] { lanes_to_rows_conj(z, H_, out, ldout, rows); });
  }

  Index N_, H_;
  std::vector<Stage> stages_;
  std::vector<Real> half_turn_;  // e^{−2πik/N}, k <= H, as (cos, sin)
};

}  // namespace fourierft::ops::spectral
