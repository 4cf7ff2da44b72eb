// examples/e2e_lm.hpp — GPT-2 on E2E NLG as a language-modelling task: reading the data, the
// "context <|endoftext|> reference <|endoftext|>" examples, the loss on the reference tokens and the
// teacher-forced evaluation loss. Shared by finetune_e2e and the parameter-efficiency study.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "fourierft/fourierft.hpp"
#include "fourierft/io/e2e.hpp"
#include "fourierft/models/gpt2.hpp"
#include "fourierft/train/options.hpp"

namespace fourierft::examples {

namespace fs = std::filesystem;
using Gpt2Model = models::GPT2LMHeadModel<float>;

// One E2E split of `data_dir` (context in LoRA's spelling, one reference per example, and the MR
// groups): format "lora" reads lora_format/{valid,test}.txt, "csv" devset.csv / testset_w_refs.csv.
inline io::E2EDataset read_e2e(const fs::path& data_dir, const std::string& format, bool test) {
  if (format == "lora") {
    io::E2EDataset d = io::read_e2e_lora(data_dir / "lora_format" / (test ? "test.txt" : "valid.txt"));
    check<FormatError>(!d.examples.empty(), d.path, ": no examples");
    return d;
  }
  io::E2EDataset d = io::read_e2e_csv(data_dir / (test ? "testset_w_refs.csv" : "devset.csv"));
  check<FormatError>(d.has_refs && !d.examples.empty(), d.path, ": needs mr,ref rows");
  for (io::E2EExample& ex : d.examples) ex.mr = io::e2e_lora_context(ex.mr);
  for (io::E2EGroup& g : d.groups) g.mr = io::e2e_lora_context(g.mr);
  return d;
}

// The first `limit` examples (all if limit <= 0), tokenized: context + eos, " " + reference + eos.
inline std::vector<io::LmExample> tokenize_e2e(const io::BpeTokenizer& tokenizer,
                                               const io::E2EDataset& d, Index limit) {
  std::vector<io::LmExample> out;
  for (const io::E2EExample& ex : d.examples) {
    if (limit > 0 && static_cast<Index>(out.size()) == limit) break;
    out.push_back(io::e2e_lm_example(tokenizer, ex.mr, ex.ref));
  }
  return out;
}

// The adapter targets of the paper's E2E runs: c_attn, FourierFT on its q and v column blocks (two
// d x d adapters per block, k frozen), LoRA on the whole fused (C, 3C) projection.
inline train::AdapterTargets e2e_adapter_targets(const std::string& base_model_name) {
  return {.targets = {{"c_attn"}, ""},
          .modules_to_save = {},
          .task_type = "CAUSAL_LM",
          .fan_in_fan_out = true,
          .fused_slices = {{"c_attn", 3, {{"q", 0}, {"v", 2}}}},
          .base_model_name_or_path = base_model_name};
}

// The LM loss of a batch on the reference tokens only (mask = 1), with label smoothing.
//   input, target: (B, T), target[t] = input[t + 1]   ->   mean over the reference tokens
inline Var<float> e2e_batch_loss(Tape<float>& tape, Gpt2Model& model, const io::LmBatch& batch,
                                 double smoothing) {
  // Right-padded: causal attention needs no mask. The tied LM head and the cross-entropy run fused
  // (model.lm_loss): only the reference positions' logits are computed, a chunk of rows at a time.
  const Var<float> hidden = model.transformer.forward(tape, batch.input);
  std::vector<std::int64_t> targets(static_cast<std::size_t>(batch.target.numel()));
  for (Index i = 0; i < batch.target.numel(); ++i)
    targets[static_cast<std::size_t>(i)] = batch.mask[i] > 0 ? batch.target[i] : -100;
  return model.lm_loss(tape, hidden, targets, {.ignore_index = -100, .label_smoothing = smoothing});
}

// The examples `rows`, right-padded into one batch of at most max_len tokens per row.
inline io::LmBatch e2e_make_batch(const std::vector<io::LmExample>& examples,
                                  std::span<const Index> rows, Index max_len) {
  std::vector<io::LmExample> picked;
  for (Index r : rows) picked.push_back(examples[static_cast<std::size_t>(r)]);
  return io::e2e_lm_batch(picked, max_len);
}

// Teacher-forced loss (no smoothing) over examples, weighted by reference tokens: the mean
// negative log-likelihood of a reference token given the MR and the reference so far.
inline double e2e_eval_loss(Gpt2Model& model, const std::vector<io::LmExample>& examples,
                            Index batch_size, Index max_len) {
  model.eval();
  Tape<float> tape;
  NoGradScope<float> no_grad(tape);
  double sum = 0, tokens = 0;
  const auto N = static_cast<Index>(examples.size());
  for (Index start = 0; start < N; start += batch_size) {
    std::vector<Index> rows;
    for (Index i = start; i < std::min(N, start + batch_size); ++i) rows.push_back(i);
    const io::LmBatch batch = e2e_make_batch(examples, rows, max_len);
    double kept = 0;
    for (float m : batch.mask.data()) kept += m;
    sum += e2e_batch_loss(tape, model, batch, 0.0).item() * kept;
    tokens += kept;
    tape.clear();
  }
  return tokens > 0 ? sum / tokens : 0.0;
}

}  // namespace fourierft::examples
