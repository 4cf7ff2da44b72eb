// Tests of include/fourierft/detail/isa.hpp: every kernel that runs through run_dispatched gives
// bit-identical results at each ISA level this CPU supports (baseline, AVX2, AVX-512), except the
// float activations, whose AVX-512 loops are held within a few ulp of the lower levels' Eigen path.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numbers>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fourierft/core/random.hpp"
#include "fourierft/detail/isa.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/ops/attention.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/linear_cross_entropy.hpp"
#include "fourierft/ops/norm.hpp"
#include "fourierft/ops/reduce.hpp"
#include "fourierft/peft/fourierft_op.hpp"

using fourierft::Index;
using fourierft::detail::Isa;

namespace {

std::vector<float> random_floats(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  fourierft::Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(scale * rng.normal());
  return v;
}

// Runs compute() (which fills and returns its outputs) at each supported level and checks that
// every level's bytes equal the baseline's. Restores the level in use afterwards.
template <class Output>
void check_same_at_every_level(const std::function<Output()>& compute) {
  const Isa before = fourierft::detail::set_active_isa(Isa::baseline);
  const Output reference = compute();
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    if (isa > fourierft::detail::detected_isa()) continue;
    fourierft::detail::set_active_isa(isa);
    const std::string level = fourierft::detail::isa_name(isa);
    CAPTURE(level);
    const Output got = compute();
    REQUIRE(got.size() == reference.size());
    CHECK(std::memcmp(got.data(), reference.data(), sizeof(got[0]) * got.size()) == 0);
  }
  fourierft::detail::set_active_isa(before);
}

}  // namespace

TEST_CASE("set_active_isa never goes above the CPU's level") {
  const Isa before = fourierft::detail::set_active_isa(Isa::avx512);
  CHECK(fourierft::detail::active_isa() == fourierft::detail::detected_isa());
  fourierft::detail::set_active_isa(Isa::baseline);
  CHECK(fourierft::detail::active_isa() == Isa::baseline);
  fourierft::detail::set_active_isa(before);
  MESSAGE("this CPU: ", fourierft::detail::isa_name(fourierft::detail::detected_isa()));
}

TEST_CASE("run_dispatched: the same kernel body gives the same bits at every level") {
  // a·b + c over an odd length: a contracted FMA would round once and differ in the last bit.
  const std::size_t n = 1003;
  const auto a = random_floats(n, 1), b = random_floats(n, 2), c = random_floats(n, 3);
  check_same_at_every_level<std::vector<float>>([&] {
    std::vector<float> y(n);
    fourierft::detail::run_dispatched([&] {
      for (std::size_t i = 0; i < n; ++i) y[i] = a[i] * b[i] + c[i];
    });
    return y;
  });
}

TEST_CASE("layer_norm forward and backward match across ISA levels") {
  const Index N = 37, C = 203;  // C not a multiple of any vector width
  const auto x = random_floats(N * C, 4, 3.0), gamma = random_floats(C, 5), beta = random_floats(C, 6);
  const auto dy = random_floats(N * C, 7);
  check_same_at_every_level<std::vector<float>>([&] {
    std::vector<float> y(N * C), mean(N), rstd(N), dx(N * C, 0.5f), dgamma(C, 0.f), dbeta(C, 0.f);
    fourierft::ops::layer_norm_forward<float>(y, mean, rstd, x, gamma, beta, N, C, 1e-5f);
    fourierft::ops::layer_norm_backward<float>(dx, dgamma, dbeta, dy, x, gamma, mean, rstd, N, C);
    std::vector<float> all = y;
    for (const auto* part : {&mean, &rstd, &dx, &dgamma, &dbeta})
      all.insert(all.end(), part->begin(), part->end());
    return all;
  });
}

TEST_CASE("rms_norm forward and backward match across ISA levels") {
  const Index N = 29, C = 211;
  const auto x = random_floats(N * C, 14, 2.0), weight = random_floats(C, 15), dy = random_floats(N * C, 16);
  check_same_at_every_level<std::vector<float>>([&] {
    std::vector<float> y(N * C), rstd(N), dx(N * C, -0.25f), dweight(C, 0.f);
    fourierft::ops::rms_norm_forward<float>(y, rstd, x, weight, N, C, 1e-6f);
    fourierft::ops::rms_norm_backward<float>(dx, dweight, dy, x, weight, rstd, N, C);
    std::vector<float> all = y;
    for (const auto* part : {&rstd, &dx, &dweight}) all.insert(all.end(), part->begin(), part->end());
    return all;
  });
}

