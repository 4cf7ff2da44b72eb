// bench_step — one whole training step of a model (forward, loss, backward, AdamW step, zero_grad,
// tape.clear) with FourierFT, LoRA and full fine-tuning: the numbers benchmarks/pytorch_reference.py
// measures for PyTorch, with the same shapes, so benchmarks/compare.sh can print the ratios.
//
//   ./build/benchmarks/bench_step                      GPT-2 small and RoBERTa-base, 8 x 128 tokens
//   ./build/benchmarks/bench_step --all                also GPT-2 medium and ViT-base (8 images)
//   ./build/benchmarks/bench_step --case gpt2/fourierft --steps 3
//   FOURIERFT_PROFILE=1 ./build/benchmarks/bench_step --case gpt2/fourierft   time per op name
//   FOURIERFT_BENCH_EACH_STEP=1 ...      each timed step's time and minor page faults on stderr
//   FOURIERFT_BENCH_FLOOR_DETAIL=1 ...   the GEMM floor shape by shape on stderr
//   ./build/benchmarks/bench_step --case gpt2/fourierft --recompute    GPT-2 with every block
//        checkpointed (core/recompute.hpp): method printed as "fourierft+recompute"
//   ./build/benchmarks/bench_step --case tinyllama/fourierft     the LLaMA family at published
//        shapes (tinyllama, qwen3-0.6b, smollm2-135m, llama2-7b), 4 x 256 tokens unless --batch /
//        --seq; --bf16 holds the frozen Linear weights in BF16 (random, built without an FP32
//        copy): ./build/benchmarks/bench_step --case llama2-7b/fourierft --bf16 --recompute
//        --batch 1 --seq 512 --steps 1
//   ./build/benchmarks/bench_step --case roberta/fourierft --bf16    the BF16 compute mode
//        (nn::to_bf16_compute, every model): frozen Linear weights in BF16, their GEMMs with BF16
//        operands and FP32 accumulation (detail/bf16_gemm.hpp); method printed as "fourierft+bf16"
//
// Models have random weights from their config structs (HF's initialisation, no checkpoint) and
// dropout 0. FourierFT: q and v of every layer, n = 1000, scaling 150 (GPT-2: the q and v slices of
// the fused c_attn, as the paper's E2E setting); LoRA r = 8 (GPT-2: on the fused c_attn, as PEFT's
// default); classifier heads train fully with both. Each case runs in a forked child, so the peak
// RSS is per case. Threads: FOURIERFT_NUM_THREADS (default 2 here).
// Columns: impl model method batch seq tokens_per_s ms_per_step peak_rss_mb trainable gemm_gflop
// gflop_per_s (the GEMM FLOPs of one step, 2·M·N·K summed over every detail::gemm call), then
// gemm_floor_ms and floor_ratio: every timed step's GEMM calls replayed alone, shape by shape,
// right after that step (gemm_floor.hpp); gemm_floor_ms is the median of the replays and
// floor_ratio the median over the timed steps of (step ms / its own replay's ms), so a change of
// the machine's speed between steps moves both sides of each ratio alike (with FOURIERFT_PROFILE
// only the last step is replayed, after the profile's steps). --no-floor skips them;
// with --bf16 they are 0 (the floor replays FP32 GEMMs only).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <span>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fourierft/core/half.hpp"
#include "fourierft/core/parallel.hpp"
#include "fourierft/core/profiler.hpp"
#include "fourierft/core/recompute.hpp"
#include "fourierft/detail/gemm.hpp"
#include "fourierft/core/memory.hpp"
#include "fourierft/models/gpt2.hpp"
#include "fourierft/models/llama.hpp"
#include "fourierft/models/roberta.hpp"
#include "fourierft/models/vit.hpp"
#include "fourierft/optim/adamw.hpp"
#include "fourierft/peft/fourierft.hpp"
#include "fourierft/peft/bitfit.hpp"
#include "fourierft/peft/lora.hpp"
#include "fourierft/peft/method.hpp"
#include "fourierft/peft/registry.hpp"
#include "bench_llama.hpp"
#include "gemm_floor.hpp"
#include "bench_process.hpp"

using namespace fourierft;

