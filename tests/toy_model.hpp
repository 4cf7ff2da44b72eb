// tests/toy_model.hpp — the worked example of docs/architecture.md's "Adding a model": a 2-layer MLP
// classifier over flattened pixels with its own config.json type, registered with one line.
#pragma once

// config.json: {"model_type": "toy-mlp", "num_features": 12, "hidden_size": 8,
//               "id2label": {...}, "hidden_dropout_prob": 0.1, "initializer_range": 0.02}
// Keys: fc1.weight (H, F), fc1.bias (H), fc2.weight (num_labels, H), fc2.bias (num_labels).
//   logits = fc2(dropout(relu(fc1(flatten(pixel_values)))))     pixel_values: (B, ...) -> (B, L)

#include <cstdint>
#include <string>
#include <string_view>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/io/hf_config.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/models/common.hpp"
#include "fourierft/models/pretrained.hpp"
#include "fourierft/nn/dropout.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/shape.hpp"

namespace toy {

using namespace fourierft;

struct ToyMlpConfig : io::HfCommonConfig {
  Index num_features = 12;  // F: the flattened input width
  Index hidden_size = 8;    // H
  double hidden_dropout_prob = 0.1;
  double initializer_range = 0.02;
  ToyMlpConfig() { model_type = "toy-mlp"; }
};

// Found by argument-dependent lookup from PretrainedModel::from_pretrained / save_pretrained.
inline void parse_config(const io::JsonObject& j, ToyMlpConfig& c) {
  io::read_common(j, c);
  c.num_features = j.get<Index>("num_features");
  c.hidden_size = j.get<Index>("hidden_size");
  c.hidden_dropout_prob = j.get_or<double>("hidden_dropout_prob", c.hidden_dropout_prob);
  c.initializer_range = j.get_or<double>("initializer_range", c.initializer_range);
}
inline io::Json to_json(const ToyMlpConfig& c) {
  io::Json out = io::start_object(c);
  out["num_features"] = c.num_features;
  out["hidden_size"] = c.hidden_size;
  out["hidden_dropout_prob"] = c.hidden_dropout_prob;
  out["initializer_range"] = c.initializer_range;
  io::write_common(c, out);
  return out;
}

template <class Real>
class ToyMlpClassifier
    : public models::PretrainedModel<ToyMlpClassifier<Real>, ToyMlpConfig, Real> {
  using Base = models::PretrainedModel<ToyMlpClassifier<Real>, ToyMlpConfig, Real>;

 public:
  static constexpr std::string_view architecture = "ToyMlpClassifier";
  static constexpr models::Task task = models::Task::image_classification;
  static constexpr models::InputKind inputs = models::InputKind::pixels;
  using Base::config;
  using Base::rng;
  nn::Linear<Real> fc1;        // (H, F)
  nn::Dropout<Real> dropout;   // hidden_dropout_prob
  nn::Linear<Real> fc2;        // (num_labels, H)

  explicit ToyMlpClassifier(const ToyMlpConfig& cfg, std::uint64_t seed = 0,
                            models::WeightInit init = models::WeightInit::hf)
      : Base(cfg, seed),
        fc1(config.num_features, config.hidden_size, rng),
        dropout(config.hidden_dropout_prob, rng.split()),
        fc2(config.hidden_size, config.num_labels(), rng) {
    this->register_module("fc1", fc1);
    this->register_module("dropout", dropout);
    this->register_module("fc2", fc2);
    this->finish_init(init);
  }

  // pixel_values: (B, ...) with F values per row -> logits (B, L); last_hidden_state (B, H).
  models::ModelOutput<Real> forward(Tape<Real>& tape, const models::ModelInputs<Real>& in) {
    const Tensor<Real>& x = in.pixel_values;
    check<ShapeError>(x.dim() >= 2 && x.numel() == x.size(0) * config.num_features,
                      "ToyMlpClassifier.forward: pixel_values has shape ", shape_str(x.shape()),
                      " but each row needs num_features = ", config.num_features, " values");
    const Var<Real> rows = ops::reshape(tape, Var<Real>(x), {x.size(0), config.num_features});
    const Var<Real> hidden = dropout.forward(tape, ops::relu(tape, fc1.forward(tape, rows)));
    return {fc2.forward(tape, hidden), hidden};
  }
  Var<Real> loss(Tape<Real>& tape, const models::ModelOutput<Real>& out,
                 const models::ModelInputs<Real>& in) {
    return models::sequence_classification_loss(tape, out.logits, in.labels, config, architecture);
  }

  static void validate(const ToyMlpConfig& c) {
    check(c.num_features > 0 && c.hidden_size > 0, "ToyMlpClassifier: num_features = ",
          c.num_features, " and hidden_size = ", c.hidden_size, " must be positive");
  }
  // HF-style: every Linear N(0, initializer_range), biases 0.
  void init_module(const std::string&, nn::Module<Real>& module, Rng& init_rng) {
    models::init_standard_layer(module, init_rng, config.initializer_range);
  }
  // Every key is required: no base-model prefix, nothing ignored, no fresh head.
  models::CheckpointLayout checkpoint_layout() const { return {}; }
};

}  // namespace toy
