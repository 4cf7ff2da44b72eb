// fourierft/models/roberta.hpp — RobertaForSequenceClassification and RobertaForMaskedLM as Hugging
// Face defines them (members named like its keys): classification, regression, masked-LM pretraining.
#pragma once

// The architecture (transformers' modeling_roberta.py), for ids (B, T) padded with pad_token_id:
//   positions = cumsum(ids != pad) * (ids != pad) + pad       first real token 2, pads stay at pad
//   x = LayerNorm(word_embeddings[ids] + token_type_embeddings[0] + position_embeddings[positions])
//   per layer (post-LN):  a = LayerNorm(x + attention.output.dense(self-attention(x)))
//                         x = LayerNorm(a + output.dense(gelu(intermediate.dense(a))))
//   last_hidden_state = x;   head on <s> (token 0): out_proj(tanh(dense(x[:, 0])))
//   masked LM (lm_head):  logits = layer_norm(gelu(dense(x))) · word_embeddingsᵀ + bias   (B, T, V)
// Linear weights are nn.Linear's (out, in). Word and position tables have padding_idx = pad, so
// their row `pad` gets no gradient. The attention mask hides padded keys; padded queries are
// computed and ignored. Dropout (hidden_dropout_prob, attention_probs_dropout_prob,
// classifier_dropout) acts in training mode only.

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/hf_config.hpp"
#include "fourierft/models/checkpoint.hpp"
#include "fourierft/models/common.hpp"
#include "fourierft/nn/embedding.hpp"
#include "fourierft/nn/layer_norm.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/ops/attention.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/indexing.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/ops/shape.hpp"
#include "fourierft/ops/softmax.hpp"

namespace fourierft::models {

// HF's create_position_ids_from_input_ids: ids (B, T) -> positions (B, T).
inline Tensor<std::int64_t> roberta_position_ids(const Tensor<std::int64_t>& input_ids,
                                                 std::int64_t pad) {
  const Index B = input_ids.size(0), T = input_ids.size(1);
  Tensor<std::int64_t> positions(input_ids.shape());
  for (Index b = 0; b < B; ++b) {
    std::int64_t count = 0;
    for (Index t = 0; t < T; ++t) {
      const bool real = input_ids[b * T + t] != pad;
      count += real ? 1 : 0;
      positions[b * T + t] = (real ? count : 0) + pad;
    }
  }
  return positions;
}

// roberta.embeddings
template <class Real>
class RobertaEmbeddings : public nn::Module<Real> {
 public:
  nn::Embedding<Real> word_embeddings;        // (V, C), padding_idx = pad
  nn::Embedding<Real> position_embeddings;    // (max_position_embeddings, C), padding_idx = pad
  nn::Embedding<Real> token_type_embeddings;  // (type_vocab_size, C): row 0 for every token
  nn::LayerNorm<Real> LayerNorm;
  Dropout<Real> dropout;

  RobertaEmbeddings(const io::RobertaConfig& config, Rng& rng)
      : word_embeddings(config.vocab_size, config.hidden_size, pad_of(config)),
        position_embeddings(config.max_position_embeddings, config.hidden_size, pad_of(config)),
        token_type_embeddings(config.type_vocab_size, config.hidden_size),
        LayerNorm(config.hidden_size, config.layer_norm_eps),
        dropout{config.hidden_dropout_prob, rng.split()},
        pad_(pad_of(config)) {
    this->register_module("word_embeddings", word_embeddings);
    this->register_module("position_embeddings", position_embeddings);
    this->register_module("token_type_embeddings", token_type_embeddings);
    this->register_module("LayerNorm", LayerNorm);
  }

  // ids: (B, T); token_type_ids: (B, T), or empty for all zeros (HF's default).  -> (B, T, C)
  Var<Real> forward(Tape<Real>& tape, const Tensor<std::int64_t>& input_ids,
                    const Tensor<std::int64_t>& token_type_ids = {}) {
    const Tensor<std::int64_t> positions = roberta_position_ids(input_ids, pad_);
    const Index P = position_embeddings.num_embeddings();
    for (Index n = 0; n < positions.numel(); ++n)
      check<IndexError>(positions[n] < P, "RobertaModel.forward: row ", n / input_ids.size(1),
                        " has ", positions[n] - pad_, " tokens but max_position_embeddings = ", P,
                        " allows ", P - pad_ - 1);
    Var<Real> x = ops::add(tape, word_embeddings.forward(tape, input_ids),
                           position_embeddings.forward(tape, positions));
    if (token_type_ids.empty()) {  // the type-0 row, broadcast over (B, T)
      x = ops::add(tape, x, ops::select(tape, token_type_embeddings.weight, 0, 0));
    } else {
      check<ShapeError>(token_type_ids.shape() == input_ids.shape(),
                        "RobertaModel.forward: ", "token_type_ids has shape ",
                        shape_str(token_type_ids.shape()), " but input_ids has ",
                        shape_str(input_ids.shape()));
      x = ops::add(tape, x, token_type_embeddings.forward(tape, token_type_ids));
    }
    return dropout.forward(tape, LayerNorm.forward(tape, x), this->is_training());
  }

