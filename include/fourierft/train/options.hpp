// fourierft/train/options.hpp — what the three example programs share before their loops: the
// common flags, the AdapterSpec they build, the optimizer's parameter groups and the size report.
#pragma once

// A program fills RunOptions from its preset, then read_run_options() lets every flag override it:
//   RunOptions o = ...preset...;  read_run_options(args, o);
// adapter_spec() turns the method flags into a peft::AdapterSpec (targets and head are the
// program's), param_groups() splits the trainable parameters into the adapter (--lr) and the rest
// (--head-lr) as peft::adapter_parameters says, and parameter_report() prints trainable / total parameters and the adapter's bytes.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/detail/bf16_gemm.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/optim/optimizer.hpp"
#include "fourierft/peft/adapter_io.hpp"
#include "fourierft/peft/fourierft.hpp"
#include "fourierft/peft/lora.hpp"
#include "fourierft/peft/method.hpp"
#include "fourierft/peft/registry.hpp"
#include "fourierft/train/seeds.hpp"
#include "fourierft/util/args.hpp"

namespace fourierft::train {

namespace fs = std::filesystem;

struct RunOptions {
  // What to fine-tune.
  std::string method = "fourierft";  // fourierft | lora | bitfit | full | head
  Index n = 1000;                    // FourierFT: spectral coefficients per adapted weight
  double scaling = 150;              // FourierFT: the paper's alpha
  std::uint64_t entry_seed = 777;    // FourierFT: random_loc_seed of the shared entries
  std::optional<peft::FrequencyBias> freq_bias;  // FourierFT: eq. 5 band-pass (fc, W)
  Index lora_r = 8;
  double lora_alpha = 8;
  // Optimisation.
  double lr = 5e-2;        // adapter parameters (spectra, LoRA factors; the body for bitfit/full)
  double head_lr = 6e-3;   // every other trainable parameter (the classifier head)
  int epochs = 1;
  Index batch = 32;        // examples per micro-batch
  Index grad_accum = 1;    // micro-batches per optimizer step
  double warmup_ratio = 0.0;
  double weight_decay = 0.0;
  double clip = 1.0;       // max gradient norm; 0 = no clipping
  // The run.
  std::uint64_t seed = 0;
  int threads = 0;         // 0: FOURIERFT_NUM_THREADS or all cores
  fs::path out = "out";
  Index log_every = 10;
  std::int64_t stop_after = 0;  // > 0: save the state and stop after this many optimizer steps
  std::int64_t save_every = 0;  // > 0: also save the state after every this many optimizer steps
  bool resume = false;
  bool save_merged = false;
  bool random_init = false;     // build the model from config.json with random weights (timing)
  fs::path adapter;             // load this adapter instead of making a fresh one
  bool eval_only = false;       // with --adapter: evaluate and exit
  bool fast_fft = false;        // FFTW_MEASURE plans: faster, not bit-reproducible across processes
  bool bf16 = false;            // BF16 compute mode for the frozen weights (nn::to_bf16_compute)
};

// The flags every example program reads (its own ones are listed by the program).
inline const char* common_usage() {
  return R"(fine-tuning method:
  --method M          fourierft | lora | bitfit | full | head                  [fourierft]
  --n N               FourierFT: spectral coefficients per adapted weight
  --scaling A         FourierFT: the paper's alpha (PEFT's `scaling`)
  --entry-seed S      FourierFT: seed of the shared spectral entries (random_loc_seed) [777]
  --freq-bias fc,W    FourierFT: sample entries with the paper's eq. 5 band-pass instead of uniformly
  --lora-r R, --lora-alpha A   LoRA rank and alpha                                [8, 8]
optimisation:
  --lr LR             adapter learning rate (spectra / LoRA; the body for bitfit and full)
  --head-lr LR        learning rate of every other trainable parameter (the head)
  --epochs E, --batch B, --grad-accum K   (an optimizer step sees B x K examples)
  --warmup-ratio R, --weight-decay W, --clip C (max gradient norm, 0 = off)       [clip 1]
run:
  --seed S            data order, dropout, augmentation and new heads                [0]
  --threads T         worker threads                                          [all cores]
  --out DIR           log.jsonl, state/, adapter/, results                          [out]
  --log-every K       log every K optimizer steps                                   [10]
  --resume            continue from DIR/state (after Ctrl-C, --stop-after or a crash)
  --stop-after S      save the state and stop after S optimizer steps (resume later)
  --save-every N      save the state every N optimizer steps too (a crash loses < N)  [epoch ends]
  --save-merged       also write DIR/merged: the base model with the adapter merged in
  --adapter DIR       start from a saved adapter (PEFT format) instead of a fresh one
  --eval-only         with --adapter: evaluate it and exit
  --random-init       build the model from DIR/config.json with random weights (for timing)
  --fast-fft          FFTW plans by timing (FFTW_MEASURE): faster spectra, but the last bits can
                      differ between processes, so a resumed run is no longer bit-identical
  --bf16              BF16 compute mode (HF Trainer's bf16=True): frozen Linear weights held in
                      BF16, their GEMMs with BF16 operands and FP32 accumulation; the adapter,
                      head, gradients and optimizer state stay FP32 (docs/performance.md)
)";
}