namespace {

struct Options {
  Index batch = 8, seq = 128, images = 8;
  bool sizes_given = false;  // --batch / --seq given (the LLaMA family defaults to 4 x 256)
  int steps = 2;  // timed steps after one warm-up step
  bool recompute = false;  // GPT-2 / LLaMA: checkpoint every block (activation recomputation)
  bool bf16 = false;       // BF16 compute mode (LLaMA: its frozen weights are also built in BF16)
  bool floor = true;       // measure the FP32 GEMM floor of every timed step (not with --bf16)
};

// Applies the method (any registered one: peft/registry.hpp) and returns the trainable parameters.
// FourierFT n = 1000, scaling 150 and LoRA r = 8, alpha 8 on query / value (GPT-2: on c_attn,
// FourierFT on its q and v slices); the classifier head, where there is one, trains fully.
template <class Model>
std::vector<Var<float>> apply_method(Model& model, const std::string& method, bool gpt2,
                                     std::vector<std::string> qv = {"query", "value"}) {
  const peft::TargetSpec targets = {gpt2 ? std::vector<std::string>{"c_attn"} : qv, ""};
  const bool classifier = !gpt2 && qv.front() == "query";  // RoBERTa / ViT: the head trains
  peft::AdapterSpec spec{.config = peft::method_config(method),
                         .modules_to_save = classifier ? std::vector<std::string>{"classifier"}
                                                       : std::vector<std::string>{}};
  if (auto* f = spec.config.find<peft::FourierFTConfig>()) {
    f->n_frequency = 1000;
    f->scaling = 150.0;
    f->target_modules = targets;
    if (gpt2) f->fused_slices = {{"c_attn", 3, {{"q", 0}, {"v", 2}}}};
  }
  if (auto* l = spec.config.find<peft::LoraConfig>()) {
    l->r = 8;
    l->lora_alpha = 8;
    l->target_modules = targets;
  }
  Rng rng(7);
  peft::apply_adapter(model, spec, rng);
  model.train();
  return model.trainable_parameters();
}

struct Result {
  double ms = 0, gflop = 0;
  double peak_rss_mb = 0;
  double floor_ms = 0;     // median of the timed steps' GEMM calls replayed alone (0: not measured)
  double floor_ratio = 0;  // median over the timed steps of step ms / its replay's ms
  Index tokens = 0, batch = 0, seq = 0, trainable = 0;
};

// Minor page faults of this process so far (first touches of fresh memory).
long minor_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// Times `step` (which returns the loss value): one warm-up, then the median of opt.steps.
// FOURIERFT_BENCH_EACH_STEP=1 prints each timed step's time and page faults on stderr.
template <class Step>
Result time_steps(const Options& opt, Step&& step) {
  Result r;
  const float warm = step();
  if (!std::isfinite(warm)) throw Error(str_cat("bench_step: loss is ", warm, " at step 0"));
  detail::OpProfile::instance().reset();  // FOURIERFT_PROFILE: time the timed steps only
  std::vector<double> ms, floors, ratios;
  std::uint64_t flops = 0;
  // Under FOURIERFT_PROFILE a replay between steps would count towards the next step's first op
  // (forward times run from one recorded op to the next): then only the last step is replayed.
  const bool profiling = detail::OpProfile::instance().enabled();
  for (int s = 0; s < opt.steps; ++s) {
    const std::uint64_t f0 = detail::gemm_flop_count().load();
    const long faults0 = minor_faults();
    const bool last = s + 1 == opt.steps;
    const bool replay = opt.floor && (last || !profiling);
    if (replay) bench::GemmRecorder::start();
    const auto t0 = std::chrono::steady_clock::now();
    const float loss = step();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (std::getenv("FOURIERFT_BENCH_EACH_STEP") != nullptr)  // every timed step on stderr
      std::fprintf(stderr, "step %d: %.1f ms, %ld minor page faults\n", s + 1, ms.back(),
                   minor_faults() - faults0);
    flops = detail::gemm_flop_count().load() - f0;
    if (s == 0) r.peak_rss_mb = bench::peak_rss_mb();  // before any floor replay's buffers
    if (replay) {
      floors.push_back(bench::gemm_floor_ms(
          bench::GemmRecorder::stop(), 3,
          last && std::getenv("FOURIERFT_BENCH_FLOOR_DETAIL") != nullptr));
      ratios.push_back(ms.back() / floors.back());
      if (std::getenv("FOURIERFT_BENCH_EACH_STEP") != nullptr)
        std::fprintf(stderr, "step %d: GEMM floor %.1f ms, ratio %.3f\n", s + 1, floors.back(),
                     ratios.back());
    }
    if (!std::isfinite(loss)) throw Error(str_cat("bench_step: loss is ", loss, " at step ", s + 1));
  }
  r.ms = bench::median(std::move(ms));
  if (opt.floor) {
    r.floor_ms = bench::median(std::move(floors));
    r.floor_ratio = bench::median(std::move(ratios));
  }
  r.gflop = static_cast<double>(flops) * 1e-9;
  return r;
}

// One training step from a loss just recorded on `tape`: backward, AdamW step, zero_grad, clear.
float train_step(Tape<float>& tape, optim::AdamW<float>& optimizer, const Var<float>& loss) {
  tape.backward(loss);
  optimizer.step();
  optimizer.zero_grad();
  tape.clear();
  return loss.item();
}

// r with the case's sizes: `batch` sequences (or images) of `seq` tokens (or patches + 1).
Result with_sizes(Result r, Index batch, Index seq, const std::vector<Var<float>>& params) {
  r.batch = batch;
  r.seq = seq;
  for (const auto& p : params) r.trainable += p.numel();
  return r;
}

Result run_case(const std::string& model_name, const std::string& method, const Options& opt) {
  Rng data_rng(3);
  auto random_ids = [&](Index B, Index T, Index lo, Index hi) {
    Tensor<std::int64_t> ids({B, T});
    for (auto& v : ids.data()) v = lo + static_cast<std::int64_t>(data_rng.uniform() * double(hi - lo));
    return ids;
  };
  Tape<float> tape;
  optim::AdamWOptions adam;
  adam.lr = 1e-4;
  adam.weight_decay = 0.0;
  if (model_name == "gpt2" || model_name == "gpt2-medium") {
    io::Gpt2Config config;
    if (model_name == "gpt2-medium") {
      config.n_embd = 1024;
      config.n_layer = 24;
      config.n_head = 16;
    }
    config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = 0.0;
    models::GPT2LMHeadModel<float> model(config, 1);
    auto params = apply_method(model, method, true);
    if (opt.bf16) {  // the blocks' frozen Linear weights, and the tied head while wte is frozen
      nn::to_bf16_compute(model);
      if (!model.transformer.wte.weight.requires_grad()) model.set_bf16_lm_head(true);
    }
    optim::AdamW<float> optimizer(params, adam);
    const Tensor<std::int64_t> ids = random_ids(opt.batch, opt.seq, 0, config.vocab_size);
    const std::vector<std::int64_t> targets = models::causal_lm_targets(models::causal_lm_labels(ids));
    // GPT2Model::forward without padding or cache, each block checkpointed (--recompute).
    auto checkpointed_hidden = [&] {
      auto& t = model.transformer;
      Tensor<std::int64_t> positions({opt.batch, opt.seq});
      for (Index i = 0; i < positions.numel(); ++i) positions[i] = i % opt.seq;
      Var<float> x = ops::add(tape, t.wte.forward(tape, ids), t.wpe.forward(tape, positions));
      x = t.drop.forward(tape, x);
      for (auto& block : t.h)
        x = recompute(tape, x, [&block](Tape<float>& local, const Var<float>& h) {
          return block.forward(local, h, Tensor<std::int64_t>(), nullptr);
        });
      return t.ln_f.forward(tape, x);
    };
    const Result r = time_steps(opt, [&] {
      // Hidden states, then the tied LM head + cross-entropy fused over row chunks.
      const Var<float> hidden =
          opt.recompute ? checkpointed_hidden() : model.transformer.forward(tape, ids);
      return train_step(tape, optimizer, model.lm_loss(tape, hidden, targets));
    });
    return with_sizes(r, opt.batch, opt.seq, params);
  }
  if (bench::llama_shapes().contains(model_name)) {
    // The LLaMA family at a published checkpoint's shapes, random weights: FourierFT / LoRA on
    // q_proj and v_proj (the paper's setting), frozen FP32 base, the causal-LM loss over random
    // ids, default 4 sequences of 256 tokens (pytorch_reference.py's llama cases).
    const io::LlamaConfig config = bench::real_shapes_config(model_name);
    const Index B = opt.sizes_given ? opt.batch : 4, T = opt.sizes_given ? opt.seq : 256;
    auto built = bench::build_llama(config, opt.bf16);
    auto& model = *built;
    model.set_gradient_checkpointing(opt.recompute);
    auto params = apply_method(model, method, false, {"q_proj", "v_proj"});
    if (opt.bf16) nn::to_bf16_compute(model);
    optim::AdamW<float> optimizer(params, adam);
    const Tensor<std::int64_t> ids = random_ids(B, T, 0, config.vocab_size);
    const std::vector<std::int64_t> targets = models::causal_lm_targets(ids);
    const Result r = time_steps(opt, [&] {
      const Var<float> hidden = model.model.forward(tape, ids);
      return train_step(tape, optimizer, model.lm_loss(tape, hidden, targets));
    });
    return with_sizes(r, B, T, params);
  }
  if (model_name == "roberta") {
    io::RobertaConfig config;
    config.max_position_embeddings = 514;
    config.type_vocab_size = 1;
    config.layer_norm_eps = 1e-5;
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0;
    models::RobertaForSequenceClassification<float> model(config, 1);
    auto params = apply_method(model, method, false);
    if (opt.bf16) nn::to_bf16_compute(model);
    optim::AdamW<float> optimizer(params, adam);
    const Tensor<std::int64_t> ids = random_ids(opt.batch, opt.seq, 3, config.vocab_size);
    const Tensor<std::int64_t> labels = random_ids(opt.batch, 1, 0, 2).reshape({opt.batch});
    const Result r = time_steps(opt, [&] {
      return train_step(tape, optimizer, model.loss(tape, model.forward(tape, ids).logits, labels));
    });
    return with_sizes(r, opt.batch, opt.seq, params);
  }
  if (model_name == "vit") {
    io::VitConfig config;
    config.id2label.clear();
    for (int i = 0; i < 10; ++i) config.id2label.push_back("LABEL_" + std::to_string(i));
    models::ViTForImageClassification<float> model(config, 1);
    auto params = apply_method(model, method, false);
    if (opt.bf16) nn::to_bf16_compute(model);
    optim::AdamW<float> optimizer(params, adam);
    Rng rng(5);
    const Tensor<float> pixels = randn<float>({opt.images, 3, 224, 224}, rng);
    const Tensor<std::int64_t> labels = random_ids(opt.images, 1, 0, 10).reshape({opt.images});
    const Result r = time_steps(opt, [&] {
      return train_step(tape, optimizer,
                        model.loss(tape, model.forward(tape, pixels).logits, labels));
    });
    return with_sizes(r, opt.images, config.num_patches() + 1, params);
  }
  throw ValueError(str_cat("bench_step: unknown model '", model_name,
                           "' (gpt2, gpt2-medium, roberta, vit, tinyllama, qwen3-0.6b, smollm2-135m)"));
}

// One case ("model/method") in a forked child: its TSV row.
bool run_forked(const std::string& c, const Options& opt) {
  return bench::run_forked("bench_step", c, [&] {
    const auto slash = c.find('/');
    const std::string model = c.substr(0, slash), method = slash == std::string::npos ? "" : c.substr(slash + 1);
    const Result r = run_case(model, method, opt);
    const bool checkpointed =
        opt.recompute && (model.rfind("gpt2", 0) == 0 || bench::llama_shapes().contains(model));
    const std::string shown = (checkpointed ? method + "+recompute" : method) +
                              (opt.bf16 ? "+bf16" : "");
    const double tokens = static_cast<double>(r.batch * r.seq);
    std::printf("fourierft\t%s\t%s\t%lld\t%lld\t%.1f\t%.1f\t%.0f\t%lld\t%.1f\t%.1f\t%.1f\t%.3f\n",
                model.c_str(), shown.c_str(), static_cast<long long>(r.batch),
                static_cast<long long>(r.seq), tokens / (r.ms * 1e-3), r.ms, r.peak_rss_mb,
                static_cast<long long>(r.trainable), r.gflop, r.gflop / (r.ms * 1e-3), r.floor_ms,
                r.floor_ratio);
  });
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  std::vector<std::string> cases;
  bool all = false, header = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] { return bench::option_value("bench_step", argc, argv, i); };
    if (a == "--case") cases.push_back(value());
    else if (a == "--all") all = true;
    else if (a == "--batch") opt.batch = std::stoll(value()), opt.sizes_given = true;
    else if (a == "--seq") opt.seq = std::stoll(value()), opt.sizes_given = true;
    else if (a == "--images") opt.images = std::stoll(value());
    else if (a == "--steps") opt.steps = std::max(1, std::stoi(value()));
    else if (a == "--no-header") header = false;
    else if (a == "--recompute") opt.recompute = true;
    else if (a == "--bf16") opt.bf16 = true, opt.floor = false;  // BF16 GEMMs are not replayed
    else if (a == "--no-floor") opt.floor = false;
    else {
      std::fprintf(stderr,
                   "usage: bench_step [--case model/method]... [--all] [--batch 8] [--seq 128] "
                   "[--images 8] [--steps 2] [--recompute] [--bf16] [--no-floor] [--no-header]\n");
      return 2;
    }
  }
  if (cases.empty()) {
    for (const char* m : {"gpt2", "roberta"})
      for (const char* k : {"fourierft", "lora", "full"}) cases.push_back(std::string(m) + "/" + k);
    if (all)
      for (const char* m : {"gpt2-medium", "vit"})
        for (const char* k : {"fourierft", "lora", "full"}) cases.push_back(std::string(m) + "/" + k);
  }
  if (std::getenv("FOURIERFT_NUM_THREADS") == nullptr) set_num_threads(2);
  if (std::getenv("FOURIERFT_KEEP_MALLOC_DEFAULTS") == nullptr) reuse_freed_memory();
  std::fprintf(stderr, "# GEMM kernels: %s\n", fourierft::detail::gemm_kernels().c_str());
  if (header)
    std::printf("impl\tmodel\tmethod\tbatch\tseq\ttokens_per_s\tms_per_step\tpeak_rss_mb\ttrainable"
                "\tgemm_gflop\tgflop_per_s\tgemm_floor_ms\tfloor_ratio\n");
  bool ok = true;
  for (const std::string& c : cases) ok = run_forked(c, opt) && ok;
  return ok ? 0 : 1;
}