TEST_CASE("masked_softmax_row matches across ISA levels, with and without a key mask") {
  const Index Tk = 77;
  const auto scores = random_floats(Tk, 8, 4.0);
  std::vector<std::int64_t> mask(Tk, 1);
  for (Index j = 0; j < Tk; j += 5) mask[j] = 0;
  check_same_at_every_level<std::vector<float>>([&] {
    std::vector<float> plain = scores, masked = scores, windowed = scores;
    fourierft::ops::masked_softmax_row<float>(plain, Tk, {});
    fourierft::ops::masked_softmax_row<float>(masked, Tk, mask);
    fourierft::ops::masked_softmax_row<float>(windowed, Tk - 3, {}, 11);
    plain.insert(plain.end(), masked.begin(), masked.end());
    plain.insert(plain.end(), windowed.begin(), windowed.end());
    return plain;
  });
}

TEST_CASE("attention forward and backward (softmax rows, dS rows) match across ISA levels") {
  fourierft::Rng rng(12);
  const auto q = fourierft::randn<float>({2, 19, 12}, rng), k = fourierft::randn<float>({2, 19, 12}, rng),
             v = fourierft::randn<float>({2, 19, 12}, rng), dy = fourierft::randn<float>({2, 19, 12}, rng);
  const std::vector<std::int64_t> mask = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                          1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0};
  check_same_at_every_level<std::vector<float>>([&] {
    fourierft::Tape<float> tape;
    using fourierft::Var;
    Var<float> vq = Var<float>::parameter(q.clone()), vk = Var<float>::parameter(k.clone()),
               vv = Var<float>::parameter(v.clone());
    Var<float> y = fourierft::ops::attention(tape, vq, vk, vv, 3,
                                             {.causal = true, .key_padding_mask = mask});
    tape.backward(y, dy);
    std::vector<float> all(y.data().begin(), y.data().end());
    for (Var<float>* p : {&vq, &vk, &vv})
      all.insert(all.end(), p->grad().data().begin(), p->grad().data().end());
    return all;
  });
}

TEST_CASE("cross_entropy_row (linear_cross_entropy's rows) matches across ISA levels") {
  const Index V = 1001;
  const auto logits = random_floats(V, 13, 5.0);
  check_same_at_every_level<std::vector<float>>([&] {
    std::vector<float> all;
    for (float eps : {0.f, 0.1f}) {
      std::vector<float> row = logits;
      const float loss_only = fourierft::ops::detail::cross_entropy_row<float>(
          row.data(), V, 17, eps, false, 1.f);
      const float loss = fourierft::ops::detail::cross_entropy_row<float>(row.data(), V, 17, eps,
                                                                          true, 0.25f);
      all.push_back(loss_only);
      all.push_back(loss);
      all.insert(all.end(), row.begin(), row.end());
    }
    return all;
  });
}