// The options that take no value, for util::Args.
inline std::set<std::string> common_flags() {
  return {"--resume", "--save-merged", "--random-init", "--eval-only", "--fast-fft", "--bf16",
          "--help"};
}

// Reads "fc,W" (--freq-bias 200,200).
inline peft::FrequencyBias parse_frequency_bias(const std::string& text) {
  const auto comma = text.find(',');
  char* end = nullptr;
  peft::FrequencyBias bias;
  bool ok = comma != std::string::npos;
  if (ok) {
    const std::string fc = text.substr(0, comma), w = text.substr(comma + 1);
    bias.fc = std::strtod(fc.c_str(), &end);
    ok = end != fc.c_str() && *end == '\0';
    bias.W = std::strtod(w.c_str(), &end);
    ok = ok && end != w.c_str() && *end == '\0';
  }
  check(ok && bias.fc >= 0 && bias.W > 0, "option --freq-bias expects 'fc,W' with fc >= 0 and ",
        "W > 0 (e.g. --freq-bias 200,200), got '", text, "'");
  return bias;
}

// Overrides the optimisation and run fields of `o` (--lr, --epochs, --batch, --grad-accum,
// --warmup-ratio, --weight-decay, --clip, --seed, --threads, --out, --log-every, --stop-after,
// --save-every, --resume, --fast-fft) with the flags given, checking each range: what every training loop reads,
// fine-tuning or pretraining (examples/pretrain.cpp reads only these).
inline void read_loop_options(util::Args& args, RunOptions& o) {
  o.lr = args.real("--lr", o.lr);
  o.epochs = static_cast<int>(args.integer("--epochs", o.epochs));
  o.batch = args.integer("--batch", o.batch);
  o.grad_accum = args.integer("--grad-accum", o.grad_accum);
  o.warmup_ratio = args.real("--warmup-ratio", o.warmup_ratio);
  o.weight_decay = args.real("--weight-decay", o.weight_decay);
  o.clip = args.real("--clip", o.clip);
  o.seed = static_cast<std::uint64_t>(args.integer("--seed", static_cast<long long>(o.seed)));
  o.threads = static_cast<int>(args.integer("--threads", o.threads));
  o.out = args.str("--out", o.out.string());
  o.log_every = args.integer("--log-every", o.log_every);
  o.stop_after = args.integer("--stop-after", o.stop_after);
  o.save_every = args.integer("--save-every", o.save_every);
  o.resume = args.has("--resume");
  o.fast_fft = args.has("--fast-fft");

  check(o.lr >= 0, "option --lr must be >= 0, got ", o.lr);
  check(o.epochs >= 1, "option --epochs must be >= 1, got ", o.epochs);
  check(o.batch >= 1, "option --batch must be >= 1, got ", o.batch);
  check(o.grad_accum >= 1, "option --grad-accum must be >= 1, got ", o.grad_accum);
  check(o.warmup_ratio >= 0 && o.warmup_ratio <= 1, "option --warmup-ratio must be in [0, 1], got ",
        o.warmup_ratio);
  check(o.weight_decay >= 0, "option --weight-decay must be >= 0, got ", o.weight_decay);
  check(o.clip >= 0, "option --clip must be >= 0 (0 turns clipping off), got ", o.clip);
  check(o.threads >= 0, "option --threads must be >= 1, got ", o.threads);
  check(o.log_every >= 1, "option --log-every must be >= 1, got ", o.log_every);
  check(o.stop_after >= 0, "option --stop-after must be >= 0, got ", o.stop_after);
  check(o.save_every >= 0, "option --save-every must be >= 0 (0: at epoch ends only), got ",
        o.save_every);
}

