// fourierft lm-grad — the causal-LM loss of a causal-LM checkpoint folder (gpt2, llama, mistral,
// qwen2, qwen3) on saved token ids, and the gradient of every parameter: for checking a port (or
// an adapter setup) against PyTorch.
//
//   fourierft lm-grad --model DIR --inputs IN.safetensors --out OUT.safetensors
//
// IN: input_ids I64 (B, T) and, optionally, attention_mask I64 (B, T), position_ids I64 (B, T)
// (llama family) and labels I64 (B, T).
// The loss is HF's: position t predicts labels[t + 1] (the shift is inside), -100 is ignored, mean
// cross-entropy over the rest. Without labels, labels = input_ids, except that a token is not
// predicted where attention_mask is 0 or where the position before it is padding (the first real
// token of a left-padded row) — HF's value when there is no padding. Evaluation mode: no dropout.
// OUT (written atomically): `loss` F32 of shape () (a 0-dim scalar, as torch saves loss.detach()),
// and `grad.<HF key>` F32 for every parameter, under the full HF key whatever layout the folder
// used (`grad.transformer.wte.weight` holds the embedding and the tied LM head's contributions).
#pragma once

#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "cmd_forward.hpp"
#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/io/hf_config.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/models/common.hpp"
#include "fourierft/models/registry.hpp"
#include "fourierft/util/args.hpp"

namespace fourierft::cli {

struct LmGradResult {
  float loss = 0;
  std::vector<std::pair<std::string, Tensor<float>>> grads;  // (HF key, gradient) in model order
};

// What `fourierft lm-grad` computes, as a function (tests call it directly).
inline LmGradResult run_lm_grad(const std::filesystem::path& model_dir,
                                const std::filesystem::path& inputs_path) {
  const auto& entry = models::model_registry<float>().for_config(model_dir);
  const std::string& type = entry.model_type;
  check(entry.task == models::Task::causal_lm, "'", model_dir.string(), "' holds a ", type,
        " model; lm-grad computes the causal-LM loss of a causal LM (gpt2, llama, mistral, ",
        "qwen2, qwen3)");
  const io::SafetensorsFile inputs(inputs_path);
  models::ModelInputs<float> in = read_model_inputs(inputs, entry.inputs, type);
  if (inputs.contains("labels")) in.labels = inputs.load_int("labels");
  check<ShapeError>(in.labels.empty() || in.labels.shape() == in.input_ids.shape(), inputs.path(),
                    ": labels has shape ", shape_str(in.labels.shape()), " but input_ids ",
                    shape_str(in.input_ids.shape()));

  auto model = entry.from_pretrained(model_dir, nullptr, {});  // eval mode
  model->module().zero_grad();
  Tape<float> tape;
  const Var<float> loss = model->loss(tape, model->forward(tape, in), in);  // labels or the ids
  tape.backward(loss);
  LmGradResult result;
  result.loss = loss.item();
  for (const auto& [name, p] : model->module().named_parameters())
    result.grads.emplace_back(name, p.grad());
  return result;
}

inline int cmd_lm_grad(const std::vector<std::string>& argv) {
  util::Args args(argv, {"--help"});
  if (args.has("--help")) {
    std::cout
        << "usage: fourierft lm-grad --model DIR --inputs IN.safetensors --out OUT.safetensors\n"
           "  Causal LMs (gpt2, llama, mistral, qwen2, qwen3). IN: input_ids I64 (B, T)\n"
           "  [+ attention_mask, position_ids, labels I64 (B, T); labels -100 = ignored,\n"
           "  default input_ids]. OUT: loss (F32, shape ()) = mean next-token cross-entropy, and\n"
           "  grad.<HF key> (F32) for every parameter.\n";
    return 0;
  }
  const std::string model = args.str("--model"), inputs = args.str("--inputs"),
                    out_path = args.str("--out");
  args.reject_unknown();
  check(args.positional().empty(), "unexpected argument '",
        args.positional().empty() ? "" : args.positional().front(), "'");
  const LmGradResult result = run_lm_grad(model, inputs);
  io::SafetensorsWriter writer;
  writer.add("loss", Tensor<float>::scalar(result.loss));
  for (const auto& [name, grad] : result.grads) writer.add("grad." + name, grad);
  writer.set_metadata("format", "pt");
  writer.save(out_path);
  std::cout << "loss " << std::setprecision(6) << result.loss << " | " << result.grads.size()
            << " gradients -> " << out_path << "\n";
  return 0;
}

}  // namespace fourierft::cli