 private:
  static Index pad_of(const io::RobertaConfig& c) { return c.pad_token_id.value_or(1); }
  Index pad_;
};

// encoder.layer.{i}.attention.self
template <class Real>
class RobertaSelfAttention : public nn::Module<Real> {
 public:
  nn::Linear<Real> query, key, value;  // (C, C) each, out x in
  Dropout<Real> dropout;               // on the attention probabilities

  RobertaSelfAttention(Index C, Index num_heads, double p_drop, Rng& rng)
      : query(C, C, rng),
        key(C, C, rng),
        value(C, C, rng),
        dropout{p_drop, rng.split()},
        num_heads_(num_heads) {
    this->register_module("query", query);
    this->register_module("key", key);
    this->register_module("value", value);
  }
  // x: (B, T, C), mask: (B, T) or empty  ->  (B, T, C), heads concatenated
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x, const Tensor<std::int64_t>& mask) {
    ops::AttentionOptions options;
    if (!mask.empty()) options.key_padding_mask = mask.data();
    return multi_head_attention(tape, query.forward(tape, x), key.forward(tape, x),
                                value.forward(tape, x), num_heads_, options, dropout,
                                this->is_training());
  }

 private:
  Index num_heads_;
};

// attention.output and output: LayerNorm(input + dropout(dense(x))), the post-LN residual.
template <class Real>
class RobertaResidualOutput : public nn::Module<Real> {
 public:
  nn::Linear<Real> dense;
  nn::LayerNorm<Real> LayerNorm;
  Dropout<Real> dropout;

  RobertaResidualOutput(Index d_in, Index C, double eps, double p_drop, Rng& rng)
      : dense(d_in, C, rng), LayerNorm(C, eps), dropout{p_drop, rng.split()} {
    this->register_module("dense", dense);
    this->register_module("LayerNorm", LayerNorm);
  }
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x, const Var<Real>& input) {
    const Var<Real> y = dropout.forward(tape, dense.forward(tape, x), this->is_training());
    return LayerNorm.forward(tape, ops::add(tape, y, input));
  }
};

// encoder.layer.{i}.attention
template <class Real>
class RobertaAttention : public nn::Module<Real> {
 public:
  RobertaSelfAttention<Real> self;
  RobertaResidualOutput<Real> output;

  RobertaAttention(const io::RobertaConfig& c, Rng& rng)
      : self(c.hidden_size, c.num_attention_heads, c.attention_probs_dropout_prob, rng),
        output(c.hidden_size, c.hidden_size, c.layer_norm_eps, c.hidden_dropout_prob, rng) {
    this->register_module("self", self);
    this->register_module("output", output);
  }
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x, const Tensor<std::int64_t>& mask) {
    return output.forward(tape, self.forward(tape, x, mask), x);
  }
};

// encoder.layer.{i}.intermediate: dense (C -> intermediate_size) then the activation.
template <class Real>
class RobertaIntermediate : public nn::Module<Real> {
 public:
  nn::Linear<Real> dense;
  RobertaIntermediate(const io::RobertaConfig& c, Rng& rng)
      : dense(c.hidden_size, c.intermediate_size, rng),
        act_(parse_activation(c.hidden_act, "hidden_act")) {
    this->register_module("dense", dense);
  }
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x) {
    return activation(tape, dense.forward(tape, x), act_);
  }

 private:
  Activation act_;
};

// encoder.layer.{i}
template <class Real>
class RobertaLayer : public nn::Module<Real> {
 public:
  RobertaAttention<Real> attention;
  RobertaIntermediate<Real> intermediate;
  RobertaResidualOutput<Real> output;

