// fourierft/ops/rotary.hpp — rotary position embeddings as Hugging Face applies them to the LLaMA
// family's queries and keys: inverse frequencies (with linear / dynamic / llama3 scaling), per-row tables, the op.
#pragma once

// HF's convention (modeling_llama.py, modeling_rope_utils.py), per head of D = head_dim values:
//   inv_freq[j] = theta^(-2j / D), j < D/2           (then scaled, see rope_inv_freq)
//   angle[p, j] = p · inv_freq[j] for position p;  cos, sin of it, the same for j and j + D/2
//   rotate_half(x) = (-x[D/2:], x[:D/2]);  x' = x·cos + rotate_half(x)·sin, i.e. for j < D/2
//     x'[j]       = x[j]·cos_j - x[j + D/2]·sin_j
//     x'[j + D/2] = x[j + D/2]·cos_j + x[j]·sin_j
// (the two halves of a head, not interleaved pairs: checkpoints converted from Meta's layout have
// their q/k rows permuted for this). HF computes inv_freq, p·inv_freq and cos/sin in float32; the
// tables here round the same way (inv_freq and the angle to float), so long positions agree.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>
#include <string>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"

namespace fourierft::ops {

// config.json's rope_scaling ("type" or "rope_type"); none when the config has no rope_scaling.
enum class RopeScalingType { none, linear, dynamic, llama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::none;
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  Index original_max_position_embeddings = 8192;  // llama3
};

// The inverse frequencies (D/2) for head_dim D, as HF's rope init functions compute them:
//   none     theta^(-2j/D)
//   linear   theta^(-2j/D) / factor              (positions divided by factor)
//   dynamic  NTK: theta' = theta·(factor·L/M - (factor - 1))^(D/(D-2)) with L = seq_len when it
//            exceeds M = max_position_embeddings (else the plain frequencies); HF recomputes it from
//            max(position_ids) + 1 of each forward call, which is what callers pass as seq_len
//   llama3   wavelength 2π/f above original_max/low_freq_factor: f/factor; below
//            original_max/high_freq_factor: f; between: smooth interpolation of the two
inline std::vector<float> rope_inv_freq(Index D, double theta, const RopeScaling& scaling,
                                        Index max_position_embeddings, Index seq_len) {
  check(D > 0 && D % 2 == 0, "rope_inv_freq: head_dim = ", D, " must be positive and even");
  double base = theta;
  if (scaling.type == RopeScalingType::dynamic && seq_len > max_position_embeddings) {
    const double L = static_cast<double>(seq_len), M = static_cast<double>(max_position_embeddings);
    base = theta * std::pow(scaling.factor * L / M - (scaling.factor - 1.0),
                            static_cast<double>(D) / static_cast<double>(D - 2));
  }
  std::vector<float> inv_freq(static_cast<std::size_t>(D / 2));
  for (Index j = 0; j < D / 2; ++j) {
    // HF: 1 / base^(float(2j) / D) in float32.
    const float exponent = static_cast<float>(2 * j) / static_cast<float>(D);
    double f = 1.0 / static_cast<double>(std::pow(static_cast<float>(base), exponent));
    f = static_cast<float>(f);
    if (scaling.type == RopeScalingType::linear) f = static_cast<float>(f / scaling.factor);
    if (scaling.type == RopeScalingType::llama3) {
      const double old_len = static_cast<double>(scaling.original_max_position_embeddings);
      const double low_wavelen = old_len / scaling.low_freq_factor;
      const double high_wavelen = old_len / scaling.high_freq_factor;
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f = f / scaling.factor;
      } else if (!(wavelen < high_wavelen)) {  // medium: interpolate
        const double smooth = (old_len / wavelen - scaling.low_freq_factor) /
                              (scaling.high_freq_factor - scaling.low_freq_factor);
        f = (1.0 - smooth) * f / scaling.factor + smooth * f;
      }
      f = static_cast<float>(f);
    }
    inv_freq[static_cast<std::size_t>(j)] = static_cast<float>(f);
  }
  return inv_freq;
}

// cos and sin of every row's position: (N, D/2) each, N = the positions given (B·T, row-major).
template <class Real>
struct RotaryTable {
  Tensor<Real> cos, sin;  // (N, D/2)
  Index rows() const { return cos.size(0); }
  Index half() const { return cos.size(1); }
};