TEST_CASE("FourierFT block kernels (sparse columns, gather, scatter, add_rows) match across ISA levels") {
  namespace d = fourierft::peft::detail;
  const Index M = 48, bins = 25;  // (bins × 16) complex blocks
  const std::size_t count = 40;
  std::vector<d::SparseNonzero<float>> nonzeros;
  std::vector<d::GatherEntry<float>> entries;
  std::vector<d::ScatterTerm<float>> terms;
  for (std::size_t k = 0; k < count; ++k) {
    const Index u = static_cast<Index>((7 * k + 3) % bins), v = static_cast<Index>((11 * k) % bins);
    nonzeros.push_back({u, v, 0.25f * static_cast<float>(k) - 3.f});
    entries.push_back({u, v, k % 3 == 0 ? -1.f : 1.f, static_cast<Index>(k % 13)});
    terms.push_back({u, v, 0.1f * static_cast<float>(k) - 1.f, k % 2 == 0 ? -1.f : 1.f});
  }
  const auto vectors = random_floats(64 * std::max<std::size_t>(count, static_cast<std::size_t>(M)), 9), spectra_a = random_floats(32 * bins, 10),
             spectra_b = random_floats(32 * bins, 11);
  std::vector<std::complex<float>> twiddle(M);
  for (Index m = 0; m < M; ++m)
    twiddle[m] = std::polar(1.f, static_cast<float>(2 * std::numbers::pi * m / M));
  check_same_at_every_level<std::vector<double>>([&] {
    std::vector<float> a(32 * bins, 0.f), out = spectra_b;
    std::vector<double> acc(13, 0.0);
    d::sparse_columns_block<float>(a.data(), nonzeros.data(), count, vectors.data(), twiddle.data(),
                                   M, 5);
    d::gather_block<float>(spectra_a.data(), spectra_b.data(), entries.data(), count, acc.data());
    d::scatter_block<float>(out.data(), spectra_a.data(), terms.data(), count);
    d::add_rows<float>(out.data() + 3, 40, vectors.data(), 7, 37);  // 7 rows of 37, 40 apart
    std::vector<double> all = acc;
    all.insert(all.end(), a.begin(), a.end());
    all.insert(all.end(), out.begin(), out.end());
    return all;
  });
}

TEST_CASE("LaneFft forward and inverse (16 rows in SIMD lanes) match across ISA levels") {
  // Lengths 768 (radices 4, 4, 4, 2, 3: at avx512 the 16 x 16 transposes move the lanes) and
  // 200 (4, 4, 2, 5... of H = 100; 200 % 16 != 0: the scalar lane moves), full and partial blocks.
  for (Index N : {Index(768), Index(200)})
    for (Index rows : {Index(16), Index(9)}) {
      CAPTURE(N);
      CAPTURE(rows);
      const Index ld = N + 3;
      const auto x = random_floats(static_cast<std::size_t>(16 * ld), 21);
      const auto half = random_floats(static_cast<std::size_t>(32 * (N / 2 + 1)), 22);
      const fourierft::ops::spectral::LaneFft<float> fft(N);
      check_same_at_every_level<std::vector<float>>([&] {
        std::vector<float> work(fft.work_size()), out(32 * (N / 2 + 1)), rows_out(16 * ld, 0.f);
        fft.forward(x.data(), ld, rows, reinterpret_cast<std::complex<float>*>(out.data()),
                    work.data());
        std::vector<float> in = half;
        fft.inverse(reinterpret_cast<const std::complex<float>*>(in.data()), rows_out.data(), ld,
                    rows, work.data());
        out.insert(out.end(), rows_out.begin(), rows_out.end());
        return out;
      });
    }
}