  RobertaLayer(const io::RobertaConfig& c, Rng& rng)
      : attention(c, rng),
        intermediate(c, rng),
        output(c.intermediate_size, c.hidden_size, c.layer_norm_eps, c.hidden_dropout_prob, rng) {
    this->register_module("attention", attention);
    this->register_module("intermediate", intermediate);
    this->register_module("output", output);
  }
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x, const Tensor<std::int64_t>& mask) {
    const Var<Real> a = attention.forward(tape, x, mask);
    return output.forward(tape, intermediate.forward(tape, a), a);
  }
};

template <class Real>
class RobertaEncoder : public nn::Module<Real> {
 public:
  nn::ModuleList<RobertaLayer<Real>> layer;
  RobertaEncoder(const io::RobertaConfig& c, Rng& rng) {
    for (Index i = 0; i < c.num_hidden_layers; ++i) layer.emplace_back(c, rng);
    this->register_module("layer", layer);
  }
};

// `roberta`: RobertaModel without the pooler (add_pooling_layer=False, as the classifier has it).
template <class Real>
class RobertaModel : public nn::Module<Real> {
 public:
  RobertaEmbeddings<Real> embeddings;
  RobertaEncoder<Real> encoder;

  RobertaModel(const io::RobertaConfig& c, Rng& rng) : embeddings(c, rng), encoder(c, rng) {
    this->register_module("embeddings", embeddings);
    this->register_module("encoder", encoder);
  }
  // input_ids: (B, T); attention_mask: (B, T) of 1 / 0 or empty (all tokens); -> (B, T, C)
  Var<Real> forward(Tape<Real>& tape, const Tensor<std::int64_t>& input_ids,
                    const Tensor<std::int64_t>& attention_mask = {},
                    const Tensor<std::int64_t>& token_type_ids = {}) {
    check_ids("RobertaModel.forward", "input_ids", input_ids);
    Tensor<std::int64_t> mask = attention_mask;
    if (!mask.empty()) {
      check_mask("RobertaModel.forward", mask, input_ids);
      if (!has_padding(mask)) mask = Tensor<std::int64_t>();
    }
    Var<Real> x = embeddings.forward(tape, input_ids, token_type_ids);
    for (auto& layer : encoder.layer) x = layer.forward(tape, x, mask);
    return x;
  }
};

// classifier: dropout -> dense -> tanh -> dropout -> out_proj on the <s> token.
template <class Real>
class RobertaClassificationHead : public nn::Module<Real> {
 public:
  nn::Linear<Real> dense;     // (C, C)
  nn::Linear<Real> out_proj;  // (num_labels, C)
  Dropout<Real> dropout;

  RobertaClassificationHead(const io::RobertaConfig& c, Rng& rng)
      : dense(c.hidden_size, c.hidden_size, rng),
        out_proj(c.hidden_size, c.num_labels(), rng),
        dropout{c.classifier_dropout_prob(), rng.split()} {
    this->register_module("dense", dense);
    this->register_module("out_proj", out_proj);
  }
  // hidden: (B, T, C) -> logits (B, num_labels)
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& hidden) {
    const bool training = this->is_training();
    Var<Real> x = dropout.forward(tape, ops::select(tape, hidden, 1, 0), training);
    x = dropout.forward(tape, ops::tanh(tape, dense.forward(tape, x)), training);
    return out_proj.forward(tape, x);
  }
};

// ---------------------------------------------------------------------------
template <class Real>
class RobertaForSequenceClassification : public nn::Module<Real> {
 public:
  io::RobertaConfig config;
  Rng rng;  // initialisation, then the seeds of the dropout streams (declared before the layers)
  RobertaModel<Real> roberta;
  RobertaClassificationHead<Real> classifier;

  explicit RobertaForSequenceClassification(const io::RobertaConfig& cfg, std::uint64_t seed = 0,
                                            WeightInit init = WeightInit::hf)
      : config(checked(cfg)), rng(seed), roberta(config, rng), classifier(config, rng) {
    this->register_module("roberta", roberta);
    this->register_module("classifier", classifier);
    if (init == WeightInit::hf) init_weights(rng);
  }

  Index num_labels() const { return config.num_labels(); }
  bool is_regression() const { return config.is_regression(); }

  // logits (B, num_labels) and last_hidden_state (B, T, C). attention_mask: (B, T) or empty.
  ModelOutput<Real> forward(Tape<Real>& tape, const Tensor<std::int64_t>& input_ids,
                            const Tensor<std::int64_t>& attention_mask = {},
                            const Tensor<std::int64_t>& token_type_ids = {}) {
    const Var<Real> hidden = roberta.forward(tape, input_ids, attention_mask, token_type_ids);
    return {classifier.forward(tape, hidden), hidden};
  }

