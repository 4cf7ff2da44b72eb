// fourierft param-table — the paper's Table 1 (one LoRA r paired with one FourierFT n per row) and the
// LLaMA family at real shapes: trainable parameters and bytes, computed from the adapted shapes.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "fourierft/io/hf_config.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/util/args.hpp"

namespace fourierft::cli {

namespace param_table {

// One adapted weight of a layer: its PEFT target name and shape (d_out × d_in, nn.Linear's layout).
// LoRA trains A (r × d_in) and B (d_out × r); FourierFT trains n spectral coefficients.
struct AdaptedMatrix {
  std::string target;
  Index d_out = 0, d_in = 0;
};

// One printed row: the paper pairs one LoRA rank with one FourierFT n per row.
struct Setting {
  Index lora_r = 8, n = 1000;
};

// One adapted model: every layer adapts `matrices`; "{i}" = layer and "{t}" = target in
// `key_pattern` give PEFT's key of each, for sizing the adapter file exactly.
struct ModelRow {
  std::string name;
  Index layers = 0;
  std::vector<AdaptedMatrix> matrices;
  std::vector<Setting> settings;
  std::string key_pattern;  // e.g. "roberta.encoder.layer.{i}.attention.self.{t}"

  Index hidden() const { return matrices.front().d_in; }
  Index adapted() const { return layers * static_cast<Index>(matrices.size()); }  // L_t
  // Trainable numbers: LoRA sums r·(d_in + d_out) over the adapted matrices (2·d·r when square).
  std::uint64_t lora_params(Index r) const {
    std::uint64_t per_layer = 0;
    for (const AdaptedMatrix& m : matrices) per_layer += static_cast<std::uint64_t>(r * (m.d_in + m.d_out));
    return per_layer * static_cast<std::uint64_t>(layers);
  }
  std::uint64_t fourierft_params(Index n) const {
    return static_cast<std::uint64_t>(n) * static_cast<std::uint64_t>(adapted());
  }
};

inline std::string expand(std::string pattern, Index layer, const std::string& target) {
  pattern.replace(pattern.find("{i}"), 3, std::to_string(layer));
  pattern.replace(pattern.find("{t}"), 3, target);
  return pattern;
}

// Bytes of the adapter_model.safetensors PEFT would write for this row (F32 tensors; header too).
inline std::uint64_t adapter_file_bytes(const ModelRow& m, bool lora, Index r, Index n) {
  io::SafetensorsWriter writer;
  for (Index i = 0; i < m.layers; ++i)
    for (const AdaptedMatrix& a : m.matrices) {
      const std::string base = "base_model.model." + expand(m.key_pattern, i, a.target);
      if (lora) {
        writer.add(base + ".lora_A.weight", Tensor<float>({r, a.d_in}));
        writer.add(base + ".lora_B.weight", Tensor<float>({a.d_out, r}));
      } else {
        writer.add(base + ".fourierft_spectrum", Tensor<float>({n}));
      }
    }
  writer.set_metadata("format", "pt");
  const std::uint64_t header = writer.header().size();
  return 8 + header + 4 * (lora ? m.lora_params(r) : m.fourierft_params(n));
}

// Three significant digits, as the paper's Table 1 prints counts: 147K, 8.39M, 13.1M, 52.4M.
inline std::string human(double x) {
  const char* units[] = {"", "K", "M", "G"};
  int unit = 0;
  while (unit < 3 && std::round(x / std::pow(1e3, unit) * 100) >= 100000) ++unit;  // >= 999.5
  const double v = x / std::pow(1e3, unit);
  const int decimals = unit == 0 || v >= 99.95 ? 0 : v >= 9.995 ? 1 : 2;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f%s", decimals, v, units[unit]);
  return buf;
}

// q and v of a square-attention model (RoBERTa, GPT-2's c_attn slices, ViT, LLaMA-2): d × d each.
inline std::vector<AdaptedMatrix> square_qv(Index d, const std::string& q, const std::string& v) {
  return {{q, d, d}, {v, d, d}};
}

// q_proj and v_proj of a LLaMA-family decoder from its config.json numbers: q_proj is
// (heads·head_dim) × hidden, v_proj (kv_heads·head_dim) × hidden — not square under GQA.
inline std::vector<AdaptedMatrix> llama_qv(Index hidden, Index heads, Index kv_heads,
                                           Index head_dim) {
  return {{"q_proj", heads * head_dim, hidden}, {"v_proj", kv_heads * head_dim, hidden}};
}

// The paper's Table 1 (arXiv 2405.03003), hidden size and layers from each model's Hugging Face
// config; each model's two rows pair one LoRA r with one FourierFT n as the paper does.
inline std::vector<ModelRow> paper_models() {
  const std::string roberta = "roberta.encoder.layer.{i}.attention.self.{t}";
  const std::string gpt2 = "transformer.h.{i}.attn.c_attn.{t}";
  const std::string llama = "model.layers.{i}.self_attn.{t}";
  const std::string vit = "vit.encoder.layer.{i}.attention.attention.{t}";
  const std::vector<Setting> roberta_rows = {{4, 200}, {8, 1000}}, gpt2_rows = {{4, 500}, {8, 1000}},
                             llama_rows = {{16, 1000}, {64, 2000}},
                             vit_rows = {{8, 3000}, {16, 10000}};
  return {{"RoBERTa-base", 12, square_qv(768, "query", "value"), roberta_rows, roberta},
          {"RoBERTa-large", 24, square_qv(1024, "query", "value"), roberta_rows, roberta},
          {"GPT-2 medium", 24, square_qv(1024, "q", "v"), gpt2_rows, gpt2},
          {"GPT-2 large", 36, square_qv(1280, "q", "v"), gpt2_rows, gpt2},
          {"LLaMA-2 7B", 32, llama_qv(4096, 32, 32, 128), llama_rows, llama},
          {"LLaMA-2 13B", 40, llama_qv(5120, 40, 40, 128), llama_rows, llama},
          {"ViT-base", 12, square_qv(768, "query", "value"), vit_rows, vit},
          {"ViT-large", 24, square_qv(1024, "query", "value"), vit_rows, vit}};
}

// The LLaMA family at the shapes of the published checkpoints (config.json: hidden_size,
// num_attention_heads, num_key_value_heads, head_dim), q_proj and v_proj adapted, with the
// paper's LLaMA settings.
inline std::vector<ModelRow> family_models() {
  const std::string llama = "model.layers.{i}.self_attn.{t}";
  const std::vector<Setting> rows = {{16, 1000}, {64, 2000}};
  return {{"SmolLM2-135M", 30, llama_qv(576, 9, 3, 64), rows, llama},
          {"Qwen3-0.6B", 28, llama_qv(1024, 16, 8, 128), rows, llama},  // head_dim 128 set
          {"TinyLlama-1.1B", 22, llama_qv(2048, 32, 4, 64), rows, llama},
          {"Mistral-7B", 32, llama_qv(4096, 32, 8, 128), rows, llama},
          {"Llama-3-8B", 32, llama_qv(4096, 32, 8, 128), rows, llama}};
}

// A row from a config.json (gpt2, roberta, vit or the llama family) with q and v adapted in every
// layer (q_proj / v_proj for the llama family; v_proj is (kv_heads·head_dim, hidden) under GQA).
inline ModelRow model_from_config(const std::filesystem::path& config, Index r, Index n) {
  const std::string type = io::read_model_type(config);
  ModelRow m;
  const auto folder = std::filesystem::is_directory(config) ? config : config.parent_path();
  m.name = folder.filename().string() + " (" + type + ")";
  m.settings = {{r, n}};
  if (type == "gpt2") {
    const auto c = io::read_gpt2_config(config);
    m.layers = c.n_layer, m.matrices = square_qv(c.n_embd, "q", "v");
    m.key_pattern = "transformer.h.{i}.attn.c_attn.{t}";
  } else if (type == "roberta") {
    const auto c = io::read_roberta_config(config);
    m.layers = c.num_hidden_layers, m.matrices = square_qv(c.hidden_size, "query", "value");
    m.key_pattern = "roberta.encoder.layer.{i}.attention.self.{t}";
  } else if (type == "llama" || type == "mistral" || type == "qwen2" || type == "qwen3") {
    const auto c = io::read_config<io::LlamaConfig>(config);
    m.layers = c.num_hidden_layers;
    m.matrices = llama_qv(c.hidden_size, c.num_attention_heads, c.kv_heads(), c.head_size());
    m.key_pattern = "model.layers.{i}.self_attn.{t}";
  } else {
    const auto c = io::read_vit_config(config);
    m.layers = c.num_hidden_layers, m.matrices = square_qv(c.hidden_size, "query", "value");
    m.key_pattern = "vit.encoder.layer.{i}.attention.attention.{t}";
  }
  return m;
}

inline void print_rows(const std::vector<ModelRow>& models) {
  for (const ModelRow& m : models)
    for (const Setting& s : m.settings) {
      const double lora = double(m.lora_params(s.lora_r)), fft = double(m.fourierft_params(s.n));
      std::printf("%-16s %5lld %6lld | %4lld %9s %9s %9s | %6lld %9s %9s %9s\n", m.name.c_str(),
                  (long long)m.adapted(), (long long)m.hidden(), (long long)s.lora_r,
                  human(lora).c_str(), human(4 * lora).c_str(),
                  human(double(adapter_file_bytes(m, true, s.lora_r, 0))).c_str(), (long long)s.n,
                  human(fft).c_str(), human(4 * fft).c_str(),
                  human(double(adapter_file_bytes(m, false, 0, s.n))).c_str());
    }
}

}  // namespace param_table

inline int cmd_param_table(const std::vector<std::string>& argv) {
  using namespace param_table;
  util::Args args(argv, {"--help"});
  if (args.has("--help")) {
    std::printf(
        "usage: fourierft param-table [--config DIR/config.json ...] [--n N] [--r R]\n\n"
        "Trainable parameters and storage of LoRA and FourierFT with q and v adapted in every\n"
        "layer (L_t = 2 x layers), as in the paper's Table 1: LoRA trains r*(d_in + d_out)\n"
        "per matrix (2*d*r when square), FourierFT n. 'file' is the exact size of the\n"
        "adapter_model.safetensors PEFT writes (F32 tensors plus the header). Without\n"
        "--config: the paper's models and rows (each row pairs one LoRA r with one n, as the\n"
        "paper does), then TinyLlama, Mistral, Qwen3, SmolLM2 and Llama-3 at their real\n"
        "shapes (grouped-query attention makes v_proj (kv_heads*head_dim) x hidden).\n"
        "With --config (repeatable): that checkpoint's config, LoRA rank --r (default 8) and\n"
        "FourierFT --n (default 1000).\n");
    return 0;
  }
  std::vector<ModelRow> models;
  const Index r = args.integer("--r", 8), n = args.integer("--n", 1000);
  for (const std::string& p : args.positional()) models.push_back(model_from_config(p, r, n));
  if (args.has("--config")) models.push_back(model_from_config(args.str("--config"), r, n));
  args.reject_unknown();
  std::printf("%-16s %5s %6s | %4s %9s %9s %9s | %6s %9s %9s %9s\n", "model", "L_t", "d", "r",
              "LoRA", "bytes", "file", "n", "FourierFT", "bytes", "file");
  if (!models.empty()) {
    print_rows(models);
    return 0;
  }
  print_rows(paper_models());
  std::printf("# the LLaMA family at its real shapes (q_proj, v_proj; v_proj is "
              "kv_heads*head_dim x hidden)\n");
  print_rows(family_models());
  return 0;
}

}  // namespace fourierft::cli
