// fourierft/train/presets.hpp — the FourierFT paper's hyper-parameters as named presets, one per
// (model size, task): GLUE with RoBERTa (Table 9), E2E with GPT-2 (Table 10), ViT (Table 12),
// instruction tuning of LLaMA on Alpaca (Table 4: the official run scripts, and LoRA r = 64).
#pragma once

// Each example program starts from a preset and lets every flag override it:
//   finetune_glue --preset roberta-base-sst2 ...          (or presets::roberta_base_sst2 in code)
// The numbers are those of the paper's appendix tables (../shared/NOTES.md §2 lists them):
//   GLUE: FourierFT on query and value of every layer, n = 1000, the classifier head fully trained at
//         its own lr; AdamW, weight decay 0, linear schedule with 6% warmup; best epoch on dev.
//   E2E:  FourierFT on the q and v slices of GPT-2's fused c_attn, n = 1000, scaling 300, batch 128,
//         5 epochs, label smoothing 0.1, linear schedule; decoding beam 10, length penalty 0.8,
//         no-repeat n-gram 4, 64 new tokens; last epoch.
//   ViT:  query and value, n = 3000, scaling 300, classifier fully trained, 10 epochs, batch 200 as
//         50 x 4 gradient accumulation, linear schedule without warmup.
//   Instruction tuning (Chaos96/fourierft experiments/Instruction_Tuning: SFT.py + llama-*.sh):
//         FourierFT on q_proj and v_proj, n = 1000, scaling 300, batch 1, no accumulation, AdamW,
//         clip 1.0, linear schedule with 5% warmup, 512 tokens; lr / epochs / weight decay per script.
//         The LoRA r = 64 baselines (q,v and every linear layer but lm_head, Table 4's † rows) come
//         from VeRA's runs, which follow QLoRA: alpha 16, lr 2e-4, 1 epoch, 16 examples per step —
//         assumed here, since neither paper's text was at hand (docs/examples/finetune_instruct.md).

#include <filesystem>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/train/options.hpp"
#include "fourierft/util/args.hpp"