  // Classification: labels (B) in [0, num_labels) -> cross-entropy.
  Var<Real> loss(Tape<Real>& tape, const Var<Real>& logits,
                 const Tensor<std::int64_t>& labels) const {
    check(!is_regression(), "RobertaForSequenceClassification::loss: this model is a regressor ",
          "(num_labels = 1 / problem_type regression): pass float labels");
    check(config.problem_type != "multi_label_classification", "RobertaForSequenceClassification",
          "::loss: problem_type multi_label_classification is not supported");
    return classification_loss(tape, logits, labels);
  }
  // Regression: labels (B) floats -> mean squared error.
  Var<Real> loss(Tape<Real>& tape, const Var<Real>& logits, const Tensor<Real>& labels) const {
    check(is_regression(), "RobertaForSequenceClassification::loss: this model classifies into ",
          num_labels(), " labels: pass integer labels");
    return regression_loss(tape, logits, labels);
  }

  // HF's _init_weights: Linear / Embedding weights N(0, initializer_range) (padding rows 0),
  // biases 0, LayerNorm 1 / 0.
  void init_weights(Rng& init_rng) {
    const double std = config.initializer_range;
    init_embedding(roberta.embeddings.word_embeddings, init_rng, std);
    init_embedding(roberta.embeddings.position_embeddings, init_rng, std);
    init_embedding(roberta.embeddings.token_type_embeddings, init_rng, std);
    for (auto& layer : roberta.encoder.layer) {
      init_linear(layer.attention.self.query, init_rng, std);
      init_linear(layer.attention.self.key, init_rng, std);
      init_linear(layer.attention.self.value, init_rng, std);
      init_linear(layer.attention.output.dense, init_rng, std);
      init_linear(layer.intermediate.dense, init_rng, std);
      init_linear(layer.output.dense, init_rng, std);
    }
    init_linear(classifier.dense, init_rng, std);
    init_linear(classifier.out_proj, init_rng, std);
  }

  // Keys: `roberta.*` + `classifier.*`. A pre-trained hub checkpoint (RobertaForMaskedLM:
  // `lm_head.*`, maybe a pooler) has no classifier: it is initialised fresh and reported, and its
  // lm_head is reported unused.
  CheckpointLayout checkpoint_layout() const {
    return {.base = "roberta",
            .ignored = {"*embeddings.position_ids"},
            .head = {"classifier.*"},
            .initializer_range = config.initializer_range};
  }

  static std::unique_ptr<RobertaForSequenceClassification> from_pretrained(
      const std::filesystem::path& dir, CheckpointReport* report = nullptr,
      const CheckpointOptions& options = {}) {
    const CheckpointFiles files = find_checkpoint_files(dir);
    auto model = std::make_unique<RobertaForSequenceClassification>(io::read_roberta_config(dir), 0,
                                                                    WeightInit::skip);
    CheckpointReport r =
        load_checkpoint_weights(*model, files, model->checkpoint_layout(), options);
    if (report != nullptr) *report = std::move(r);
    return model;
  }
  void save_pretrained(const std::filesystem::path& dir, io::Dtype dtype = io::Dtype::F32) const {
    io::RobertaConfig c = config;
    c.architectures = {"RobertaForSequenceClassification"};
    c.torch_dtype = torch_dtype_name(dtype);
    save_checkpoint(*this, io::to_json(c), dir, dtype);
  }

 private:
  static const io::RobertaConfig& checked(const io::RobertaConfig& c) {
    check(c.hidden_size % c.num_attention_heads == 0,
          "RobertaForSequenceClassification: ", "hidden_size = ", c.hidden_size,
          " must be a multiple of num_attention_heads = ", c.num_attention_heads);
    check(c.position_embedding_type == "absolute",
          "RobertaForSequenceClassification: ", "position_embedding_type '",
          c.position_embedding_type, "' is not supported (absolute)");
    const Index pad = c.pad_token_id.value_or(1);
    check(pad >= 0 && pad < c.vocab_size && pad < c.max_position_embeddings,
          "RobertaForSequenceClassification: pad_token_id = ", pad, " must index both the ",
          "vocabulary (", c.vocab_size, ") and the positions (", c.max_position_embeddings, ")");
    (void)parse_activation(c.hidden_act, "hidden_act");
    return c;
  }
};