// Overrides `o` (preset values) with the flags given. Checks every value's range.
inline void read_run_options(util::Args& args, RunOptions& o) {
  o.method = args.str("--method", o.method);
  o.n = args.integer("--n", o.n);
  o.scaling = args.real("--scaling", o.scaling);
  o.entry_seed = static_cast<std::uint64_t>(args.integer("--entry-seed", static_cast<long long>(o.entry_seed)));
  if (args.has("--freq-bias")) o.freq_bias = parse_frequency_bias(args.str("--freq-bias"));
  o.lora_r = args.integer("--lora-r", o.lora_r);
  o.lora_alpha = args.real("--lora-alpha", o.lora_alpha);
  o.head_lr = args.real("--head-lr", o.head_lr);
  read_loop_options(args, o);
  o.save_merged = args.has("--save-merged");
  o.random_init = args.has("--random-init");
  if (args.has("--adapter")) o.adapter = args.str("--adapter");
  o.eval_only = args.has("--eval-only");
  o.bf16 = args.has("--bf16");

  check(peft::find_method(o.method) != nullptr, "option --method expects ", peft::method_names(),
        ", got '", o.method, "'");
  check(o.n >= 1, "option --n must be >= 1, got ", o.n);
  check(o.lora_r >= 1, "option --lora-r must be >= 1, got ", o.lora_r);
  check(o.head_lr >= 0, "options --lr and --head-lr must be >= 0");
  check(!o.eval_only || !o.adapter.empty(), "option --eval-only needs --adapter DIR (the adapter ",
        "to evaluate)");
  check(!(o.resume && !o.adapter.empty()), "options --resume and --adapter cannot be combined: ",
        "--resume restores the trainable tensors from DIR/state");
}

// The program's part of an adapter: which Linear layers, which head, PEFT's task type.
struct AdapterTargets {
  peft::TargetSpec targets;                   // e.g. {{"query", "value"}}
  std::vector<std::string> modules_to_save;   // e.g. {"classifier"}
  std::string task_type;                      // "SEQ_CLS", "CAUSAL_LM", ""
  bool fan_in_fan_out = false;                // GPT-2's Conv1D weights
  std::vector<peft::FusedSlices> fused_slices;  // GPT-2's c_attn q / v slices
  std::string base_model_name_or_path;
};

// The method named by --method with its defaults, then the flags of FourierFT (--n, --scaling,
// --entry-seed, --freq-bias) or LoRA (--lora-r, --lora-alpha) and the program's targets.
inline peft::AdapterSpec adapter_spec(const RunOptions& o, const AdapterTargets& t) {
  peft::AdapterSpec spec{.config = peft::method_config(o.method),
                         .modules_to_save = t.modules_to_save,
                         .task_type = t.task_type,
                         .base_model_name_or_path = t.base_model_name_or_path,
                         .fan_in_fan_out = t.fan_in_fan_out};
  if (auto* f = spec.config.find<peft::FourierFTConfig>()) {
    f->n_frequency = o.n;
    f->scaling = o.scaling;
    f->random_loc_seed = o.entry_seed;
    f->target_modules = t.targets;
    f->frequency_bias = o.freq_bias;
    f->fused_slices = t.fused_slices;
  }
  if (auto* l = spec.config.find<peft::LoraConfig>()) {
    l->r = o.lora_r;
    l->lora_alpha = o.lora_alpha;
    l->target_modules = t.targets;
  }
  return spec;
}

