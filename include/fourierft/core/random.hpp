// fourierft/core/random.hpp — Rng: a seeded, platform-independent random source.
// Distributions are written out (not std::normal_distribution) so a seed gives the same numbers
// with every standard library; randperm is bit-exact with PyTorch's CPU generator.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <vector>

#include "fourierft/core/error.hpp"

namespace fourierft {

class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0) : engine_(seed) {}

  std::uint64_t next_u64() { return engine_(); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n).
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : engine_() % n; }
  // Standard normal by Box-Muller; the second value of each pair is kept for the next call.
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    spare_ = radius * std::sin(2.0 * std::numbers::pi * u2);
    has_spare_ = true;
    return radius * std::cos(2.0 * std::numbers::pi * u2);
  }
  bool bernoulli(double p) { return uniform() < p; }
  // A new independent stream (for dropout masks, data shuffles, ...).
  Rng split() { return Rng(engine_() ^ 0x9E3779B97F4A7C15ull); }

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

// The first k entries of torch.randperm(n, generator=torch.Generator().manual_seed(seed)), bit-exact
// for n < 214,748,364: MT19937 seeded with the low 32 bits; for i = 0..: z = draw() % (n - i),
// swap(r[i], r[i + z]). Position i is final after step i, so k entries need k draws.
inline std::vector<std::int64_t> torch_randperm_prefix(std::int64_t n, std::int64_t k,
                                                       std::uint64_t seed) {
  check(n > 0 && n < 214748364, "torch_randperm_prefix: n = ", n,
        " is outside the supported range (0, 214748364)");
  check(k >= 0 && k <= n, "torch_randperm_prefix: k = ", k, " must be in [0, n = ", n, "]");
  std::mt19937 draw(static_cast<std::uint32_t>(seed));
  std::vector<std::int64_t> r(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) r[static_cast<std::size_t>(i)] = i;
  const std::int64_t steps = std::min(k, n - 1);
  for (std::int64_t i = 0; i < steps; ++i) {
    const std::int64_t z = static_cast<std::int64_t>(draw() % static_cast<std::uint32_t>(n - i));
    std::swap(r[static_cast<std::size_t>(i)], r[static_cast<std::size_t>(i + z)]);
  }
  r.resize(static_cast<std::size_t>(k));
  return r;
}

}  // namespace fourierft