// ---------------------------------------------------------------------------
// lm_head: RobertaLMHead. dense (C, C) -> exact GELU -> layer_norm -> decoder (V, C) + bias (V).
// The decoder weight is roberta.embeddings.word_embeddings.weight (tied: HF's tie_word_embeddings),
// so it is passed in, not owned; its bias is HF's `lm_head.bias` (`lm_head.decoder.bias` is the same
// tensor). A saved file therefore holds lm_head.{dense.weight, dense.bias, layer_norm.weight,
// layer_norm.bias, bias} and neither decoder key, as transformers' save_pretrained drops tied keys.
template <class Real>
class RobertaLMHead : public nn::Module<Real> {
 public:
  nn::Linear<Real> dense;          // (C, C)
  nn::LayerNorm<Real> layer_norm;  // (C), eps = layer_norm_eps
  Var<Real> bias;                  // (V), zeros at initialisation

  RobertaLMHead(const io::RobertaConfig& c, Rng& rng)
      : dense(c.hidden_size, c.hidden_size, rng), layer_norm(c.hidden_size, c.layer_norm_eps) {
    bias = Var<Real>::parameter(Tensor<Real>({c.vocab_size}));
    this->register_module("dense", dense);
    this->register_module("layer_norm", layer_norm);
    this->register_parameter("bias", bias);
  }
  // features: (..., C), decoder_weight: (V, C)  ->  logits (..., V)
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& features,
                    const Var<Real>& decoder_weight) {
    const Var<Real> x = layer_norm.forward(
        tape, ops::gelu(tape, dense.forward(tape, features), ops::GeluForm::exact));
    return ops::linear(tape, x, decoder_weight, bias);
  }
};

// The positions a masked-LM loss is computed on: flat indices b·T + t where labels != -100.
inline std::vector<std::int64_t> masked_positions(const Tensor<std::int64_t>& labels) {
  std::vector<std::int64_t> rows;
  for (Index n = 0; n < labels.numel(); ++n)
    if (labels[n] != -100) rows.push_back(n);
  return rows;
}

// ---------------------------------------------------------------------------
// RobertaForMaskedLM: `roberta` (no pooler) + `lm_head`, the layout of roberta-base on the hub.
template <class Real>
class RobertaForMaskedLM : public nn::Module<Real> {
 public:
  io::RobertaConfig config;
  Rng rng;  // initialisation, then the seeds of the dropout streams (declared before the layers)
  RobertaModel<Real> roberta;
  RobertaLMHead<Real> lm_head;

  explicit RobertaForMaskedLM(const io::RobertaConfig& cfg, std::uint64_t seed = 0,
                              WeightInit init = WeightInit::hf)
      : config(checked(cfg)), rng(seed), roberta(config, rng), lm_head(config, rng) {
    this->register_module("roberta", roberta);
    this->register_module("lm_head", lm_head);
    if (init == WeightInit::hf) init_weights(rng);
  }

  // logits (B, T, V) at every position, and last_hidden_state (B, T, C).
  ModelOutput<Real> forward(Tape<Real>& tape, const Tensor<std::int64_t>& input_ids,
                            const Tensor<std::int64_t>& attention_mask = {},
                            const Tensor<std::int64_t>& token_type_ids = {}) {
    const Var<Real> hidden = roberta.forward(tape, input_ids, attention_mask, token_type_ids);
    return {lm_head.forward(tape, hidden, roberta.embeddings.word_embeddings.weight), hidden};
  }

  // HF's masked-LM loss, labels (B, T) with -100 where no prediction is scored: the mean
  // cross-entropy over the scored positions. The head runs on those rows only (about 15% of the
  // tokens in pretraining), which gives the same loss and gradients as scoring all and ignoring the
  // rest at a seventh of the vocabulary GEMM.
  //   hidden: (B, T, C) -> rows (N, C) -> logits (N, V) -> scalar
  Var<Real> loss(Tape<Real>& tape, const Var<Real>& hidden,
                 const Tensor<std::int64_t>& labels) {
    check<ShapeError>(hidden.dim() == 3 && labels.shape() == Shape{hidden.size(0), hidden.size(1)},
                      "RobertaForMaskedLM::loss: labels have shape ", shape_str(labels.shape()),
                      " but the hidden states ", shape_str(hidden.shape()), " need (B, T)");
    const std::vector<std::int64_t> rows = masked_positions(labels);
    check(!rows.empty(), "RobertaForMaskedLM::loss: no position is scored (every label is -100)");
    const Var<Real> logits = scored_logits(tape, hidden, rows);
    std::vector<std::int64_t> targets;
    for (std::int64_t n : rows) targets.push_back(labels[n]);
    return ops::cross_entropy(tape, logits, targets);
  }
  // The head's logits (N, V) at flat positions `rows` (b·T + t) of hidden (B, T, C).
  Var<Real> scored_logits(Tape<Real>& tape, const Var<Real>& hidden,
                          std::span<const std::int64_t> rows) {
    const Index C = hidden.size(2);
    const Var<Real> flat = ops::reshape(tape, hidden, {hidden.numel() / C, C});
    const Var<Real> picked =
        ops::embedding(tape, flat, rows, Shape{static_cast<Index>(rows.size())});
    return lm_head.forward(tape, picked, roberta.embeddings.word_embeddings.weight);
  }

