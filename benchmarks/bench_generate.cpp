// bench_generate — GPT-2 small generating text through models::generate (KV cache): greedy and
// beam search with the E2E recipe (10 beams, length penalty 0.8, no-repeat 4-grams), the numbers
// benchmarks/pytorch_reference.py --generate measures for plain PyTorch without a cache, so
// benchmarks/compare_generate.sh can print the ratios.
//
//   ./build/benchmarks/bench_generate                    greedy and beam-10, 1 and 4 prompts
//   ./build/benchmarks/bench_generate --case beam/4 --new-tokens 16
//   ./build/benchmarks/bench_generate --no-cache         also use_cache = false (recompute all)
//   ./build/benchmarks/bench_generate --model tinyllama --bf16 --case greedy/1   a LLaMA-family
//        model at published shapes (bench_llama.hpp), impl column "fourierft-tinyllama-bf16"
//
// The model is GPT-2 small (12 layers, 768 wide, 50257-word vocabulary) with random weights (HF's
// initialisation from Gpt2Config, no checkpoint), dropout 0, evaluation mode. Prompts are random
// ids, prompt_len tokens each; every case generates exactly new_tokens tokens per prompt: the eos
// id is set to -1 (none), so random weights cannot end a case early and both sides do the same
// work. One warm-up generate of 2 tokens, then the median of --repeats timed runs; each case runs
// in a forked child, so the peak RSS is per case. Threads: FOURIERFT_NUM_THREADS (default 2 here).
// Columns: impl mode batch prompt_len new_tokens tokens_per_s ms peak_rss_mb, where tokens_per_s
// counts the returned tokens (batch * new_tokens, not the beams) over the whole generate call
// (prompt included) and ms is that call's wall time.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fourierft/core/memory.hpp"
#include "fourierft/core/parallel.hpp"
#include "fourierft/models/generation.hpp"
#include "fourierft/models/gpt2.hpp"
#include "bench_llama.hpp"
#include "bench_process.hpp"

using namespace fourierft;