template <class Real>
RotaryTable<Real> rotary_table(std::span<const std::int64_t> positions,
                               std::span<const float> inv_freq) {
  const Index N = static_cast<Index>(positions.size()), H = static_cast<Index>(inv_freq.size());
  RotaryTable<Real> table{Tensor<Real>::uninitialized({N, H}), Tensor<Real>::uninitialized({N, H})};
  for (Index n = 0; n < N; ++n) {
    const float p = static_cast<float>(positions[static_cast<std::size_t>(n)]);
    for (Index j = 0; j < H; ++j) {
      const float angle = p * inv_freq[static_cast<std::size_t>(j)];  // float, as HF's matmul
      table.cos[n * H + j] = static_cast<Real>(static_cast<float>(std::cos(double(angle))));
      table.sin[n * H + j] = static_cast<Real>(static_cast<float>(std::sin(double(angle))));
    }
  }
  return table;
}

// ---------------------------------------------------------------------------
// rotary: x: (N, heads·D) rows (any leading dims, N = B·T matching the table's rows), every head
// rotated by its row's angles (see the top of this file). y may be x itself (in place).
//   forward  (sign = +1):  y[j] = x[j]·c - x[j+h]·s,   y[j+h] = x[j+h]·c + x[j]·s     (h = D/2)
//   backward (sign = -1):  the transpose, i.e. the rotation by -angle, applied to dy
template <class Real>
void rotary_apply(std::span<Real> y, std::span<const Real> x, const RotaryTable<Real>& table,
                  Index heads, Real sign, bool accumulate = false) {
  const Index N = table.rows(), h = table.half(), D = 2 * h, W = heads * D;
  const Real* cos = table.cos.ptr();
  const Real* sin = table.sin.ptr();
#pragma omp parallel for if (N * W > 32768)
  for (Index n = 0; n < N; ++n) {
    const Real* c = cos + n * h;
    const Real* s = sin + n * h;
    for (Index head = 0; head < heads; ++head) {
      const Real* a = x.data() + n * W + head * D;
      Real* out = y.data() + n * W + head * D;
      if (accumulate) {
#pragma omp simd
        for (Index j = 0; j < h; ++j) {
          const Real x1 = a[j], x2 = a[j + h], sj = sign * s[j];
          out[j] += x1 * c[j] - x2 * sj;
          out[j + h] += x2 * c[j] + x1 * sj;
        }
      } else {
#pragma omp simd
        for (Index j = 0; j < h; ++j) {
          const Real x1 = a[j], x2 = a[j + h], sj = sign * s[j];
          out[j] = x1 * c[j] - x2 * sj;
          out[j + h] = x2 * c[j] + x1 * sj;
        }
      }
    }
  }
}

namespace detail {
template <class Real>
Index rotary_heads(const char* op, const Var<Real>& x, const RotaryTable<Real>& table) {
  const Index D = 2 * table.half();
  check<ShapeError>(x.dim() >= 2 && D > 0 && x.size(-1) % D == 0 && x.numel() / x.size(-1) ==
                                                                        table.rows(),
                    op, ": x has shape ", shape_str(x.shape()), " but the table holds ",
                    table.rows(), " rows of head_dim ", D, " (x must be (..., heads·head_dim) with ",
                    "one row per position)");
  return x.size(-1) / D;
}
}  // namespace detail

// y = rope(x): x (..., heads·D), table with one row per leading index.
template <class Real>
Var<Real> rotary(Tape<Real>& tape, const Var<Real>& x, const RotaryTable<Real>& table) {
  const Index heads = detail::rotary_heads("rotary", x, table);
  Var<Real> y = tape.output_uninitialized(x.shape());
  rotary_apply<Real>(y.data(), x.data(), table, heads, Real(1));
  tape.record("rotary", {x}, y, [=](std::span<const Real> dy) {
    const std::span<Real> dx = grad_if_needed(x);
    if (!dx.empty()) rotary_apply<Real>(dx, dy, table, heads, Real(-1), true);
  });
  return y;
}

// The same, rotating x's storage in place (no copy of q or k): the result shares x's value, so x
// itself must not be read again, by later ops or by the backward of the op that made it. That
// holds for the outputs of linear (its backward reads its input and weight), rms_norm (its input)
// and reshape, which is where the decoder uses it.
template <class Real>
Var<Real> rotary_inplace(Tape<Real>& tape, const Var<Real>& x, const RotaryTable<Real>& table) {
  const Index heads = detail::rotary_heads("rotary_inplace", x, table);
  Var<Real> y(x.value());  // the same storage, a gradient of its own
  rotary_apply<Real>(y.data(), x.data(), table, heads, Real(1));
  tape.record("rotary", {x}, y, [=](std::span<const Real> dy) {
    const std::span<Real> dx = grad_if_needed(x);
    if (!dx.empty()) rotary_apply<Real>(dx, dy, table, heads, Real(-1), true);
  });
  return y;
}

}  // namespace fourierft::ops