  // HF's _init_weights: Linear / Embedding weights N(0, initializer_range) (padding rows 0), biases
  // 0, LayerNorm 1 / 0; lm_head.bias 0.
  void init_weights(Rng& init_rng) {
    const double std = config.initializer_range;
    init_embedding(roberta.embeddings.word_embeddings, init_rng, std);
    init_embedding(roberta.embeddings.position_embeddings, init_rng, std);
    init_embedding(roberta.embeddings.token_type_embeddings, init_rng, std);
    for (auto& layer : roberta.encoder.layer) {
      init_linear(layer.attention.self.query, init_rng, std);
      init_linear(layer.attention.self.key, init_rng, std);
      init_linear(layer.attention.self.value, init_rng, std);
      init_linear(layer.attention.output.dense, init_rng, std);
      init_linear(layer.intermediate.dense, init_rng, std);
      init_linear(layer.output.dense, init_rng, std);
    }
    init_linear(lm_head.dense, init_rng, std);
    lm_head.bias.value().fill(Real(0));
  }

  // Keys: `roberta.*` + `lm_head.*`. The tied decoder copies some files carry
  // (lm_head.decoder.weight / .bias, e.g. converted from pytorch_model.bin) are dropped; an
  // encoder-only file gets a fresh head, reported.
  CheckpointLayout checkpoint_layout() const {
    return {.base = "roberta",
            .ignored = {"*embeddings.position_ids", "lm_head.decoder.weight",
                        "lm_head.decoder.bias"},
            .head = {"lm_head.*"},
            .initializer_range = config.initializer_range};
  }

  static std::unique_ptr<RobertaForMaskedLM> from_pretrained(
      const std::filesystem::path& dir, CheckpointReport* report = nullptr,
      const CheckpointOptions& options = {}) {
    const CheckpointFiles files = find_checkpoint_files(dir);
    auto model =
        std::make_unique<RobertaForMaskedLM>(io::read_roberta_config(dir), 0, WeightInit::skip);
    CheckpointReport r =
        load_checkpoint_weights(*model, files, model->checkpoint_layout(), options);
    if (report != nullptr) *report = std::move(r);
    return model;
  }
  // config.json + model.safetensors as transformers writes them: roberta.*, lm_head.{dense,
  // layer_norm, bias}; no decoder keys (tied).
  void save_pretrained(const std::filesystem::path& dir, io::Dtype dtype = io::Dtype::F32) const {
    io::RobertaConfig c = config;
    c.architectures = {"RobertaForMaskedLM"};
    c.torch_dtype = torch_dtype_name(dtype);
    save_checkpoint(*this, io::to_json(c), dir, dtype);
  }

 private:
  static const io::RobertaConfig& checked(const io::RobertaConfig& c) {
    check(c.hidden_size % c.num_attention_heads == 0, "RobertaForMaskedLM: hidden_size = ",
          c.hidden_size, " must be a multiple of num_attention_heads = ", c.num_attention_heads);
    check(c.position_embedding_type == "absolute", "RobertaForMaskedLM: position_embedding_type '",
          c.position_embedding_type, "' is not supported (absolute)");
    check(c.tie_word_embeddings, "RobertaForMaskedLM: tie_word_embeddings = false (a separate ",
          "decoder) is not supported; the decoder is the word embedding");
    const Index pad = c.pad_token_id.value_or(1);
    check(pad >= 0 && pad < c.vocab_size && pad < c.max_position_embeddings,
          "RobertaForMaskedLM: pad_token_id = ", pad, " must index both the vocabulary (",
          c.vocab_size, ") and the positions (", c.max_position_embeddings, ")");
    (void)parse_activation(c.hidden_act, "hidden_act");
    return c;
  }
};

}  // namespace fourierft::models