namespace fourierft::train {

// RoBERTa on one GLUE task.
struct GluePreset {
  const char* name;          // "roberta-base-sst2"
  const char* task;          // GLUE task name as io::glue_task_from_name reads it
  Index n = 1000;            // spectral coefficients per adapted weight
  double scaling = 150;      // the paper's alpha (PEFT's `scaling`)
  double lr = 5e-2;          // spectrum (adapter) learning rate
  double head_lr = 6e-3;     // classifier head learning rate
  int epochs = 40;
  Index batch = 32;
  Index max_len = 512;       // tokens per example, <s> and </s> included
  double warmup_ratio = 0.06;
  double weight_decay = 0.0;
};

// GPT-2 on E2E NLG.
struct E2EPreset {
  const char* name;               // "gpt2-medium-e2e"
  Index n = 1000;
  double scaling = 300;
  double lr = 2e-2;               // spectrum learning rate
  double other_lr = 2e-4;         // every other trainable parameter (the paper's second lr)
  int epochs = 5;
  Index batch = 128;              // examples per optimizer step (micro-batch x accumulation)
  double weight_decay = 0.01;
  double label_smoothing = 0.1;
  double warmup_ratio = 0.0;      // the paper gives none beyond "linear schedule"
  Index max_len = 512;            // context + completion tokens (LoRA's seq_len)
  Index beam = 10;
  double length_penalty = 0.8;
  Index no_repeat_ngram = 4;
  Index max_new_tokens = 64;
};

// ViT on an image classification data set.
struct VitPreset {
  const char* name;          // "vit-base-cifar10"
  Index n = 3000;
  double scaling = 300;
  double lr = 3e-1;          // spectrum learning rate
  double head_lr = 1e-3;     // classifier learning rate
  double weight_decay = 9e-5;
  int epochs = 10;
  Index batch = 50;          // images per micro-batch
  Index grad_accum = 4;      // micro-batches per optimizer step: 200 images, as the paper
  double warmup_ratio = 0.0;
};

// A LLaMA-family model instruction-tuned on Alpaca (examples/finetune_instruct).
struct InstructPreset {
  const char* name;          // "llama2-7b-alpaca"
  const char* method = "fourierft";
  const char* targets = "q,v";  // q,v | all-linear (every Linear but lm_head)
  double lr = 5e-2;
  int epochs = 3;
  double weight_decay = 2e-3;
  Index n = 1000;            // FourierFT
  double scaling = 300;      // FourierFT: the paper's alpha
  Index lora_r = 64;         // LoRA
  double lora_alpha = 16;
  Index batch = 1;           // examples per micro-batch (per_device_train_batch_size)
  Index grad_accum = 1;
  double warmup_ratio = 0.05;
  Index max_len = 512;       // prompt + response tokens (model_max_length)
};

namespace presets {
// clang-format off
// GLUE, RoBERTa-base (Table 9):           name                  task    n     scal  lr      head_lr  ep   bs   len
inline constexpr GluePreset roberta_base_stsb  {"roberta-base-stsb",  "stsb", 1000, 84,  9e-2,   9e-3,   60,  32,  512};
inline constexpr GluePreset roberta_base_rte   {"roberta-base-rte",   "rte",  1000, 110, 9e-2,   1.1e-2, 90,  32,  512};
inline constexpr GluePreset roberta_base_mrpc  {"roberta-base-mrpc",  "mrpc", 1000, 141, 5e-2,   6e-3,   30,  32,  512};
inline constexpr GluePreset roberta_base_cola  {"roberta-base-cola",  "cola", 1000, 49,  1.2e-1, 8e-3,   100, 32,  512};
inline constexpr GluePreset roberta_base_sst2  {"roberta-base-sst2",  "sst2", 1000, 140, 5e-2,   6e-3,   40,  32,  512};
inline constexpr GluePreset roberta_base_qnli  {"roberta-base-qnli",  "qnli", 1000, 29,  1e-2,   1e-3,   40,  32,  512};
// GLUE, RoBERTa-large (Table 9).
inline constexpr GluePreset roberta_large_stsb {"roberta-large-stsb", "stsb", 1000, 121, 7e-2,   1e-3,   30,  32,  512};
inline constexpr GluePreset roberta_large_rte  {"roberta-large-rte",  "rte",  1000, 90,  8e-2,   5e-3,   60,  32,  512};
inline constexpr GluePreset roberta_large_mrpc {"roberta-large-mrpc", "mrpc", 1000, 120, 6e-2,   1e-3,   30,  32,  512};
inline constexpr GluePreset roberta_large_cola {"roberta-large-cola", "cola", 1000, 120, 4.3e-2, 1.1e-2, 80,  128, 256};
inline constexpr GluePreset roberta_large_sst2 {"roberta-large-sst2", "sst2", 1000, 99,  4.3e-2, 1e-3,   10,  32,  128};
inline constexpr GluePreset roberta_large_qnli {"roberta-large-qnli", "qnli", 1000, 69,  6e-2,   5e-3,   30,  32,  512};

// E2E, GPT-2 medium and large (Table 10):    name            n     scal lr    other  ep bs   wd
inline constexpr E2EPreset gpt2_medium_e2e {"gpt2-medium-e2e", 1000, 300, 2e-2, 2e-4, 5, 128, 0.01};
inline constexpr E2EPreset gpt2_large_e2e  {"gpt2-large-e2e",  1000, 300, 5e-2, 1e-4, 5, 128, 0.03};

// ViT base and large (Table 12; the paper gives one set of rates per data set for both sizes).
//                                         name                    n     scal lr    head   wd
inline constexpr VitPreset vit_base_cifar10    {"vit-base-cifar10",     3000, 300, 3e-1, 1e-3,  9e-5};
inline constexpr VitPreset vit_base_cifar100   {"vit-base-cifar100",    3000, 300, 2e-1, 7e-4,  1e-4};
inline constexpr VitPreset vit_base_dtd        {"vit-base-dtd",         3000, 300, 3e-1, 1e-3,  7e-5};
inline constexpr VitPreset vit_base_eurosat    {"vit-base-eurosat",     3000, 300, 2e-1, 8e-4,  3e-4};
inline constexpr VitPreset vit_base_oxfordpets {"vit-base-oxfordpets",  3000, 300, 3e-1, 1e-3,  8e-4};
inline constexpr VitPreset vit_large_cifar10   {"vit-large-cifar10",    3000, 300, 3e-1, 1e-3,  9e-5};
inline constexpr VitPreset vit_large_cifar100  {"vit-large-cifar100",   3000, 300, 2e-1, 7e-4,  1e-4};
inline constexpr VitPreset vit_large_dtd       {"vit-large-dtd",        3000, 300, 3e-1, 1e-3,  7e-5};
inline constexpr VitPreset vit_large_eurosat   {"vit-large-eurosat",    3000, 300, 2e-1, 8e-4,  3e-4};
inline constexpr VitPreset vit_large_oxfordpets{"vit-large-oxfordpets", 3000, 300, 3e-1, 1e-3,  8e-4};

// Instruction tuning on Alpaca (Table 4). FourierFT: the official run scripts llama-{1,2}-{7,13}b.sh.
//                                             name                 method       targets       lr    ep wd
inline constexpr InstructPreset llama2_7b_alpaca  {"llama2-7b-alpaca",  "fourierft", "q,v",        5e-2, 3, 2e-3};
inline constexpr InstructPreset llama2_13b_alpaca {"llama2-13b-alpaca", "fourierft", "q,v",        5e-2, 3, 2e-3};
inline constexpr InstructPreset llama1_7b_alpaca  {"llama1-7b-alpaca",  "fourierft", "q,v",        1e-1, 2, 1e-2};
inline constexpr InstructPreset llama1_13b_alpaca {"llama1-13b-alpaca", "fourierft", "q,v",        1e-1, 3, 2e-2};
// LoRA r = 64, alpha 16 (QLoRA's settings, assumed: see above), 1 epoch, 1 x 16 examples per step.
//                                                   name                         method  targets       lr    ep wd  n     scal r   alpha bs acc warm
inline constexpr InstructPreset llama2_7b_alpaca_lora64      {"llama2-7b-alpaca-lora64",      "lora", "q,v",        2e-4, 1, 0, 1000, 300, 64, 16, 1, 16, 0.03};
inline constexpr InstructPreset llama2_7b_alpaca_lora64_all  {"llama2-7b-alpaca-lora64-all",  "lora", "all-linear", 2e-4, 1, 0, 1000, 300, 64, 16, 1, 16, 0.03};
inline constexpr InstructPreset llama2_13b_alpaca_lora64     {"llama2-13b-alpaca-lora64",     "lora", "q,v",        2e-4, 1, 0, 1000, 300, 64, 16, 1, 16, 0.03};
inline constexpr InstructPreset llama2_13b_alpaca_lora64_all {"llama2-13b-alpaca-lora64-all", "lora", "all-linear", 2e-4, 1, 0, 1000, 300, 64, 16, 1, 16, 0.03};
inline constexpr InstructPreset llama1_7b_alpaca_lora64      {"llama1-7b-alpaca-lora64",      "lora", "q,v",        2e-4, 1, 0, 1000, 300, 64, 16, 1, 16, 0.03};
inline constexpr InstructPreset llama1_7b_alpaca_lora64_all  {"llama1-7b-alpaca-lora64-all",  "lora", "all-linear", 2e-4, 1, 0, 1000, 300, 64, 16, 1, 16, 0.03};
inline constexpr InstructPreset llama1_13b_alpaca_lora64     {"llama1-13b-alpaca-lora64",     "lora", "q,v",        2e-4, 1, 0, 1000, 300, 64, 16, 1, 16, 0.03};
inline constexpr InstructPreset llama1_13b_alpaca_lora64_all {"llama1-13b-alpaca-lora64-all", "lora", "all-linear", 2e-4, 1, 0, 1000, 300, 64, 16, 1, 16, 0.03};
// clang-format on
}  // namespace presets

inline const std::vector<GluePreset>& glue_presets() {
  using namespace presets;
  static const std::vector<GluePreset> all = {
      roberta_base_stsb,  roberta_base_rte,  roberta_base_mrpc,  roberta_base_cola,
      roberta_base_sst2,  roberta_base_qnli, roberta_large_stsb, roberta_large_rte,
      roberta_large_mrpc, roberta_large_cola, roberta_large_sst2, roberta_large_qnli};
  return all;
}
inline const std::vector<E2EPreset>& e2e_presets() {
  static const std::vector<E2EPreset> all = {presets::gpt2_medium_e2e, presets::gpt2_large_e2e};
  return all;
}
inline const std::vector<VitPreset>& vit_presets() {
  using namespace presets;
  static const std::vector<VitPreset> all = {
      vit_base_cifar10,  vit_base_cifar100,  vit_base_dtd,  vit_base_eurosat,  vit_base_oxfordpets,
      vit_large_cifar10, vit_large_cifar100, vit_large_dtd, vit_large_eurosat, vit_large_oxfordpets};
  return all;
}

inline const std::vector<InstructPreset>& instruct_presets() {
  using namespace presets;
  static const std::vector<InstructPreset> all = {
      llama2_7b_alpaca,         llama2_13b_alpaca,            llama1_7b_alpaca,
      llama1_13b_alpaca,        llama2_7b_alpaca_lora64,      llama2_7b_alpaca_lora64_all,
      llama2_13b_alpaca_lora64, llama2_13b_alpaca_lora64_all, llama1_7b_alpaca_lora64,
      llama1_7b_alpaca_lora64_all, llama1_13b_alpaca_lora64,  llama1_13b_alpaca_lora64_all};
  return all;
}

// The preset called `name`; ValueError listing the known names otherwise.
template <class Preset>
const Preset& find_preset(const std::vector<Preset>& all, std::string_view name) {
  std::string known;
  for (const Preset& p : all) {
    if (name == p.name) return p;
    known += (known.empty() ? "" : ", ") + std::string(p.name);
  }
  throw ValueError(str_cat("--preset: unknown preset '", name, "' (known: ", known, ")"));
}

// A program's options: the preset's values, then every flag given overrides them
// (read_run_options); `out` is the default --out. E2E runs the preset's 128 examples per step as
// micro-batches of 8, 16 accumulated; GLUE, ViT and instruction tuning take the preset's micro-batch
// and accumulation (and instruction tuning its method and LoRA rank).
template <class Preset>
RunOptions run_options(const Preset& p, util::Args& args, const std::filesystem::path& out) {
  RunOptions o{.n = p.n, .scaling = p.scaling, .lr = p.lr, .epochs = p.epochs,
               .warmup_ratio = p.warmup_ratio, .weight_decay = p.weight_decay, .out = out};
  if constexpr (std::is_same_v<Preset, E2EPreset>) {
    o.head_lr = p.other_lr;
    o.batch = 8;
    o.grad_accum = p.batch / 8;
  } else if constexpr (std::is_same_v<Preset, InstructPreset>) {
    o.method = p.method;
    o.lora_r = p.lora_r;
    o.lora_alpha = p.lora_alpha;
    o.batch = p.batch;
    o.grad_accum = p.grad_accum;
    o.head_lr = p.lr;  // no head: the lr of anything trainable outside the adapter
  } else {
    o.head_lr = p.head_lr;
    o.batch = p.batch;
  }
  if constexpr (std::is_same_v<Preset, VitPreset>) o.grad_accum = p.grad_accum;
  read_run_options(args, o);
  return o;
}

}  // namespace fourierft::train