TEST_CASE("activations at avx512 (loops over exp_fast) are as accurate as the Eigen path") {
  // GELU (both forms), SiLU and swiglu, forward and backward, float: the AVX-512 loops and the Eigen
  // expressions the lower levels run, each against the same formulas in double with std::tanh /
  // std::erf / std::exp. Inputs span the activations' range, tails included. Error measure:
  // |got − exact| / (1 + |exact|), the worst over all entries.
  if (fourierft::detail::detected_isa() < Isa::avx512) {
    MESSAGE("skipped: this CPU has no AVX-512, so only the Eigen path exists here");
    return;
  }
  namespace ops = fourierft::ops;
  const std::size_t n = 40000;  // more than two of parallel_chunks' 16384-entry chunks
  std::vector<float> x = random_floats(n, 81, 3.0), up = random_floats(n, 82), dy = random_floats(n, 83);
  x[0] = 0.0f, x[1] = -30.0f, x[2] = 30.0f, x[3] = -100.0f, x[4] = 100.0f, x[5] = 1e-6f;
  struct Outputs {
    std::vector<double> y, dx, dup;
  };
  const double k = std::sqrt(2.0 / std::numbers::pi), c = 0.044715;
  auto exact = [&](const std::string& which) {
    Outputs o{std::vector<double>(n), std::vector<double>(n, 0.25), std::vector<double>(n, -0.5)};
    for (std::size_t i = 0; i < n; ++i) {
      const double v = x[i], g = dy[i];
      if (which == "gelu_exact") {
        const double cdf = 0.5 * (1 + std::erf(v / std::sqrt(2.0)));
        o.y[i] = v * cdf;
        o.dx[i] += g * (cdf + v * std::exp(-0.5 * v * v) / std::sqrt(2 * std::numbers::pi));
      } else if (which == "gelu_tanh") {
        const double t = std::tanh(k * (v + c * v * v * v));
        o.y[i] = 0.5 * v * (1 + t);
        o.dx[i] += g * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * c * v * v));
      } else {
        const double sig = 1 / (1 + std::exp(-v)), u = which == "silu" ? 1.0 : double(up[i]);
        o.y[i] = v * sig * u;
        o.dx[i] += g * u * sig * (1 + v * (1 - sig));
        if (which == "swiglu") o.dup[i] += g * v * sig;
      }
    }
    return o;
  };
  auto run = [&](const std::string& which) {
    std::vector<float> y(n), dx(n, 0.25f), dup(n, -0.5f);
    if (which == "gelu_exact" || which == "gelu_tanh") {
      const auto form = which == "gelu_exact" ? ops::GeluForm::exact : ops::GeluForm::tanh;
      ops::gelu_forward<float>(form, y, x);
      ops::gelu_backward<float>(form, dx, dy, x);
    } else if (which == "silu") {
      ops::silu_forward<float>(y, x);
      ops::silu_backward<float>(dx, dy, x);
    } else {
      ops::swiglu_forward<float>(y, x, up);
      ops::swiglu_backward<float>(dx, dup, dy, x, up);
    }
    return Outputs{{y.begin(), y.end()}, {dx.begin(), dx.end()}, {dup.begin(), dup.end()}};
  };
  auto worst = [](const std::vector<double>& got, const std::vector<double>& want) {
    double w = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      REQUIRE(std::isfinite(got[i]));
      w = std::max(w, std::abs(got[i] - want[i]) / (1.0 + std::abs(want[i])));
    }
    return w;
  };
  for (const std::string which : {"gelu_exact", "gelu_tanh", "silu", "swiglu"}) {
    CAPTURE(which);
    const Outputs want = exact(which);
    const Isa before = fourierft::detail::set_active_isa(Isa::avx2);
    const Outputs eigen = run(which);
    fourierft::detail::set_active_isa(Isa::avx512);
    const Outputs loops = run(which);
    fourierft::detail::set_active_isa(before);
    for (const auto& [name, member] : {std::pair{std::string("y"), &Outputs::y},
                                       {std::string("dx"), &Outputs::dx},
                                       {std::string("dup"), &Outputs::dup}}) {
      CAPTURE(name);
      const double e_loops = worst(loops.*member, want.*member), e_eigen = worst(eigen.*member, want.*member);
      MESSAGE(which, " ", name, ": avx512 loops ", e_loops, ", Eigen ", e_eigen);
      // The tanh form's derivative loses ~1e-5 in float near saturation on either path (1 − t² of
      // a t within an ulp of 1, times 0.5·v·k·(1 + 3c·v²) ~ 40 at |v| ~ 9): both bounded, and the
      // loops never worse than twice the Eigen path.
      CHECK(e_loops < 1e-5);
      CHECK(e_loops <= std::max(2 * e_eigen, 5e-7));
    }
  }
  // gelu_backward writing a fresh gradient (accumulate = false) over garbage (NaN) gives what
  // adding into zeros gives, on both paths.
  for (const Isa isa : {Isa::avx2, Isa::avx512}) {
    if (isa > fourierft::detail::detected_isa()) continue;
    const Isa before = fourierft::detail::set_active_isa(isa);
    for (const auto form : {ops::GeluForm::exact, ops::GeluForm::tanh}) {
      std::vector<float> added(n, 0.f), written(n, std::nanf(""));
      ops::gelu_backward<float>(form, added, dy, x);
      ops::gelu_backward<float>(form, written, dy, x, false);
      bool same = true;  // (== rather than bytes: 0 + (−0) is +0)
      for (std::size_t i = 0; i < n; ++i) same = same && added[i] == written[i];
      CHECK(same);
    }
    fourierft::detail::set_active_isa(before);
  }
}
