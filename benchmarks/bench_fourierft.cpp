// bench_fourierft — one adapted linear layer, forward + backward, beside LoRA r=8 and a frozen
// plain linear of the same shape, measured in the same run. One TSV row per case.
//
//   ./build/benchmarks/bench_fourierft            (FOURIERFT_NUM_THREADS=2 by default here)
//
// Cases at T = 1024 tokens: (768 x 768, n = 1000) and (1024 x 1024, n = 1000):
//   frozen_linear     forward + dx of y = x·W0ᵀ + b           (the floor an adapter is compared to)
//   fourierft         forward + backward (dx and dcoeffs), merged GEMM, spectral coefficient path
//   fourierft_dense   the same with the dense coefficient path (G = dyᵀ·x, one 2-D DFT)
//   lora_r8           y = x·W0ᵀ + b + (α/r)·(x·Aᵀ)·Bᵀ, forward + backward (dx, dA, dB)
//   delta             ΔW construction alone, the path fourierft_delta_forward picks
//   delta_sparse      ΔW by the sparse first pass and 16-row c2r blocks
//   delta_c2r         ΔW by FFTW's 2-D c2r of the whole half spectrum
//   delta_c2c         ΔW through the full complex inverse DFT, as PEFT computes it
// Columns: case, d_out, d_in, n, ms (median of 15 rounds; each round runs every case once, so a
// slow spell of a noisy machine hits all cases alike), ratio to frozen_linear, FFTW plans made.
//
//   ./build/benchmarks/bench_fourierft --fft   (the blocked row transforms alone, FFTW vs LaneFft)
//
// One thread, 64 blocks of 16 rows (1024 rows) per case, rows of 768, 1024, 2048 and 4096;
// RowBlockDft (r2c: rows -> bin-major half spectra) and RowBlockIdft (c2r), each made with
// LaneFft off (FFTW's plan) and on (where the CPU is at the avx512 level), interleaved, median of
// 15 rounds. Columns: N, transform, fftw_ms, lane_ms, fftw_over_lane.
//
//   ./build/benchmarks/bench_fourierft --beside   (the merged vs beside crossover instead)
//
// The two ways an unmerged adapter computes its layer, interleaved per (shape, T), n = 1000:
//   merged   fourierft_linear: W = W0 + ΔW, one GEMM (FourierFTPath::merged)
//   beside   ops::linear + fourierft_add_beside: x·ΔWᵀ from the spectrum (FourierFTPath::beside)
// each as a training step (forward + backward with dx and dcoeffs) and as inference (forward
// under NoGradScope). Columns: mode, d_out, d_in, n, T, merged_ms, beside_ms, beside/merged
// (median of 7 rounds).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "fourierft/core/memory.hpp"
#include "fourierft/core/parallel.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/ops/reduce.hpp"
#include "fourierft/peft/fourierft_op.hpp"

using namespace fourierft;

