// fourierft param-table — the paper's Table 1: trainable parameters and bytes of LoRA and FourierFT
// for the paper's models, computed from their configs, beside the size of the adapter file itself.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "fourierft/io/hf_config.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/util/args.hpp"

namespace fourierft::cli {

namespace param_table {

// One adapted model: hidden size d, layers, and the PEFT key of one adapted d×d weight
// ("{i}" = layer, "{t}" = target) for sizing the adapter file exactly.
struct ModelRow {
  std::string name;
  Index d = 0, layers = 0;
  Index lora_r = 8;
  std::vector<Index> ns;          // FourierFT n values of the paper's rows
  std::string key_pattern;        // e.g. "roberta.encoder.layer.{i}.attention.self.{t}"
  std::vector<std::string> targets;
};

inline std::string expand(std::string pattern, Index layer, const std::string& target) {
  pattern.replace(pattern.find("{i}"), 3, std::to_string(layer));
  pattern.replace(pattern.find("{t}"), 3, target);
  return pattern;
}

// Bytes of the adapter_model.safetensors PEFT would write for this row (F32 tensors; header too).
inline std::uint64_t adapter_file_bytes(const ModelRow& m, bool lora, Index n) {
  io::SafetensorsWriter writer;
  for (Index i = 0; i < m.layers; ++i)
    for (const std::string& t : m.targets) {
      const std::string base = "base_model.model." + expand(m.key_pattern, i, t);
      if (lora) {
        writer.add(base + ".lora_A.weight", Tensor<float>({m.lora_r, m.d}));
        writer.add(base + ".lora_B.weight", Tensor<float>({m.d, m.lora_r}));
      } else {
        writer.add(base + ".fourierft_spectrum", Tensor<float>({n}));
      }
    }
  writer.set_metadata("format", "pt");
  const std::uint64_t header = writer.header().size();
  const std::uint64_t per = lora ? 2 * m.d * m.lora_r : n;
  return 8 + header + 4 * per * static_cast<std::uint64_t>(m.layers * Index(m.targets.size()));
}

inline std::string human(double x) {
  char buf[32];
  if (x >= 1e6) std::snprintf(buf, sizeof buf, "%.1fM", x / 1e6);
  else if (x >= 1e3) std::snprintf(buf, sizeof buf, "%.1fK", x / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", x);
  return buf;
}

// The paper's models (hidden size, layers from their Hugging Face configs) and its rows.
inline std::vector<ModelRow> paper_models() {
  const std::string roberta = "roberta.encoder.layer.{i}.attention.self.{t}";
  const std::string gpt2 = "transformer.h.{i}.attn.c_attn.{t}";
  const std::string llama = "model.layers.{i}.self_attn.{t}";
  const std::string vit = "vit.encoder.layer.{i}.attention.attention.{t}";
  return {{"RoBERTa-base", 768, 12, 8, {200, 1000}, roberta, {"query", "value"}},
          {"RoBERTa-large", 1024, 24, 8, {200, 1000}, roberta, {"query", "value"}},
          {"GPT-2 medium", 1024, 24, 4, {500, 1000}, gpt2, {"q", "v"}},
          {"GPT-2 large", 1280, 36, 4, {500, 1000}, gpt2, {"q", "v"}},
          {"LLaMA-2 7B", 4096, 32, 64, {1000, 2000}, llama, {"q_proj", "v_proj"}},
          {"LLaMA-2 13B", 5120, 40, 64, {1000, 2000}, llama, {"q_proj", "v_proj"}},
          {"ViT-base", 768, 12, 16, {3000, 10000}, vit, {"query", "value"}},
          {"ViT-large", 1024, 24, 16, {3000, 10000}, vit, {"query", "value"}}};
}

// A row from a config.json (gpt2, roberta or vit) with q and v adapted in every layer.
inline ModelRow model_from_config(const std::filesystem::path& config, Index r, Index n) {
  const std::string type = io::read_model_type(config);
  ModelRow m;
  const auto folder = std::filesystem::is_directory(config) ? config : config.parent_path();
  m.name = folder.filename().string() + " (" + type + ")";
  m.lora_r = r;
  m.ns = {n};
  if (type == "gpt2") {
    const auto c = io::read_gpt2_config(config);
    m.d = c.n_embd, m.layers = c.n_layer;
    m.key_pattern = "transformer.h.{i}.attn.c_attn.{t}", m.targets = {"q", "v"};
  } else if (type == "roberta") {
    const auto c = io::read_roberta_config(config);
    m.d = c.hidden_size, m.layers = c.num_hidden_layers;
    m.key_pattern = "roberta.encoder.layer.{i}.attention.self.{t}", m.targets = {"query", "value"};
  } else {
    const auto c = io::read_vit_config(config);
    m.d = c.hidden_size, m.layers = c.num_hidden_layers;
    m.key_pattern = "vit.encoder.layer.{i}.attention.attention.{t}", m.targets = {"query", "value"};
  }
  return m;
}

}  // namespace param_table

inline int cmd_param_table(const std::vector<std::string>& argv) {
  using namespace param_table;
  util::Args args(argv, {"--help"});
  if (args.has("--help")) {
    std::printf(
        "usage: fourierft param-table [--config DIR/config.json ...] [--n N] [--r R]\n\n"
        "Trainable parameters and storage of LoRA and FourierFT with q and v adapted in every\n"
        "layer (L_t = 2 x layers), as in the paper's Table 1: LoRA trains 2*d*r per matrix,\n"
        "FourierFT n. 'file' is the exact size of the adapter_model.safetensors PEFT writes\n"
        "(F32 tensors plus the header). Without --config: the paper's models and rows.\n"
        "With --config (repeatable): that checkpoint's config, LoRA rank --r (default 8) and\n"
        "FourierFT --n (default 1000).\n");
    return 0;
  }
  std::vector<ModelRow> models;
  const Index r = args.integer("--r", 8), n = args.integer("--n", 1000);
  for (const std::string& p : args.positional()) models.push_back(model_from_config(p, r, n));
  if (args.has("--config")) models.push_back(model_from_config(args.str("--config"), r, n));
  args.reject_unknown();
  if (models.empty()) models = paper_models();
  std::printf("%-16s %5s %6s | %4s %9s %9s %9s | %6s %9s %9s %9s\n", "model", "L_t", "d", "r",
              "LoRA", "bytes", "file", "n", "FourierFT", "bytes", "file");
  for (const ModelRow& m : models) {
    const Index Lt = 2 * m.layers;
    const double lora = double(Lt) * 2.0 * double(m.d) * double(m.lora_r);
    for (Index nn : m.ns) {
      const double fft = double(Lt) * double(nn);
      std::printf("%-16s %5lld %6lld | %4lld %9s %9s %9s | %6lld %9s %9s %9s\n", m.name.c_str(),
                  (long long)Lt, (long long)m.d, (long long)m.lora_r, human(lora).c_str(),
                  human(4 * lora).c_str(), human(double(adapter_file_bytes(m, true, 0))).c_str(),
                  (long long)nn, human(fft).c_str(), human(4 * fft).c_str(),
                  human(double(adapter_file_bytes(m, false, nn))).c_str());
    }
  }
  return 0;
}

}  // namespace fourierft::cli
