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
//
// A second table compares the GEMMs against a frozen 16-bit weight (detail/half_gemm.hpp: BF16
// tiles converted to float on the fly) with the float GEMM on the same (rounded) weight, at LLaMA
// shapes: prefill (512 x 4096 -> 4096, and -> 11008), decode (1 x 4096 -> 4096), forward and
// dx. Interleaved medians as above; half_vs_fp32 = fp32 time / half time (1.00 = same speed).
// `bench_gemm --bf16` prints only the BF16 compute mode's table instead (bf16_cases below).
// A first table loads a random GPT-2-shaped BF16 checkpoint (C 1536, 8 layers: 227M weights,
// 453 MB) in a forked child per mode and reports its peak RSS after loading and after one
// forward pass: float Vars (f32) against 16-bit frozen weights (keep_file, mapped from the file).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "bench_process.hpp"
#include "fourierft/core/half.hpp"
#include "fourierft/detail/bf16_gemm.hpp"
#include "fourierft/detail/half_gemm.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/models/gpt2.hpp"

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

// Half (BF16) weight against float weight holding the same values: y = x·Wᵀ and dx = dy·W.
void half_cases(int threads) {
  std::printf("\ncase\tN\td_in\td_out\tthreads\thalf_ms\tfp32_ms\thalf_gflops\tfp32_gflops\t"
              "half_vs_fp32\n");
  struct Shape3 {
    const char* name;
    Index N, d_in, d_out;
  };
  for (const Shape3 c : {Shape3{"prefill", 512, 4096, 4096}, Shape3{"prefill_mlp", 512, 4096, 11008},
                         Shape3{"decode", 1, 4096, 4096}, Shape3{"decode_mlp", 1, 4096, 11008}}) {
    Rng rng(2);
    const Tensor<float> x = randn<float>({c.N, c.d_in}, rng), dy = randn<float>({c.N, c.d_out}, rng);
    const Tensor<float> w = randn<float>({c.d_out, c.d_in}, rng);
    const HalfMatrix half = HalfMatrix::from_values<float>(w.data(), c.d_out, c.d_in, io::Dtype::BF16);
    const Tensor<float> rounded = half.to_tensor<float>();
    Tensor<float> y({c.N, c.d_out}), dx({c.N, c.d_in});
    const auto layout = ops::WeightLayout::out_in;
    const double flops = 2.0 * double(c.N) * double(c.d_in) * double(c.d_out);
    const int repeats = c.N == 1 ? 41 : 9;
    for (const bool backward : {false, true}) {
      const std::vector<double> ms = median_ms(
          {[&] {
             if (backward)
               ops::half_linear_backward<float>(dx.data(), {}, dy.data(), half, c.N, c.d_in,
                                                c.d_out, layout);
             else
               ops::half_linear_forward<float>(y.data(), x.data(), half, {}, c.N, c.d_in, c.d_out,
                                               layout);
           },
           [&] {
             if (backward)
               ops::linear_backward<float>(dx.data(), {}, {}, dy.data(), x.data(), rounded.data(),
                                           c.N, c.d_in, c.d_out, layout);
             else
               ops::linear_forward<float>(y.data(), x.data(), rounded.data(), {}, c.N, c.d_in,
                                          c.d_out, layout);
           }},
          2, repeats);
      std::printf("%s_%s\t%ld\t%ld\t%ld\t%d\t%.3f\t%.3f\t%.1f\t%.1f\t%.2f\n", c.name,
                  backward ? "dx" : "forward", long(c.N), long(c.d_in), long(c.d_out), threads,
                  ms[0], ms[1], gflops(flops, ms[0]), gflops(flops, ms[1]), ms[1] / ms[0]);
      std::fflush(stdout);
    }
  }
}

