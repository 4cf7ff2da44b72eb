// bench_serve — serving many FourierFT adapters on one base model (include/fourierft/serve/): decoding
// throughput of a batch whose 8 sequences use 8 different adapters, against the same batch on one
// merged model and against 8 merged copies run one after another; resident memory with 1,000
// adapters registered (and loaded); time to the first token for an adapter never used before.
//
//   ./build/benchmarks/bench_serve                       Qwen3-0.6B shapes, FP32, random weights
//   ./build/benchmarks/bench_serve --model smollm2-135m --rounds 2 --adapters 200   (quicker)
//
// Model: a published config (tests/fixtures/models/real-shapes/, bench_llama.hpp) with random FP32
// weights. Adapters: synthetic FourierFT on q_proj and v_proj of every layer (n = 1000, scaling 150,
// seed 777; spectra N(0, 1) from each adapter's own seed), written as PEFT folders
// (adapter_config.json + adapter_model.safetensors) to a temporary directory and served from there
// by serve::AdapterStore, as `fourierft serve` does. Decoding cases (8 prompts of --prompt-len
// random ids, prefilled, then --steps timed T = 1 steps):
//   mixed/<path>   8 adapters in one batch; frozen GEMM once, corrections by <path>
//   merged/1       all 8 rows on one adapter, its W0 + ΔW built once (= one merged model)
//   merged/8-turns each sequence alone (batch 1) on its own merged weights, one after another
//                  (8 merged copies served in turn; the merge itself is not timed)
// The cases run interleaved, --rounds times, in rotated order; the median per case is printed.
// Columns (TSV): case tokens_per_s ms_per_step ratio_to_merged. Then the memory and first-token
// rows. Threads: FOURIERFT_NUM_THREADS (default: all).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include "fourierft/core/parallel.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/models/generation.hpp"
#include "fourierft/models/llama.hpp"
#include "fourierft/peft/adapter_io.hpp"
#include "fourierft/peft/fourierft.hpp"
#include "fourierft/serve/adapter_store.hpp"
#include "fourierft/serve/mixed_linear.hpp"
#include "fourierft/serve/scheduler.hpp"
#include "bench_llama.hpp"
#include "bench_process.hpp"

using namespace fourierft;
namespace fs = std::filesystem;
using Llama = models::LlamaForCausalLM<float>;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string model = "qwen3-0.6b";
  Index prompt_len = 32, steps = 16, rounds = 3, adapters = 1000, n = 1000;
};

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Resident memory now (VmRSS), MiB.
double rss_mb() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

// One synthetic adapter folder in PEFT's format: spectra N(0, 1) on every q_proj and v_proj.
void write_adapter(const fs::path& dir, const serve::ServedLayers& layers, Index n, std::uint64_t seed) {
  fs::create_directories(dir);
  peft::FourierFTConfig config;
  config.n_frequency = n;
  config.target_modules = {{"q_proj", "v_proj"}, ""};
  Rng rng(seed);
  io::SafetensorsWriter writer;
  for (const std::string& name : layers.names)
    if (name.ends_with("q_proj") || name.ends_with("v_proj"))
      writer.add("base_model.model." + name + ".fourierft_spectrum", randn<float>({n}, rng));
  writer.save(dir / "adapter_model.safetensors");
  io::write_json(dir / "adapter_config.json",
                 peft::adapter_config_json({.config = config, .modules_to_save = {}, .task_type = "CAUSAL_LM"}));
}

