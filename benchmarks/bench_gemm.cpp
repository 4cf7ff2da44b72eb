// bench_gemm — GFLOP/s of fourierft's linear layer (forward; backward for dx only, as for a frozen
// weight under PEFT; backward for dx and dW) at BERT-base/GPT-2 sizes, beside the same matrix
// products called directly through cblas_sgemm and through Eigen's own GEMM, in the same run.
//
//   build/benchmarks/bench_gemm            (2 threads unless FOURIERFT_NUM_THREADS says otherwise)
//
// One TSV row per case: N x d_in -> d_out, the op, the median time of the library's call, and the
// GFLOP/s of the library, of cblas and of Eigen: medians of 9 rounds after 2 warm-ups, each round
// running the three once, so load from other processes hits them alike. A GEMM of (M x K)·(K x N)
// counts 2·M·N·K flops; dx+dW is two of them. The library adds the bias in forward, which the
// baselines do not. fourierft_vs_cblas is the speed ratio (cblas time / library time): 1.00 means
// the library adds nothing over a bare cblas call.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <span>
#include <vector>

#include "fourierft/core/parallel.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/detail/gemm.hpp"
#include "fourierft/ops/linalg.hpp"

using namespace fourierft;

namespace {

// Median wall times (ms) of several functions, measured interleaved — one run of each per round —
// so a busy machine slows them alike and the comparison stays fair.
std::vector<double> median_ms(const std::vector<std::function<void()>>& fs, int warmup = 2,
                              int repeats = 9) {
  for (int i = 0; i < warmup; ++i)
    for (const auto& f : fs) f();
  std::vector<std::vector<double>> ms(fs.size());
  for (int i = 0; i < repeats; ++i)
    for (std::size_t k = 0; k < fs.size(); ++k) {
      const auto start = std::chrono::steady_clock::now();
      fs[k]();
      ms[k].push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
    }
  std::vector<double> medians;
  for (auto& m : ms) {
    std::nth_element(m.begin(), m.begin() + repeats / 2, m.end());
    medians.push_back(m[repeats / 2]);
  }
  return medians;
}

double gflops(double flops, double ms) { return flops / (ms * 1e6); }

// One GEMM in the three implementations: C = A·op(B) + beta·C etc., row-major, as detail::gemm.
struct Gemm {
  bool trans_a, trans_b;
  Index M, N, K;
  const float* A;
  Index lda;
  const float* B;
  Index ldb;
  float beta;
  float* C;
  Index ldc;
};
void run_eigen(const Gemm& g) {
  detail::eigen_gemm<float>(g.trans_a, g.trans_b, g.M, g.N, g.K, 1.0f, g.A, g.lda, g.B, g.ldb,
                            g.beta, g.C, g.ldc);
}
#ifdef FOURIERFT_USE_BLAS
void run_cblas(const Gemm& g) {
  cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
              g.trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(g.M), static_cast<int>(g.N),
              static_cast<int>(g.K), 1.0f, g.A, static_cast<int>(g.lda), g.B,
              static_cast<int>(g.ldb), g.beta, g.C, static_cast<int>(g.ldc));
}
#endif

}  // namespace

int main() {
  if (const char* env = std::getenv("FOURIERFT_NUM_THREADS"); env == nullptr || *env == '\0')
    set_num_threads(2);
  const int threads = num_threads();

  std::printf(
      "case\tN\td_in\td_out\tthreads\tfourierft_ms\tfourierft_gflops\tcblas_gflops\t"
      "eigen_gflops\tfourierft_vs_cblas\n");
  const Index N = 1024, d_in = 768;
  for (const Index d_out : {Index(768), Index(3072)}) {
    Rng rng(1);
    Tensor<float> x = randn<float>({N, d_in}, rng), w = randn<float>({d_out, d_in}, rng);
    Tensor<float> b = randn<float>({d_out}, rng), dy = randn<float>({N, d_out}, rng);
    Tensor<float> y({N, d_out}), dx({N, d_in}), dw({d_out, d_in});
    const auto layout = ops::WeightLayout::out_in;
    const double gemm_flops = 2.0 * static_cast<double>(N * d_in * d_out);

    // The GEMMs the library's linear performs (nn.Linear layout):
    //   y  = x·Wᵀ        (N, d_out)
    //   dx += dy·W       (N, d_in)
    //   dW += dyᵀ·x      (d_out, d_in)
    const Gemm forward{false, true,    N,    d_out, d_in,    x.ptr(),
                       d_in,  w.ptr(), d_in, 0.0f,  y.ptr(), d_out};
    const Gemm grad_x{false, false,   N,    d_in, d_out,    dy.ptr(),
                      d_out, w.ptr(), d_in, 1.0f, dx.ptr(), d_in};
    const Gemm grad_w{true,  false,   d_out, d_in, N,        dy.ptr(),
                      d_out, x.ptr(), d_in,  1.0f, dw.ptr(), d_in};

    struct Case {
      const char* name;
      std::function<void()> library;
      std::vector<Gemm> gemms;
    };
    const std::vector<Case> cases = {
        {"linear_forward",
         [&] {
           ops::linear_forward<float>(y.data(), x.data(), w.data(), b.data(), N, d_in, d_out,
                                      layout);
         },
         {forward}},
        {"linear_backward_dx",
         [&] {
           ops::linear_backward<float>(dx.data(), {}, {}, dy.data(), x.data(), w.data(), N, d_in,
                                       d_out, layout);
         },
         {grad_x}},
        {"linear_backward_dx_dw",
         [&] {
           ops::linear_backward<float>(dx.data(), dw.data(), {}, dy.data(), x.data(), w.data(), N,
                                       d_in, d_out, layout);
         },
         {grad_x, grad_w}},
    };
    for (const Case& c : cases) {
      const double flops = gemm_flops * static_cast<double>(c.gemms.size());
      auto all = [&](void (*run)(const Gemm&)) {
        return [&c, run] {
          for (const Gemm& g : c.gemms) run(g);
        };
      };
#ifdef FOURIERFT_USE_BLAS
      const std::vector<double> ms = median_ms({c.library, all(run_cblas), all(run_eigen)});
      std::printf("%s\t%ld\t%ld\t%ld\t%d\t%.2f\t%.1f\t%.1f\t%.1f\t%.2f\n", c.name, long(N),
                  long(d_in), long(d_out), threads, ms[0], gflops(flops, ms[0]),
                  gflops(flops, ms[1]), gflops(flops, ms[2]), ms[1] / ms[0]);
#else
      const std::vector<double> ms = median_ms({c.library, all(run_eigen)});
      std::printf("%s\t%ld\t%ld\t%ld\t%d\t%.2f\t%.1f\tn/a\t%.1f\tn/a\n", c.name, long(N),
                  long(d_in), long(d_out), threads, ms[0], gflops(flops, ms[0]),
                  gflops(flops, ms[1]));
#endif
      std::fflush(stdout);
    }
  }
  return 0;
}