// --bf16: the BF16 compute mode's GEMMs (detail/bf16_gemm.hpp: BF16 operands, FP32 accumulation)
// against the FP32 GEMM, at a training step's shapes: M tokens x d_in -> d_out, forward x·Wᵀ (NT)
// and dx = dy·W (NN), every kernel this machine runs (forced), interleaved medians as above.
// bf16_vs_fp32 = fp32 time / time of the automatic kernel.
void bf16_cases(int threads) {
  std::vector<detail::Bf16Kernel> kernels;
  for (auto k : {detail::Bf16Kernel::avx512bf16, detail::Bf16Kernel::sbgemm,
                 detail::Bf16Kernel::float_tiles})
    if (detail::bf16_kernel_available(k)) kernels.push_back(k);
  std::printf("# bf16 kernels here:");
  for (auto k : kernels) std::printf(" %s", detail::bf16_kernel_name(k));
  std::printf(" (automatic: %s; cblas_sbgemm %s)\n",
              detail::bf16_kernel_name(detail::bf16_automatic_kernel()),
              detail::sbgemm_function() != nullptr ? "found" : "not in the linked BLAS");
  std::printf("case\tM\td_in\td_out\tthreads\tfp32_ms\tfp32_gflops");
  for (auto k : kernels) std::printf("\t%s_ms\t%s_gflops", detail::bf16_kernel_name(k), detail::bf16_kernel_name(k));
  std::printf("\tbf16_vs_fp32\n");
  const std::size_t automatic = static_cast<std::size_t>(
      std::find(kernels.begin(), kernels.end(), detail::bf16_automatic_kernel()) - kernels.begin());
  for (const Index M : {Index(1024), Index(2048), Index(4096)})
    for (const auto& [d_in, d_out] : {std::pair<Index, Index>{768, 768}, {768, 3072}, {3072, 768}}) {
      Rng rng(4);
      const Tensor<float> x = randn<float>({M, d_in}, rng), dy = randn<float>({M, d_out}, rng);
      const Tensor<float> w = randn<float>({d_out, d_in}, rng);
      const HalfMatrix half = HalfMatrix::from_values<float>(w.data(), d_out, d_in, io::Dtype::BF16);
      const Tensor<float> rounded = half.to_tensor<float>();
      Tensor<float> y({M, d_out}), dx({M, d_in});
      const double flops = 2.0 * double(M) * double(d_in) * double(d_out);
      for (const bool backward : {false, true}) {
        std::vector<std::function<void()>> fs = {[&] {
          if (backward)
            detail::gemm<float>(false, false, M, d_in, d_out, 1.0f, dy.ptr(), d_out, rounded.ptr(),
                                d_in, 0.0f, dx.ptr(), d_in);
          else
            detail::gemm<float>(false, true, M, d_out, d_in, 1.0f, x.ptr(), d_in, rounded.ptr(),
                                d_in, 0.0f, y.ptr(), d_out);
        }};
        for (auto k : kernels)
          fs.push_back([&, k] {
            if (backward)
              detail::bf16_gemm(false, M, d_in, d_out, 1.0f, dy.ptr(), d_out, half, 0.0f, dx.ptr(),
                                d_in, k);
            else
              detail::bf16_gemm(true, M, d_out, d_in, 1.0f, x.ptr(), d_in, half, 0.0f, y.ptr(),
                                d_out, k);
          });
        const std::vector<double> ms = median_ms(fs, 2, 7);
        std::printf("%s\t%ld\t%ld\t%ld\t%d\t%.2f\t%.1f", backward ? "dx_NN" : "forward_NT",
                    long(M), long(d_in), long(d_out), threads, ms[0], gflops(flops, ms[0]));
        for (std::size_t i = 0; i < kernels.size(); ++i)
          std::printf("\t%.2f\t%.1f", ms[i + 1], gflops(flops, ms[i + 1]));
        std::printf("\t%.2f\n", ms[0] / ms[automatic + 1]);
        std::fflush(stdout);
      }
    }
}

