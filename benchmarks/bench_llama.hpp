// benchmarks/bench_llama.hpp — the LLaMA-family models the benchmarks build: published shapes from
// tests/fixtures/models/real-shapes/, random weights, optionally BF16 frozen weights without an FP32 copy.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fourierft/core/half.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/io/hf_config.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/models/llama.hpp"
#include "fourierft/nn/linear.hpp"

namespace fourierft::bench {

// LLaMA-family case names -> the published config in tests/fixtures/models/real-shapes/.
const std::map<std::string, std::string>& llama_shapes() {
  static const std::map<std::string, std::string> shapes = {
      {"tinyllama", "TinyLlama-1.1B-Chat-v1.0"},
      {"qwen3-0.6b", "Qwen3-0.6B"},
      {"smollm2-135m", "SmolLM2-135M"},
      {"llama2-7b", "Llama-2-7b-hf"}};
  return shapes;
}

// Random weights for a model built under nn::HalfWeightsScope with WeightInit::skip: every 16-bit
// Linear weight ~ U(-1/√d_in, 1/√d_in) rounded to BF16 (filled row block by row block, so no
// float copy of a matrix exists), embeddings N(0, 0.02), norms 1.
template <class Model>
void fill_random_bf16(Model& model) {
  std::uint64_t state = 0x9E3779B97F4A7C15ull;
  auto uniform = [&state] {  // splitmix64 -> [0, 1)
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return static_cast<float>((z ^ (z >> 31)) >> 40) * (1.0f / 16777216.0f);
  };
  for (auto& [name, module] : model.named_modules()) {
    auto* linear = dynamic_cast<nn::Linear<float>*>(module);
    if (linear == nullptr) continue;
    const float bound = 1.0f / std::sqrt(static_cast<float>(linear->d_in()));
    if (!linear->half_precision()) {
      for (float& v : linear->weight.data()) v = bound * (2 * uniform() - 1);
      continue;
    }
    HalfMatrix& w = linear->half_weight();
    w = HalfMatrix(w.rows(), w.cols(), io::Dtype::BF16);
    std::uint16_t* bits = w.mutable_data();
    std::vector<float> row(static_cast<std::size_t>(w.cols()));
    for (Index r = 0; r < w.rows(); ++r) {
      for (float& v : row) v = bound * (2 * uniform() - 1);
      real_to_half(io::Dtype::BF16, row.data(), bits + r * w.cols(), row.size());
    }
  }
  Rng rng(11);
  for (auto& [name, p] : model.named_parameters()) {
    if (name.find("norm") != std::string::npos) p.value().fill(1.0f);
    else if (name.find("embed_tokens") != std::string::npos)
      for (float& v : p.data()) v = 0.02f * static_cast<float>(rng.normal());
  }
}

// The published config.json of a case's model (llama_shapes()), read from the repository.
inline io::LlamaConfig real_shapes_config(const std::string& model_name) {
  const auto path = std::filesystem::path(FOURIERFT_SOURCE_DIR) / "tests/fixtures/models" /
                    "real-shapes" / (llama_shapes().at(model_name) + ".json");
  const io::JsonObject file = io::JsonObject::read(path);
  return io::parse_llama_config(io::JsonObject(file.json().at("config"), path.string()));
}

// The model with random weights: HF's initialisation in FP32, or (bf16) its Linear weights built
// straight into BF16 under nn::HalfWeightsScope and filled by fill_random_bf16.
inline std::unique_ptr<models::LlamaForCausalLM<float>> build_llama(const io::LlamaConfig& config,
                                                                    bool bf16) {
  if (!bf16) return std::make_unique<models::LlamaForCausalLM<float>>(config, 1);
  std::unique_ptr<models::LlamaForCausalLM<float>> model;
  {
    nn::HalfWeightsScope scope(io::Dtype::BF16);
    model = std::make_unique<models::LlamaForCausalLM<float>>(config, 1, models::WeightInit::skip);
  }
  fill_random_bf16(*model);
  return model;
}

}  // namespace fourierft::bench
