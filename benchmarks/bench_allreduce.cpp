// bench_allreduce — the cost of one training step's gradient all-reduce (dist::all_reduce_gradients)
// for the trainable-parameter counts of FourierFT, LoRA and full fine-tuning (docs/scaling.md).
//
// Run: mpirun --allow-run-as-root -np 2 ./build/benchmarks/bench_allreduce [--repeat 20]
// One TSV row per case on rank 0: case, floats, bytes, median ms, GB/s of payload per rank. The
// baseline (same run) is an all-reduce of one float: the latency every step pays at least.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "fourierft/dist/mpi.hpp"
#include "fourierft/util/args.hpp"

using namespace fourierft;

int main(int argc, char** argv) {
  dist::MpiCommunicator comm(argc, argv);
  try {
    util::Args args(argc, argv, {});
    const int repeat = static_cast<int>(args.integer("--repeat", 20));
    args.reject_unknown();
    // Trainable floats per step (fourierft param-table and the models' num_parameters).
    const std::vector<std::pair<const char*, Index>> cases = {
        {"latency (1 float)", 1},
        {"RoBERTa-base FourierFT n=1000 (q,v)", 24'000},
        {"RoBERTa-base FourierFT + GLUE head", 24'000 + 592'130},
        {"RoBERTa-base LoRA r=8 + GLUE head", 294'912 + 592'130},
        {"LLaMA-2 7B FourierFT n=1000", 64'000},
        {"LLaMA-2 7B LoRA r=16", 8'388'608},
        {"RoBERTa-base full", 124'647'170},
    };
    if (comm.is_root()) std::printf("case\tfloats\tbytes\tms\tGB/s\tprocesses\n");
    for (const auto& [name, floats] : cases) {
      std::vector<Var<float>> params = {Var<float>::parameter(Tensor<float>({floats}))};
      params[0].grad().fill(1.0f);
      std::vector<double> ms;
      for (int i = 0; i < repeat + 2; ++i) {
        comm.barrier();
        const auto t0 = std::chrono::steady_clock::now();
        dist::all_reduce_gradients(comm, params);
        const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (i >= 2) ms.push_back(t);  // two warm-up rounds
      }
      std::sort(ms.begin(), ms.end());
      const double median = ms[ms.size() / 2], bytes = 4.0 * double(floats);
      if (comm.is_root())
        std::printf("%s\t%lld\t%.0f\t%.3f\t%.2f\t%d\n", name, static_cast<long long>(floats), bytes,
                    median, bytes / (median * 1e-3) / 1e9, comm.size());
    }
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_allreduce: %s\n", e.what());
    comm.abort(1);
    return 1;
  }
}