namespace {
double elapsed_ms(const std::function<void()>& run) {
  const auto start = std::chrono::steady_clock::now();
  run();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// Runs the cases in turns — one repetition of each per round — and returns each case's median.
// Interleaving keeps the ratios honest on a noisy VM: a slow spell slows every case alike
// instead of whichever case happened to run during it.
std::vector<double> interleaved_median_ms(const std::vector<std::function<void()>>& cases,
                                          int rounds = 15) {
  for (const auto& run : cases) run();  // warm-up: plans, page faults
  std::vector<std::vector<double>> times(cases.size());
  for (int r = 0; r < rounds; ++r)
    for (std::size_t k = 0; k < cases.size(); ++k) times[k].push_back(elapsed_ms(cases[k]));
  std::vector<double> medians;
  for (auto& t : times) {
    std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
    medians.push_back(t[t.size() / 2]);
  }
  return medians;
}

// The merged vs beside table (--beside). Shapes: GPT-2 / RoBERTa (768²), Qwen3-0.6B's v_proj
// (1024 x 1024), TinyLlama's q_proj (2048²) and GQA v_proj (256 x 2048), Llama-2-7B's q_proj
// (4096²); T up to what keeps one case under about a second.
void beside_crossover() {
  std::printf("mode\td_out\td_in\tn\tT\tmerged_ms\tbeside_ms\tbeside_over_merged\n");
  const Index n = 1000;
  for (auto [M, N] : {std::pair<Index, Index>{768, 768}, {1024, 1024}, {2048, 2048}, {256, 2048},
                      {4096, 4096}}) {
    Rng rng(1);
    Var<float> w0(randn<float>({M, N}, rng, 0.f, 0.02f)), b(randn<float>({M}, rng));
    auto entries = std::make_shared<const peft::SpectralEntries>(peft::uniform_entries(M, N, n));
    Var<float> c = Var<float>::parameter(randn<float>({n}, rng));
    const std::vector<peft::SpectralBlock<float>> blocks = {{c, entries, 150.f, 0}};
    for (Index T : {1, 4, 16, 64, 256, 1024, 4096}) {
      if (static_cast<double>(T) * M * N > 4.3e9) break;
      Var<float> x = Var<float>::parameter(randn<float>({T, N}, rng));
      auto dy = randn<float>({T, M}, rng);
      Tape<float> tape;
      auto merged = [&] { return peft::fourierft_linear(tape, x, w0, b, blocks); };
      auto beside = [&] {
        return peft::fourierft_add_beside(tape, ops::linear(tape, x, w0, b), x, blocks);
      };
      auto train = [&](const std::function<Var<float>()>& forward) {
        return [&, forward] {
          Var<float> y = forward();
          tape.backward(y, dy);
          tape.clear();
        };
      };
      auto infer = [&](const std::function<Var<float>()>& forward) {
        return [&, forward] {
          NoGradScope<float> no_grad(tape);
          forward();
        };
      };
      const std::vector<double> ms = interleaved_median_ms(
          {train(merged), train(beside), infer(merged), infer(beside)}, 7);
      for (int mode = 0; mode < 2; ++mode)
        std::printf("%s\t%lld\t%lld\t%lld\t%lld\t%.3f\t%.3f\t%.3f\n",
                    mode == 0 ? "train" : "infer", (long long)M, (long long)N, (long long)n,
                    (long long)T, ms[2 * mode], ms[2 * mode + 1], ms[2 * mode + 1] / ms[2 * mode]);
      std::fflush(stdout);
    }
  }
}
// The blocked row transforms, FFTW against LaneFft (--fft).
void row_transforms() {
  using namespace ops::spectral;
  const int threads_before = num_threads();
  set_num_threads(1);
  std::printf("N\ttransform\tfftw_ms\tlane_ms\tfftw_over_lane\n");
  if (!use_lane_fft<float>(768))
    std::printf("# LaneFft is not the automatic choice on this CPU / level (forced here)\n");
  for (Index N : {768, 1024, 2048, 4096}) {
    const Index blocks = 64;
    Rng rng(7);
    const Tensor<float> x = randn<float>({blocks * block_size * N}, rng);
    const RowBlockDft<float> fftw_dft(N, RowTransformBackend::fftw);
    const RowBlockIdft<float> fftw_idft(N, RowTransformBackend::fftw);
    const RowBlockDft<float> lane_dft(N, RowTransformBackend::lane_fft);
    const RowBlockIdft<float> lane_idft(N, RowTransformBackend::lane_fft);
    FftwBuffer<std::complex<float>, float> spectra(fftw_dft.out_size() * blocks), in(fftw_idft.in_size());
    FftwBuffer<float, float> scratch(fftw_dft.scratch_size()), rows(fftw_idft.out_size()),
        work(std::max<std::size_t>(lane_idft.work_size(), 1));
    auto r2c = [&](const RowBlockDft<float>& dft) {
      return [&] {
        for (Index b = 0; b < blocks; ++b)
          dft(x.data().data() + b * block_size * N, N, block_size,
              spectra.data() + b * fftw_dft.out_size(), scratch.data());
      };
    };
    auto c2r = [&](const RowBlockIdft<float>& idft) {
      return [&] {
        for (Index b = 0; b < blocks; ++b) {  // c2r destroys its input: a fresh copy per block
          std::copy(spectra.data() + b * fftw_dft.out_size(),
                    spectra.data() + (b + 1) * fftw_dft.out_size(), in.data());
          idft(in.data(), rows.data(), work.data());
        }
      };
    };
    r2c(fftw_dft)();  // spectra for the c2r cases
    const std::vector<double> ms =
        interleaved_median_ms({r2c(fftw_dft), r2c(lane_dft), c2r(fftw_idft), c2r(lane_idft)});
    std::printf("%lld\tr2c\t%.3f\t%.3f\t%.2f\n", (long long)N, ms[0], ms[1], ms[0] / ms[1]);
    std::printf("%lld\tc2r\t%.3f\t%.3f\t%.2f\n", (long long)N, ms[2], ms[3], ms[2] / ms[3]);
    std::fflush(stdout);
  }
  set_num_threads(threads_before);
}
}  // namespace

int main(int argc, char** argv) {
  if (std::getenv("FOURIERFT_NUM_THREADS") == nullptr) set_num_threads(2);
  // As bench_step and the training programs: freed activations stay in the process, so each
  // repetition does not page-fault its buffers in again (FOURIERFT_KEEP_MALLOC_DEFAULTS=1: off).
  if (std::getenv("FOURIERFT_KEEP_MALLOC_DEFAULTS") == nullptr) reuse_freed_memory();
  if (argc > 1 && std::string(argv[1]) == "--fft") {
    row_transforms();
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "--beside") {
    beside_crossover();
    return 0;
  }
  std::printf("case\td_out\td_in\tn\tms\tratio_to_frozen\tfftw_plans\n");
  const Index T = 1024;
  for (auto [M, N] : {std::pair<Index, Index>{768, 768}, {1024, 1024}}) {
    const Index n = 1000;
    Rng rng(1);
    Var<float> x = Var<float>::parameter(randn<float>({T, N}, rng));  // dx is needed (inner layer)
    Var<float> w0(randn<float>({M, N}, rng, 0.f, 0.02f)), b(randn<float>({M}, rng));
    auto dy = randn<float>({T, M}, rng);
    auto entries = std::make_shared<const peft::SpectralEntries>(peft::uniform_entries(M, N, n));
    Var<float> c = Var<float>::parameter(randn<float>({n}, rng));
    Var<float> A = Var<float>::parameter(randn<float>({8, N}, rng, 0.f, 0.02f));
    Var<float> B = Var<float>::parameter(randn<float>({M, 8}, rng, 0.f, 0.02f));
    Tape<float> tape;
    auto step = [&](const std::function<Var<float>()>& forward) {
      return [&, forward] {
        Var<float> y = forward();
        tape.backward(y, dy);
        tape.clear();
      };
    };
    auto fourier = [&](peft::CoeffGradPath path) {
      return step([&, path] {
        std::vector<peft::SpectralBlock<float>> blocks = {{c, entries, 150.f, 0}};
        return peft::fourierft_linear(tape, x, w0, b, blocks, ops::WeightLayout::out_in, path);
      });
    };
    std::vector<float> delta(static_cast<std::size_t>(M * N));
    const std::vector<double> ms = interleaved_median_ms({
        step([&] { return ops::linear(tape, x, w0, b); }),
        fourier(peft::CoeffGradPath::spectral),
        fourier(peft::CoeffGradPath::dense),
        step([&] {
          Var<float> base = ops::linear(tape, x, w0, b);
          Var<float> low = ops::linear(tape, ops::linear(tape, x, A), B);
          return ops::add(tape, base, ops::scale(tape, low, 2.f));
        }),
        [&] { peft::fourierft_delta_forward<float>(delta, c.data(), *entries, 150.f); },
        [&] { peft::fourierft_delta_forward_sparse<float>(delta, c.data(), *entries, 150.f); },
        [&] { peft::fourierft_delta_forward_c2r<float>(delta, c.data(), *entries, 150.f); },
        [&] { peft::fourierft_delta_forward_c2c<float>(delta, c.data(), *entries, 150.f); },
    });
    const double frozen = ms[0];
    const auto plans = ops::spectral::PlanCache<float>::instance().plans_made();
    auto row = [&](const char* name, double ms) {
      std::printf("%s\t%lld\t%lld\t%lld\t%.3f\t%.3f\t%zu\n", name, (long long)M, (long long)N,
                  (long long)n, ms, ms / frozen, plans);
    };
    const char* names[] = {"frozen_linear", "fourierft", "fourierft_dense", "lora_r8",
                           "delta",         "delta_sparse", "delta_c2r",   "delta_c2c"};
    for (std::size_t k = 0; k < ms.size(); ++k) row(names[k], ms[k]);
  }
  return 0;
}
