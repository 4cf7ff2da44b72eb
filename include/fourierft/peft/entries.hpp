// fourierft/peft/entries.hpp — which n positions (row, col) of a d_out × d_in spectrum FourierFT
// learns: uniform (bit-exact with PEFT's seeded randperm) or frequency-biased (paper eq. 5).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"

namespace fourierft::peft {

// The sampled spectral entries of one weight shape. Entry l (0 <= l < n) is (rows[l], cols[l]);
// coefficient l of every layer of this shape lives there. Order matters: it is PEFT's order.
struct SpectralEntries {
  Index d_out = 0, d_in = 0;
  std::vector<std::int64_t> rows, cols;
  Index n() const { return static_cast<Index>(rows.size()); }
  bool operator==(const SpectralEntries&) const = default;
};

inline void check_entry_count(const char* who, Index d_out, Index d_in, Index n) {
  check(d_out > 0 && d_in > 0, who, ": weight shape (", d_out, ", ", d_in, ") must be positive");
  // d_out·d_in must not overflow (an adapter file's entry-tensor name can claim any shape).
  check(d_out <= (Index{1} << 40) / d_in, who, ": weight shape (", d_out, ", ", d_in,
        ") has more than 2^40 entries");
  check(n > 0 && n <= d_out * d_in, who, ": n = ", n, " spectral coefficients do not fit a (",
        d_out, ", ", d_in, ") weight: need 1 <= n <= ", d_out * d_in);
}

// PEFT's entries: idx = torch.randperm(d_out·d_in, generator seeded with `seed`)[:n];
// row = idx / d_in, col = idx % d_in (row-major over (d_out, d_in)). Every layer of the same shape
// gets the same entries: the paper's shared entry matrix.
inline SpectralEntries uniform_entries(Index d_out, Index d_in, Index n, std::uint64_t seed = 777) {
  check_entry_count("uniform_entries", d_out, d_in, n);
  SpectralEntries e{d_out, d_in, {}, {}};
  for (std::int64_t idx : torch_randperm_prefix(d_out * d_in, n, seed)) {
    e.rows.push_back(idx / d_in);
    e.cols.push_back(idx % d_in);
  }
  return e;
}

// Paper eq. 5, the Gaussian band-pass that favours frequencies near f_c:
//   p(u, v) = exp(−((D² − f_c²) / (D·W))²)
// D = distance of (u, v) from the centre of the centred (fftshift-ed) spectrum, i.e. the
// magnitude of the signed frequency (u' = u or u − d_out, v' likewise): D = sqrt(u'² + v'²).
// At D = 0 the limit is 1 when f_c = 0 and 0 otherwise.
inline double band_pass_probability(Index u, Index v, Index d_out, Index d_in, double fc, double W) {
  const double du = static_cast<double>(u <= d_out / 2 ? u : u - d_out);
  const double dv = static_cast<double>(v <= d_in / 2 ? v : v - d_in);
  const double D = std::sqrt(du * du + dv * dv);
  if (D == 0.0) return fc == 0.0 ? 1.0 : 0.0;
  const double z = (D * D - fc * fc) / (D * W);
  return std::exp(-z * z);
}

// n distinct entries drawn without replacement with probability proportional to eq. 5
// (Efraimidis–Spirakis: keep the n largest keys log(U) / p). Seeded and reproducible; the result is
// ordered by decreasing key, i.e. in draw order.
inline SpectralEntries frequency_biased_entries(Index d_out, Index d_in, Index n, double fc,
                                                double W, std::uint64_t seed = 777) {
  check_entry_count("frequency_biased_entries", d_out, d_in, n);
  check(W > 0 && fc >= 0, "frequency_biased_entries: need band width W > 0 and f_c >= 0, got W = ",
        W, ", f_c = ", fc);
  Rng rng(seed);
  std::vector<std::pair<double, std::int64_t>> keys;
  keys.reserve(static_cast<std::size_t>(d_out * d_in));
  for (Index u = 0; u < d_out; ++u)
    for (Index v = 0; v < d_in; ++v) {
      const double p = band_pass_probability(u, v, d_out, d_in, fc, W);
      double r = rng.uniform();
      while (r <= 0.0) r = rng.uniform();
      if (p > 1e-300) keys.emplace_back(std::log(r) / p, u * d_in + v);
    }
  check(static_cast<Index>(keys.size()) >= n, "frequency_biased_entries: only ", keys.size(),
        " entries of the (", d_out, ", ", d_in, ") spectrum have non-zero probability at f_c = ",
        fc, ", W = ", W, "; cannot draw n = ", n);
  std::partial_sort(keys.begin(), keys.begin() + n, keys.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  SpectralEntries e{d_out, d_in, {}, {}};
  for (Index l = 0; l < n; ++l) {
    e.rows.push_back(keys[static_cast<std::size_t>(l)].second / d_in);
    e.cols.push_back(keys[static_cast<std::size_t>(l)].second % d_in);
  }
  return e;
}

// Entries given explicitly (e.g. loaded from an adapter file); checks range and distinctness.
inline SpectralEntries explicit_entries(Index d_out, Index d_in, std::vector<std::int64_t> rows,
                                        std::vector<std::int64_t> cols) {
  check(rows.size() == cols.size(), "explicit_entries: ", rows.size(), " rows but ", cols.size(),
        " cols");
  check_entry_count("explicit_entries", d_out, d_in, static_cast<Index>(rows.size()));
  std::vector<std::int64_t> flat;
  for (std::size_t l = 0; l < rows.size(); ++l) {
    check<IndexError>(rows[l] >= 0 && rows[l] < d_out && cols[l] >= 0 && cols[l] < d_in,
                      "explicit_entries: entry ", l, " = (", rows[l], ", ", cols[l],
                      ") is outside the (", d_out, ", ", d_in, ") spectrum");
    flat.push_back(rows[l] * d_in + cols[l]);
  }
  std::sort(flat.begin(), flat.end());
  check(std::adjacent_find(flat.begin(), flat.end()) == flat.end(),
        "explicit_entries: the entries are not distinct");
  return SpectralEntries{d_out, d_in, std::move(rows), std::move(cols)};
}

}  // namespace fourierft::peft