// Prefills 8 (or 1) prompts with the batch's adapters, then times `steps` decoding steps.
// Returns ms per step (median over steps is not needed: the steps are alike; the mean is used).
double decode_ms_per_step(Llama& model, serve::BatchAdapters& batch,
                          const std::vector<const serve::ServedAdapter*>& rows, Index prompt_len,
                          Index steps, Index warm_steps) {
  const Index B = static_cast<Index>(rows.size());
  Rng rng(17);
  Tensor<std::int64_t> ids({B, prompt_len});
  for (Index i = 0; i < ids.numel(); ++i)
    ids[i] = static_cast<std::int64_t>(rng.uniform() * double(model.config.vocab_size - 1));
  batch.rows = rows;
  models::LmDecoder<Llama> decoder(model, true, steps + warm_steps + 1);
  Tensor<float> logits = decoder.start(ids, Tensor<std::int64_t>::ones(ids.shape()));
  std::vector<std::int64_t> tokens(static_cast<std::size_t>(B));
  auto next = [&] {
    for (Index b = 0; b < B; ++b)
      tokens[b] = static_cast<std::int64_t>(models::generation::argmax(models::generation::row_of(logits, b)));
    logits = decoder.next(tokens);
  };
  for (Index s = 0; s < warm_steps; ++s) next();  // merged buffers built, FFTW plans made
  const auto start = Clock::now();
  for (Index s = 0; s < steps; ++s) next();
  const double ms = ms_since(start) / double(steps);
  batch.rows.clear();
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--model") o.model = bench::option_value(argv[0], argc, argv, i);
    else if (a == "--prompt-len") o.prompt_len = std::stoll(bench::option_value(argv[0], argc, argv, i));
    else if (a == "--steps") o.steps = std::stoll(bench::option_value(argv[0], argc, argv, i));
    else if (a == "--rounds") o.rounds = std::stoll(bench::option_value(argv[0], argc, argv, i));
    else if (a == "--adapters") o.adapters = std::stoll(bench::option_value(argv[0], argc, argv, i));
    else if (a == "--n") o.n = std::stoll(bench::option_value(argv[0], argc, argv, i));
    else {
      std::fprintf(stderr, "usage: bench_serve [--model qwen3-0.6b|tinyllama|smollm2-135m] "
                           "[--prompt-len 32] [--steps 16] [--rounds 3] [--adapters 1000] [--n 1000]\n");
      return 2;
    }
  }
  try {
    const double rss_start = rss_mb();
    const io::LlamaConfig config = bench::real_shapes_config(o.model);
    auto model = bench::build_llama(config, /*bf16=*/false);
    model->eval();
    const double rss_model = rss_mb();
    const fs::path dir = fs::temp_directory_path() / ("fourierft_bench_serve_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    const serve::ServedLayers probe(*model);
    const auto start_write = Clock::now();
    for (Index a = 0; a < o.adapters; ++a)
      write_adapter(dir / ("adapter-" + std::to_string(a)), probe, o.n, 1000 + a);
    std::printf("# %s: %lld layers, hidden %lld, FP32 random weights; %lld adapters (n = %lld on q, v) "
                "written in %.1f s; threads %d\n",
                o.model.c_str(), static_cast<long long>(config.num_hidden_layers),
                static_cast<long long>(config.hidden_size), static_cast<long long>(o.adapters),
                static_cast<long long>(o.n), ms_since(start_write) / 1000, num_threads());

    // ---- memory: registered, then 8 loaded, then all loaded as spectra ----
    serve::AdapterStore store(*model, dir);
    serve::BatchAdapters batch;
    serve::attach_mixed_adapters(store, batch);
    const double rss_registered = rss_mb();
    std::vector<std::shared_ptr<const serve::ServedAdapter>> eight;
    for (Index a = 0; a < 8; ++a) eight.push_back(store.get("adapter-" + std::to_string(a)));
    const std::size_t per_adapter = eight[0]->bytes();

    // ---- decoding ----
    std::vector<const serve::ServedAdapter*> mixed_rows, single_rows(8, eight[0].get());
    for (const auto& a : eight) mixed_rows.push_back(a.get());
    std::map<std::string, std::vector<double>> ms;
    const std::vector<std::string> cases = {"mixed/automatic", "mixed/spectral", "mixed/dense",
                                            "merged/1", "merged/8-turns"};
    for (Index round = 0; round < o.rounds; ++round)
      for (std::size_t k = 0; k < cases.size(); ++k) {
        const std::string& c = cases[(k + static_cast<std::size_t>(round)) % cases.size()];
        double step_ms = 0;
        if (c.starts_with("mixed/")) {
          batch.path = c == "mixed/spectral" ? serve::CorrectionPath::spectral
                       : c == "mixed/dense"  ? serve::CorrectionPath::dense
                                             : serve::CorrectionPath::automatic;
          step_ms = decode_ms_per_step(*model, batch, mixed_rows, o.prompt_len, o.steps, 2);
        } else if (c == "merged/1") {
          batch.path = serve::CorrectionPath::merged;
          step_ms = decode_ms_per_step(*model, batch, single_rows, o.prompt_len, o.steps, 2);
        } else {  // 8 sequences, each alone on its own merged weights: 8 times the steps
          batch.path = serve::CorrectionPath::merged;
          for (const auto* a : mixed_rows)
            step_ms += decode_ms_per_step(*model, batch, {a}, o.prompt_len, o.steps, 2);
        }
        ms[c].push_back(step_ms);
      }
    const double merged_ms = bench::median(ms["merged/1"]);
    std::printf("case\ttokens_per_s\tms_per_step\tratio_to_merged\truns_ms\n");
    for (const std::string& c : cases) {
      const double m = bench::median(ms[c]);
      std::string runs;
      for (double v : ms[c]) runs += (runs.empty() ? "" : ",") + std::to_string(static_cast<int>(v + 0.5));
      std::printf("%s\t%.1f\t%.1f\t%.3f\t%s\n", c.c_str(), 8.0 * 1000.0 / m, m, merged_ms / m, runs.c_str());
    }

    // ---- time to first token for a never-used adapter (load + validate + prefill + 1 token) ----
    {
      serve::Scheduler<Llama> scheduler(*model, batch, std::nullopt, {.max_batch = 8});
      batch.path = serve::CorrectionPath::automatic;
      scheduler.start();
      Rng rng(3);
      std::vector<std::int64_t> prompt(static_cast<std::size_t>(o.prompt_len));
      for (auto& t : prompt) t = static_cast<std::int64_t>(rng.uniform() * 1000);
      auto first_token_ms = [&](const std::string& name) {
        const auto start = Clock::now();
        serve::SequenceRequest r{prompt, store.get(name), 1, 0, 1.0, 0};
        auto sequence = scheduler.submit(r);
        std::vector<std::int64_t> tokens;
        for (bool done = false; tokens.empty() && !done;)
          std::tie(tokens, done) = sequence->wait(0, std::chrono::milliseconds(1000));
        return ms_since(start);
      };
      std::vector<double> cold, warm;
      for (Index i = 0; i < 3; ++i) {
        cold.push_back(first_token_ms("adapter-" + std::to_string(o.adapters - 1 - i)));
        warm.push_back(first_token_ms("adapter-0"));
      }
      scheduler.stop();
      std::printf("first_token_ms\tnever_used %.1f\twarm %.1f\t(prompt %lld tokens; medians of 3)\n",
                  bench::median(cold), bench::median(warm), static_cast<long long>(o.prompt_len));
    }

    // ---- memory with every adapter loaded as spectra ----
    const auto start_load = Clock::now();
    for (const std::string& name : store.names()) (void)store.get(name);
    const double load_s = ms_since(start_load) / 1000;
    const double rss_loaded = rss_mb();
    std::size_t merged_bytes = 0;  // the W0 + ΔW buffers the merged cases built
    for (auto* linear : store.layers().linears)
      for (const auto& [name, hook] : linear->adapters())
        if (auto* mixed = dynamic_cast<const serve::MixedAdapterLinear*>(hook.get()))
          merged_bytes += mixed->merged_bytes();
    std::printf("rss_mb\tstart %.0f\tmodel %.0f\t%lld registered %.0f\tall loaded %.0f (in %.1f s)"
                "\tspectra %.1f MB (%zu bytes per adapter = n·L·4)\tdelta_cache %.1f MB of %.0f"
                "\tmerged_buffers %.1f MB\n",
                rss_start, rss_model, static_cast<long long>(o.adapters), rss_registered, rss_loaded,
                load_s, double(store.loaded_bytes()) / 1048576.0, per_adapter,
                double(store.deltas().bytes()) / 1048576.0, double(store.deltas().budget()) / 1048576.0,
                double(merged_bytes) / 1048576.0);
    fs::remove_all(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_serve: %s\n", e.what());
    return 1;
  }
  return 0;
}
