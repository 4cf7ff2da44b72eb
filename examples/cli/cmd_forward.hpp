// fourierft forward — runs a Hugging Face checkpoint folder (gpt2, llama, mistral, qwen2, qwen3,
// roberta, vit: any model in models/registry.hpp) on inputs saved in a safetensors file; writes
// logits and last hidden state.
//
//   fourierft forward --model DIR --inputs IN.safetensors --out OUT.safetensors [--adapter DIR]
//
// IN holds, by the inputs DIR/config.json's model_type reads (models::InputKind):
//   token models    input_ids I64 (B, T); optionally attention_mask I64 (B, T) (1 / 0 = pad) and
//                   position_ids I64 (B, T) (llama family; gpt2 ignores them)
//   vit             pixel_values F32 (B, 3, H, W), already resized and normalised
// OUT (written atomically) holds logits F32 (causal LMs (B, T, V); roberta / vit (B, num_labels))
// and last_hidden_state F32 (B, T, C). The model runs in evaluation mode (no dropout), without
// gradients. Without position_ids, positions are 0..T-1 as in HF's forward (a left-padded row then
// gets shifted positions: pass HF generate's cumsum(mask) - 1 to compare with generation).
// --adapter DIR applies a saved PEFT adapter folder first.
#pragma once

#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/io/hf_config.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/models/checkpoint.hpp"
#include "fourierft/models/common.hpp"
#include "fourierft/models/registry.hpp"
#include "fourierft/peft/adapter_io.hpp"
#include "fourierft/util/args.hpp"

namespace fourierft::cli {

// An input tensor that must be there, with a message saying what the model type needs.
inline void require_input(const io::SafetensorsFile& inputs, const std::string& key,
                          const std::string& model_type, const char* needs) {
  check<FormatError>(inputs.contains(key), inputs.path(), ": no tensor '", key, "' (a ", model_type,
                     " model reads ", needs, ")");
}
inline Tensor<std::int64_t> optional_mask(const io::SafetensorsFile& inputs) {
  return inputs.contains("attention_mask") ? inputs.load_int("attention_mask")
                                           : Tensor<std::int64_t>();
}

// The inputs a model of `kind` reads from the file; FormatError naming the tensor it lacks.
inline models::ModelInputs<float> read_model_inputs(const io::SafetensorsFile& inputs,
                                                    models::InputKind kind,
                                                    const std::string& model_type) {
  models::ModelInputs<float> in;
  if (kind == models::InputKind::tokens) {
    require_input(inputs, "input_ids", model_type,
                  "input_ids I64 (B, T) and optionally attention_mask I64 (B, T)");
    in.input_ids = inputs.load_int("input_ids");
    in.attention_mask = optional_mask(inputs);
    if (inputs.contains("position_ids")) {
      in.position_ids = inputs.load_int("position_ids");
      check<ShapeError>(in.position_ids.shape() == in.input_ids.shape(), inputs.path(),
                        ": position_ids has shape ", shape_str(in.position_ids.shape()),
                        " but input_ids ", shape_str(in.input_ids.shape()));
    }
  } else {
    require_input(inputs, "pixel_values", model_type, "pixel_values F32 (B, 3, H, W)");
    in.pixel_values = inputs.load<float>("pixel_values");
  }
  return in;
}

struct ForwardResult {
  Tensor<float> logits, last_hidden_state;
  models::CheckpointReport report;
};

// What `fourierft forward` computes, as a function (tests call it directly). The class is the
// registry's default for config.json's model_type (roberta: the sequence classifier).
inline ForwardResult run_forward(const std::filesystem::path& model_dir,
                                 const std::filesystem::path& inputs_path,
                                 const std::string& adapter_dir = "") {
  const auto& entry = models::model_registry<float>().for_config(model_dir);
  const std::string& type = entry.model_type;
  const io::SafetensorsFile inputs(inputs_path);
  const models::ModelInputs<float> in = read_model_inputs(inputs, entry.inputs, type);
  ForwardResult result;
  auto model = entry.from_pretrained(model_dir, &result.report, {});
  if (!adapter_dir.empty()) {  // a saved PEFT adapter folder: the method it names, its tensors
    peft::load_adapter(model->module(), adapter_dir);
    model->module().eval();
  }
  Tape<float> tape;
  NoGradScope<float> no_grad(tape);
  const models::ModelOutput<float> out = model->forward(tape, in);
  result.logits = out.logits.value();
  result.last_hidden_state = out.last_hidden_state.value();
  return result;
}

// Prints what the loader did when it is worth a look (a fresh head, unused weights).
inline void print_load_notes(const models::CheckpointReport& report) {
  if (!report.initialized.empty() || !report.unexpected.empty() || !report.reinitialized.empty())
    std::cerr << "note: " << report.summary() << "\n";
}

inline int cmd_forward(const std::vector<std::string>& argv) {
  util::Args args(argv, {"--help"});
  if (args.has("--help")) {
    std::cout
        << "usage: fourierft forward --model DIR --inputs IN.safetensors --out OUT.safetensors"
           " [--adapter DIR]\n"
           "  Runs a Hugging Face checkpoint folder (gpt2, llama, mistral, qwen2, qwen3, roberta,\n"
           "  vit) in evaluation mode. IN: input_ids I64 (B, T) [+ attention_mask I64 (B, T)]\n"
           "  [+ position_ids I64 (B, T)], or pixel_values F32 (B, 3, H, W) for vit.\n"
           "  OUT: logits and last_hidden_state (F32).\n";
    return 0;
  }
  const std::string model = args.str("--model"), inputs = args.str("--inputs"),
                    out_path = args.str("--out"), adapter = args.str("--adapter", "");
  args.reject_unknown();
  check(args.positional().empty(), "unexpected argument '",
        args.positional().empty() ? "" : args.positional().front(), "'");
  const ForwardResult result = run_forward(model, inputs, adapter);
  print_load_notes(result.report);
  io::SafetensorsWriter writer;
  writer.add("logits", result.logits);
  writer.add("last_hidden_state", result.last_hidden_state);
  writer.set_metadata("format", "pt");
  writer.save(out_path);
  std::cout << "logits " << shape_str(result.logits.shape()) << ", last_hidden_state "
            << shape_str(result.last_hidden_state.shape()) << " -> " << out_path << "\n";
  return 0;
}

}  // namespace fourierft::cli
