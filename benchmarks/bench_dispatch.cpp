// bench_dispatch — fourierft's dispatched row kernels (detail/isa.hpp) at GPT-2 small's shapes
// (8 × 128 tokens, C = 768, 12 heads, vocabulary 50257), timed at each ISA level the CPU has.
// One TSV row per kernel: ms per call at baseline / avx2 / avx512 (best of the rounds; the levels
// interleaved round by round, so a shared machine's load hits them alike). Single thread.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "fourierft/core/random.hpp"
#include "fourierft/detail/isa.hpp"
#include "fourierft/ops/attention.hpp"
#include "fourierft/ops/linear_cross_entropy.hpp"
#include "fourierft/ops/norm.hpp"

using fourierft::Index;
using fourierft::detail::Isa;

namespace {

std::vector<float> random_floats(std::size_t n, std::uint64_t seed, double scale) {
  fourierft::Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(scale * rng.normal());
  return v;
}

double time_ms(const std::function<void()>& run) {
  const auto start = std::chrono::steady_clock::now();
  run();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main() {
  constexpr Index N = 1024, C = 768, T = 128, heads = 96, V = 50257, ce_rows = 16;
  const auto x = random_floats(N * C, 1, 2.0), gamma = random_floats(C, 2, 1.0),
             beta = random_floats(C, 3, 1.0), dy = random_floats(N * C, 4, 1.0);
  const auto scores = random_floats(heads * T * T, 5, 3.0), logits = random_floats(ce_rows * V, 6, 4.0);
  std::vector<float> y(N * C), mean(N), rstd(N), dx(N * C), dgamma(C), dbeta(C), probs(scores.size()),
      rows(logits.size());

  struct Case {
    std::string name;
    std::function<void()> run;
  };
  const std::vector<Case> cases = {
      {"layer_norm_forward (1024 x 768)",
       [&] { fourierft::ops::layer_norm_forward<float>(y, mean, rstd, x, gamma, beta, N, C, 1e-5f); }},
      {"layer_norm_backward (1024 x 768)",
       [&] {
         fourierft::ops::layer_norm_backward<float>(dx, dgamma, dbeta, dy, x, gamma, mean, rstd, N, C);
       }},
      {"rms_norm_forward (1024 x 768)",
       [&] { fourierft::ops::rms_norm_forward<float>(y, rstd, x, gamma, N, C, 1e-6f); }},
      {"causal softmax rows (96 heads x 128 x 128)",
       [&] {
         std::copy(scores.begin(), scores.end(), probs.begin());
         for (Index r = 0; r < heads * T; ++r)
           fourierft::ops::masked_softmax_row<float>(
               std::span<float>(probs.data() + r * T, T), r % T + 1, {});
       }},
      {"cross_entropy_row to gradient (16 x 50257)",
       [&] {
         std::copy(logits.begin(), logits.end(), rows.begin());
         for (Index r = 0; r < ce_rows; ++r)
           fourierft::ops::detail::cross_entropy_row<float>(rows.data() + r * V, V, 7, 0.f, true, 1.f);
       }},
  };
  const std::vector<Isa> levels = [] {
    std::vector<Isa> l;
    for (Isa isa : {Isa::baseline, Isa::avx2, Isa::avx512})
      if (isa <= fourierft::detail::detected_isa()) l.push_back(isa);
    return l;
  }();
  std::printf("kernel");
  for (Isa isa : levels) std::printf("\t%s_ms", fourierft::detail::isa_name(isa));
  std::printf("\n");
  constexpr int rounds = 15;
  for (const Case& c : cases) {
    std::vector<double> best(levels.size(), std::numeric_limits<double>::infinity());
    for (int round = 0; round < rounds; ++round)
      for (std::size_t l = 0; l < levels.size(); ++l) {
        fourierft::detail::set_active_isa(levels[l]);
        best[l] = std::min(best[l], time_ms(c.run));
      }
    std::printf("%s", c.name.c_str());
    for (double ms : best) std::printf("\t%.3f", ms);
    std::printf("\n");
  }
  fourierft::detail::set_active_isa(fourierft::detail::detected_isa());
}