// Peak RSS of loading a random BF16 GPT-2-shaped checkpoint, float Vars against 16-bit weights.
void load_rss_cases() {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "fourierft_bench_gemm_bf16";
  io::Gpt2Config config;
  config.vocab_size = 1000;
  config.n_positions = 64;
  config.n_embd = 1536;
  config.n_layer = 8;
  config.n_head = 12;
  // Written in a child, tensor by tensor from a seeded stream: this process stays small.
  bench::run_forked("bench_gemm", "write", [&] {
    fs::create_directories(dir);
    io::SafetensorsWriter writer;
    Rng rng(3);
    std::vector<HalfMatrix> keep;
    auto add = [&](const std::string& name, Index rows, Index cols) {
      std::vector<float> values(static_cast<std::size_t>(rows * cols));
      for (float& v : values) v = 0.02f * static_cast<float>(rng.normal());
      keep.push_back(HalfMatrix::from_values<float>(values, rows, cols, io::Dtype::BF16));
      writer.add(name, keep.back(), io::Dtype::BF16);
    };
    auto add_vector = [&](const std::string& name, Index n, float value) {
      Tensor<float> t({n});
      t.fill(value);
      writer.add(name, t, io::Dtype::BF16);
    };
    const Index C = config.n_embd;
    add("transformer.wte.weight", config.vocab_size, C);
    add("transformer.wpe.weight", config.n_positions, C);
    for (Index l = 0; l < config.n_layer; ++l) {
      const std::string p = "transformer.h." + std::to_string(l) + ".";
      add(p + "attn.c_attn.weight", C, 3 * C);
      add(p + "attn.c_proj.weight", C, C);
      add(p + "mlp.c_fc.weight", C, 4 * C);
      add(p + "mlp.c_proj.weight", 4 * C, C);
      add_vector(p + "attn.c_attn.bias", 3 * C, 0), add_vector(p + "attn.c_proj.bias", C, 0);
      add_vector(p + "mlp.c_fc.bias", 4 * C, 0), add_vector(p + "mlp.c_proj.bias", C, 0);
      for (const char* ln : {"ln_1", "ln_2"})
        add_vector(p + ln + ".weight", C, 1), add_vector(p + ln + ".bias", C, 0);
    }
    add_vector("transformer.ln_f.weight", C, 1), add_vector("transformer.ln_f.bias", C, 0);
    writer.set_metadata("format", "pt");
    writer.save(dir / "model.safetensors");
    config.torch_dtype = "bfloat16";
    io::write_json(dir / "config.json", to_json(config));
  });
  std::printf("case\tfile_mb\tpeak_rss_after_load_mb\tpeak_rss_after_forward_mb\tload_ms\n");
  const double file_mb = double(fs::file_size(dir / "model.safetensors")) / (1 << 20);
  for (const auto mode : {models::FrozenWeightDtype::f32, models::FrozenWeightDtype::keep_file}) {
    const char* name = mode == models::FrozenWeightDtype::f32 ? "load_f32" : "load_keep_bf16";
    bench::run_forked("bench_gemm", name, [&] {
      const auto start = std::chrono::steady_clock::now();
      auto model = models::GPT2LMHeadModel<float>::from_pretrained(dir, {.frozen_weight_dtype = mode});
      const double load_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      const double after_load = bench::peak_rss_mb();
      Tape<float> tape;
      NoGradScope<float> no_grad(tape);
      Tensor<std::int64_t> ids({1, 8});
      model->forward(tape, ids, Tensor<std::int64_t>());
      std::printf("%s\t%.0f\t%.0f\t%.0f\t%.0f\n", name, file_mb, after_load,
                  bench::peak_rss_mb(), load_ms);
    });
  }
  fs::remove_all(dir);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* env = std::getenv("FOURIERFT_NUM_THREADS"); env == nullptr || *env == '\0')
    set_num_threads(2);
  const int threads = num_threads();
  std::fprintf(stderr, "# GEMM kernels: %s\n", fourierft::detail::gemm_kernels().c_str());
  if (argc > 1) {
    if (std::string(argv[1]) != "--bf16" || argc > 2) {
      std::fprintf(stderr, "usage: bench_gemm [--bf16]\n");
      return 2;
    }
    bf16_cases(threads);
    return 0;
  }
  // First: its cases run in forked children, and a child forked after OpenMP has started its
  // threads can hang in its first parallel region (libgomp is not fork-safe).
  load_rss_cases();

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
  half_cases(threads);
  return 0;
}
