// fourierft/models/transformer.hpp — the encoder pieces BERT-style models share (RoBERTa, ViT):
// self-attention with dropout on the probabilities, the intermediate MLP, dense outputs, encoder.
#pragma once

// Members keep HF's names (query, key, value, dropout; dense; LayerNorm), so the composing model's
// keys read `encoder.layer.0.attention.self.query.weight` (RoBERTa) or
// `encoder.layer.0.attention.attention.query.weight` (ViT) by where it registers them. Each
// constructor draws from `rng` in member order: the Linear layers' default init, then the Dropout's
// stream split.

#include <cstdint>
#include <optional>
#include <string>

#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/models/common.hpp"
#include "fourierft/nn/dropout.hpp"
#include "fourierft/nn/layer_norm.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/ops/attention.hpp"
#include "fourierft/ops/elementwise.hpp"

namespace fourierft::models {

// Multi-head self-attention: q, k, v = x·Wqᵀ + bq, ... (C, C) each, out x in; softmax(q·kᵀ/√HS)
// with dropout p on the probabilities, times v.   x: (B, T, C), mask: (B, T) or empty -> (B, T, C)
template <class Real>
class SelfAttention : public nn::Module<Real> {
 public:
  nn::Linear<Real> query, key, value;
  nn::Dropout<Real> dropout;  // on the attention probabilities

  SelfAttention(Index C, Index num_heads, double p_drop, Rng& rng, bool qkv_bias = true)
      : query(C, C, rng, qkv_bias),
        key(C, C, rng, qkv_bias),
        value(C, C, rng, qkv_bias),
        dropout(p_drop, rng.split()),
        num_heads_(num_heads) {
    this->register_module("query", query);
    this->register_module("key", key);
    this->register_module("value", value);
    this->register_module("dropout", dropout);
  }
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x,
                    const Tensor<std::int64_t>& mask = {}) {
    ops::AttentionOptions options;
    if (!mask.empty()) options.key_padding_mask = mask.data();
    return multi_head_attention(tape, query.forward(tape, x), key.forward(tape, x),
                                value.forward(tape, x), num_heads_, options, dropout);
  }

 private:
  Index num_heads_;
};

// intermediate: dense (C -> inner) then the config's hidden_act.   (..., C) -> (..., inner)
template <class Real>
class Intermediate : public nn::Module<Real> {
 public:
  nn::Linear<Real> dense;
  Intermediate(Index C, Index inner, const std::string& hidden_act, Rng& rng)
      : dense(C, inner, rng), act_(parse_activation(hidden_act, "hidden_act")) {
    this->register_module("dense", dense);
  }
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x) {
    return activation(tape, dense.forward(tape, x), act_);
  }

 private:
  Activation act_;
};

// attention.output and output: y = dropout(dense(x)), (..., d_in) -> (..., C). Pre-LN models (ViT)
// add the residual themselves; post-LN ones (RoBERTa, built with post_norm_eps) get
// LayerNorm(input + y) here, with the LayerNorm registered between dense and dropout as in HF.
template <class Real>
class DenseOutput : public nn::Module<Real> {
 public:
  nn::Linear<Real> dense;
  nn::LayerNorm<Real> LayerNorm;  // registered (a parameter) only with post_norm_eps
  nn::Dropout<Real> dropout;

  DenseOutput(Index d_in, Index C, double p_drop, Rng& rng,
              std::optional<double> post_norm_eps = std::nullopt)
      : dense(d_in, C, rng),
        LayerNorm(C, post_norm_eps.value_or(1e-5)),
        dropout(p_drop, rng.split()),
        post_norm_(post_norm_eps.has_value()) {
    this->register_module("dense", dense);
    if (post_norm_) this->register_module("LayerNorm", LayerNorm);
    this->register_module("dropout", dropout);
  }
  // x: (..., d_in); input: the residual (..., C), used with post_norm only.
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x, const Var<Real>& input = {}) {
    const Var<Real> y = dropout.forward(tape, dense.forward(tape, x));
    return post_norm_ ? LayerNorm.forward(tape, ops::add(tape, y, input)) : y;
  }

 private:
  bool post_norm_;
};

// encoder: `layer`, num_hidden_layers blocks of type Layer, each built from (config, rng) in turn.
template <class Layer>
class Encoder : public nn::Module<typename Layer::real_type> {
 public:
  nn::ModuleList<Layer> layer;
  template <class Config>
  Encoder(const Config& c, Rng& rng) {
    for (Index i = 0; i < c.num_hidden_layers; ++i) layer.emplace_back(c, rng);
    this->register_module("layer", layer);
  }
};

}  // namespace fourierft::models