// Two AdamW groups: "adapter" at --lr and "head" at --head-lr (empty groups are left out).
template <class Real>
std::vector<optim::ParamGroup<Real>> param_groups(const nn::Module<Real>& model,
                                                  const peft::AdapterSpec& spec,
                                                  const RunOptions& o) {
  optim::ParamGroup<Real> adapter{.params = {}, .lr = o.lr, .weight_decay = o.weight_decay,
                                  .name = "adapter"};
  optim::ParamGroup<Real> head{.params = {}, .lr = o.head_lr, .weight_decay = o.weight_decay,
                               .name = "head"};
  const std::set<std::string> adapter_names = peft::adapter_parameters(model, spec);
  for (const auto& [name, p] : model.named_parameters())
    if (p.requires_grad()) (adapter_names.count(name) ? adapter : head).params.push_back(p);
  std::vector<optim::ParamGroup<Real>> groups;
  if (!adapter.params.empty()) groups.push_back(adapter);
  if (!head.params.empty()) groups.push_back(head);
  check(!groups.empty(), "nothing to train: method ", spec.method(), " left no trainable parameter");
  return groups;
}

// "125,263,874"
inline std::string with_commas(std::int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return (v < 0 ? "-" : "") + out;
}

// The lines printed at start: what the method adapts (its describe()), trainable / total
// parameters (adapter and head apart, as param_groups splits them) and the adapter's size in bytes
// (F32 tensors, as save_adapter writes them).
template <class Real>
std::string parameter_report(nn::Module<Real>& model, const peft::AdapterSpec& spec) {
  const std::set<std::string> adapter_names = peft::adapter_parameters(model, spec);
  Index adapter = 0, other = 0;
  const Index total = model.num_parameters();  // frozen 16-bit weights included
  for (const auto& [name, p] : model.named_parameters())
    if (p.requires_grad()) (adapter_names.count(name) ? adapter : other) += p.numel();
  const Index trainable = adapter + other;
  char pct[32];
  std::snprintf(pct, sizeof pct, "%.4f%%", total ? 100.0 * double(trainable) / double(total) : 0.0);
  const char* part = spec.config.attaches_adapters() ? "adapter " : "body ";
  return str_cat("method: ", spec.config.describe(model), "\ntrainable params: ",
                 with_commas(trainable), " of ", with_commas(total), " (", pct, "): ", part,
                 with_commas(adapter), " + head ", with_commas(other), "\nadapter size: ",
                 with_commas(4 * trainable), " bytes of F32 tensors (", part,
                 with_commas(4 * adapter), " + head ", with_commas(4 * other), ")");
}

// The run's adapter, attached to `model`: the one saved in --adapter DIR, or a fresh
// adapter_spec(o, t) whose random draws are seeded from --seed. Prints which, then
// parameter_report(); returns the spec the model now carries. With --bf16, the frozen Linear
// weights then go to BF16 compute (nn::to_bf16_compute: after the method froze them).
template <class Real>
peft::AdapterSpec attach_adapter(nn::Module<Real>& model, const RunOptions& o,
                                 const AdapterTargets& t) {
  peft::AdapterSpec spec = adapter_spec(o, t);
  if (!o.adapter.empty()) {
    spec = peft::load_adapter(model, o.adapter);
    std::printf("adapter: loaded %s\n", o.adapter.string().c_str());
  } else {
    Rng init_rng(mix_seed(o.seed, 0xADA));
    peft::apply_adapter(model, spec, init_rng);
  }
  std::printf("%s\n", parameter_report(model, spec).c_str());
  if (o.bf16)
    std::printf("bf16: %zu frozen Linear weights in BF16 compute (kernel %s)\n",
                nn::to_bf16_compute(model).size(),
                fourierft::detail::bf16_kernel_name(fourierft::detail::bf16_automatic_kernel()));
  return spec;
}

// The settings of RunOptions that fix a run's trajectory (checked on --resume), as JSON.
inline io::Json resume_settings(const RunOptions& o) {
  io::Json j = {{"method", o.method}, {"n", o.n}, {"scaling", o.scaling},
                {"entry_seed", o.entry_seed}, {"lora_r", o.lora_r}, {"lora_alpha", o.lora_alpha},
                {"lr", o.lr}, {"head_lr", o.head_lr}, {"epochs", o.epochs}, {"batch", o.batch},
                {"grad_accum", o.grad_accum}, {"warmup_ratio", o.warmup_ratio},
                {"weight_decay", o.weight_decay}, {"clip", o.clip}, {"seed", o.seed}};
  j["freq_bias"] = o.freq_bias ? io::Json{o.freq_bias->fc, o.freq_bias->W} : io::Json();
  if (o.bf16) j["bf16"] = true;  // only when set: states saved before the flag existed still match
  return j;
}

}  // namespace fourierft::train