namespace {

struct Options {
  Index prompt_len = 32, new_tokens = 64, beams = 10;
  int repeats = 1;
  bool no_cache = false;  // also time use_cache = false
  std::string model = "gpt2";  // or a LLaMA-family shape of bench_llama.hpp (tinyllama, ...)
  bool bf16 = false;           // LLaMA: frozen Linear weights in BF16
};

struct Result {
  double ms = 0;
  Index generated = 0;  // tokens per prompt actually returned (new_tokens unless eos: none here)
};

models::GenerationConfig generation_config(const std::string& mode, const Options& opt) {
  models::GenerationConfig c;
  c.max_new_tokens = opt.new_tokens;
  c.eos_token_id = -1;  // no eos: every case generates new_tokens tokens
  if (mode == "beam") {  // the E2E recipe (train/presets.hpp)
    c.num_beams = opt.beams;
    c.length_penalty = 0.8;
    c.no_repeat_ngram_size = 4;
  } else if (mode != "greedy") {
    throw ValueError(str_cat("bench_generate: unknown mode '", mode, "' (greedy, beam)"));
  }
  return c;
}

template <class Model>
Result time_generate(Model& model, Index vocab_size, const std::string& mode, Index batch,
                     bool use_cache, const Options& opt) {
  model.eval();
  Rng rng(3);
  std::vector<std::vector<std::int64_t>> prompts(static_cast<std::size_t>(batch));
  for (auto& p : prompts)
    for (Index t = 0; t < opt.prompt_len; ++t)
      p.push_back(static_cast<std::int64_t>(rng.uniform() * double(vocab_size - 1)));

  models::GenerationConfig c = generation_config(mode, opt);
  c.use_cache = use_cache;
  models::GenerationConfig warm = c;
  warm.max_new_tokens = 2;
  (void)models::generate(model, prompts, warm);  // thread pools, allocator, first-touch pages

  Result r;
  std::vector<double> ms;
  for (int i = 0; i < opt.repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<models::Generated> out = models::generate(model, prompts, c);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    r.generated = 0;
    for (const auto& g : out) r.generated = std::max<Index>(r.generated, static_cast<Index>(g.tokens.size()));
  }
  r.ms = bench::median(std::move(ms));
  return r;
}

Result run_case(const std::string& mode, Index batch, bool use_cache, const Options& opt) {
  if (opt.model == "gpt2") {
    io::Gpt2Config config;  // GPT-2 small
    config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = 0.0;
    models::GPT2LMHeadModel<float> model(config, 1);
    return time_generate(model, config.vocab_size, mode, batch, use_cache, opt);
  }
  check(bench::llama_shapes().contains(opt.model), "bench_generate: unknown --model '", opt.model,
        "' (gpt2, tinyllama, qwen3-0.6b, smollm2-135m, llama2-7b)");
  const io::LlamaConfig config = bench::real_shapes_config(opt.model);
  auto model = bench::build_llama(config, opt.bf16);
  return time_generate(*model, config.vocab_size, mode, batch, use_cache, opt);
}

// One case ("mode/batch") in a forked child: its TSV row.
bool run_forked(const std::string& c, bool use_cache, const Options& opt) {
  return bench::run_forked("bench_generate", c, [&] {
    const auto slash = c.find('/');
    if (slash == std::string::npos)
      throw ValueError(str_cat("bench_generate: case '", c, "' is not mode/batch (e.g. beam/4)"));
    const std::string mode = c.substr(0, slash);
    const Index batch = std::stoll(c.substr(slash + 1));
    const Result r = run_case(mode, batch, use_cache, opt);
    const double tokens = static_cast<double>(batch * r.generated);
    const std::string impl = std::string(use_cache ? "fourierft" : "fourierft_nocache") +
                             (opt.model == "gpt2" ? "" : "-" + opt.model) +
                             (opt.bf16 ? "-bf16" : "");
    std::printf("%s\t%s\t%lld\t%lld\t%lld\t%.2f\t%.1f\t%.0f\n", impl.c_str(), mode.c_str(),
                static_cast<long long>(batch), static_cast<long long>(opt.prompt_len),
                static_cast<long long>(r.generated), tokens / (r.ms * 1e-3), r.ms,
                bench::peak_rss_mb());
  });
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  std::vector<std::string> cases;
  bool header = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] { return bench::option_value("bench_generate", argc, argv, i); };
    if (a == "--case") cases.push_back(value());
    else if (a == "--prompt-len") opt.prompt_len = std::stoll(value());
    else if (a == "--new-tokens") opt.new_tokens = std::stoll(value());
    else if (a == "--beams") opt.beams = std::stoll(value());
    else if (a == "--repeats") opt.repeats = std::max(1, std::stoi(value()));
    else if (a == "--no-cache") opt.no_cache = true;
    else if (a == "--model") opt.model = value();
    else if (a == "--bf16") opt.bf16 = true;
    else if (a == "--no-header") header = false;
    else {
      std::fprintf(stderr,
                   "usage: bench_generate [--case greedy/1|greedy/4|beam/1|beam/4]... "
                   "[--prompt-len 32] [--new-tokens 64] [--beams 10] [--repeats 1] [--no-cache] "
                   "[--model gpt2|tinyllama|qwen3-0.6b|smollm2-135m|llama2-7b] [--bf16] "
                   "[--no-header]\n");
      return 2;
    }
  }
  if (cases.empty()) cases = {"greedy/1", "greedy/4", "beam/1", "beam/4"};
  if (std::getenv("FOURIERFT_NUM_THREADS") == nullptr) set_num_threads(2);
  if (std::getenv("FOURIERFT_KEEP_MALLOC_DEFAULTS") == nullptr) reuse_freed_memory();
  if (header) std::printf("impl\tmode\tbatch\tprompt_len\tnew_tokens\ttokens_per_s\tms\tpeak_rss_mb\n");
  bool ok = true;
  for (const std::string& c : cases) {
    ok = run_forked(c, true, opt) && ok;
    if (opt.no_cache) ok = run_forked(c, false, opt) && ok;
  }
  return ok ? 0 : 1;
}
