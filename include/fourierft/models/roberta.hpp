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
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/hf_config.hpp"
#include "fourierft/models/checkpoint.hpp"
#include "fourierft/models/common.hpp"
#include "fourierft/models/pretrained.hpp"
#include "fourierft/models/transformer.hpp"
#include "fourierft/nn/dropout.hpp"
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
  nn::Dropout<Real> dropout;

  RobertaEmbeddings(const io::RobertaConfig& config, Rng& rng)
      : word_embeddings(config.vocab_size, config.hidden_size, pad_of(config)),
        position_embeddings(config.max_position_embeddings, config.hidden_size, pad_of(config)),
        token_type_embeddings(config.type_vocab_size, config.hidden_size),
        LayerNorm(config.hidden_size, config.layer_norm_eps),
        dropout(config.hidden_dropout_prob, rng.split()),
        pad_(pad_of(config)) {
    this->register_module("word_embeddings", word_embeddings);
    this->register_module("position_embeddings", position_embeddings);
    this->register_module("token_type_embeddings", token_type_embeddings);
    this->register_module("LayerNorm", LayerNorm);
    this->register_module("dropout", dropout);
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
    return dropout.forward(tape, LayerNorm.forward(tape, x));
  }

 private:
  static Index pad_of(const io::RobertaConfig& c) { return c.pad_token_id.value_or(1); }
  Index pad_;
};

// encoder.layer.{i}.attention: self (SelfAttention), then output = LayerNorm(x + dropout(dense(.)))
template <class Real>
class RobertaAttention : public nn::Module<Real> {
 public:
  SelfAttention<Real> self;
  DenseOutput<Real> output;

  RobertaAttention(const io::RobertaConfig& c, Rng& rng)
      : self(c.hidden_size, c.num_attention_heads, c.attention_probs_dropout_prob, rng),
        output(c.hidden_size, c.hidden_size, c.hidden_dropout_prob, rng, c.layer_norm_eps) {
    this->register_module("self", self);
    this->register_module("output", output);
  }
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x, const Tensor<std::int64_t>& mask) {
    return output.forward(tape, self.forward(tape, x, mask), x);
  }
};

// encoder.layer.{i}
template <class Real>
class RobertaLayer : public nn::Module<Real> {
 public:
  RobertaAttention<Real> attention;
  Intermediate<Real> intermediate;
  DenseOutput<Real> output;  // LayerNorm(a + dropout(dense(.)))

  RobertaLayer(const io::RobertaConfig& c, Rng& rng)
      : attention(c, rng),
        intermediate(c.hidden_size, c.intermediate_size, c.hidden_act, rng),
        output(c.intermediate_size, c.hidden_size, c.hidden_dropout_prob, rng, c.layer_norm_eps) {
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
using RobertaEncoder = Encoder<RobertaLayer<Real>>;

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
  nn::Dropout<Real> dropout;

  RobertaClassificationHead(const io::RobertaConfig& c, Rng& rng)
      : dense(c.hidden_size, c.hidden_size, rng),
        out_proj(c.hidden_size, c.num_labels(), rng),
        dropout(c.classifier_dropout_prob(), rng.split()) {
    this->register_module("dense", dense);
    this->register_module("dropout", dropout);
    this->register_module("out_proj", out_proj);
  }
  // hidden: (B, T, C) -> logits (B, num_labels)
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& hidden) {
    Var<Real> x = dropout.forward(tape, ops::select(tape, hidden, 1, 0));
    x = dropout.forward(tape, ops::tanh(tape, dense.forward(tape, x)));
    return out_proj.forward(tape, x);
  }
};

// ---------------------------------------------------------------------------
// The config checks both RoBERTa heads make; `model` names the class in the message.
inline void validate_roberta_config(const io::RobertaConfig& c, std::string_view model) {
  check(c.hidden_size % c.num_attention_heads == 0, model, ": hidden_size = ", c.hidden_size,
        " must be a multiple of num_attention_heads = ", c.num_attention_heads);
  check(c.position_embedding_type == "absolute", model, ": position_embedding_type '",
        c.position_embedding_type, "' is not supported (absolute)");
  const Index pad = c.pad_token_id.value_or(1);
  check(pad >= 0 && pad < c.vocab_size && pad < c.max_position_embeddings, model,
        ": pad_token_id = ", pad, " must index both the vocabulary (", c.vocab_size,
        ") and the positions (", c.max_position_embeddings, ")");
  (void)parse_activation(c.hidden_act, "hidden_act");
}

// HF's _init_weights for RoBERTa's standard layers: Linear / Embedding weights
// N(0, initializer_range) (padding rows 0), biases 0, LayerNorm 1 / 0.
template <class Real>
void init_roberta_module(nn::Module<Real>& module, Rng& rng, const io::RobertaConfig& c) {
  init_standard_layer(module, rng, c.initializer_range);
}

// ---------------------------------------------------------------------------
template <class Real>
class RobertaForSequenceClassification
    : public PretrainedModel<RobertaForSequenceClassification<Real>, io::RobertaConfig, Real>,
      public ClassifierLosses<RobertaForSequenceClassification<Real>, Real> {  // loss(...)
  using Base = PretrainedModel<RobertaForSequenceClassification<Real>, io::RobertaConfig, Real>;

 public:
  static constexpr std::string_view architecture = "RobertaForSequenceClassification";
  static constexpr Task task = Task::sequence_classification;
  static constexpr InputKind inputs = InputKind::tokens;
  using Base::config;
  using Base::rng;
  RobertaModel<Real> roberta;
  RobertaClassificationHead<Real> classifier;

  explicit RobertaForSequenceClassification(const io::RobertaConfig& cfg, std::uint64_t seed = 0,
                                            WeightInit init = WeightInit::hf)
      : Base(cfg, seed), roberta(config, rng), classifier(config, rng) {
    this->register_module("roberta", roberta);
    this->register_module("classifier", classifier);
    this->finish_init(init);
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
  ModelOutput<Real> forward(Tape<Real>& tape, const ModelInputs<Real>& in) {
    return forward(tape, in.input_ids, in.attention_mask);
  }

  static void validate(const io::RobertaConfig& c) { validate_roberta_config(c, architecture); }
  void init_module(const std::string&, nn::Module<Real>& module, Rng& init_rng) {
    init_roberta_module(module, init_rng, config);
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
class RobertaForMaskedLM
    : public PretrainedModel<RobertaForMaskedLM<Real>, io::RobertaConfig, Real> {
  using Base = PretrainedModel<RobertaForMaskedLM<Real>, io::RobertaConfig, Real>;

 public:
  static constexpr std::string_view architecture = "RobertaForMaskedLM";
  static constexpr Task task = Task::masked_lm;
  static constexpr InputKind inputs = InputKind::tokens;
  using Base::config;
  using Base::rng;
  RobertaModel<Real> roberta;
  RobertaLMHead<Real> lm_head;

  explicit RobertaForMaskedLM(const io::RobertaConfig& cfg, std::uint64_t seed = 0,
                              WeightInit init = WeightInit::hf)
      : Base(cfg, seed), roberta(config, rng), lm_head(config, rng) {
    this->register_module("roberta", roberta);
    this->register_module("lm_head", lm_head);
    this->finish_init(init);
  }

  // logits (B, T, V) at every position, and last_hidden_state (B, T, C).
  ModelOutput<Real> forward(Tape<Real>& tape, const Tensor<std::int64_t>& input_ids,
                            const Tensor<std::int64_t>& attention_mask = {},
                            const Tensor<std::int64_t>& token_type_ids = {}) {
    const Var<Real> hidden = roberta.forward(tape, input_ids, attention_mask, token_type_ids);
    return {lm_head.forward(tape, hidden, roberta.embeddings.word_embeddings.weight), hidden};
  }
  ModelOutput<Real> forward(Tape<Real>& tape, const ModelInputs<Real>& in) {
    return forward(tape, in.input_ids, in.attention_mask);
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
  Var<Real> loss(Tape<Real>& tape, const ModelOutput<Real>& out, const ModelInputs<Real>& in) {
    return loss(tape, out.last_hidden_state, in.labels);
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

  static void validate(const io::RobertaConfig& c) {
    validate_roberta_config(c, architecture);
    check(c.tie_word_embeddings, "RobertaForMaskedLM: tie_word_embeddings = false (a separate ",
          "decoder) is not supported; the decoder is the word embedding");
  }
  // RoBERTa's layers as the classifier's; lm_head.bias 0.
  void init_module(const std::string&, nn::Module<Real>& module, Rng& init_rng) {
    if (&module == &lm_head) lm_head.bias.value().fill(Real(0));
    init_roberta_module(module, init_rng, config);
  }
  // Keys: `roberta.*` + `lm_head.*`. The tied decoder copies some files carry
  // (lm_head.decoder.weight / .bias, e.g. converted from pytorch_model.bin) are dropped; an
  // encoder-only file gets a fresh head, reported. save_pretrained writes roberta.*,
  // lm_head.{dense, layer_norm, bias}; no decoder keys (tied).
  CheckpointLayout checkpoint_layout() const {
    return {.base = "roberta",
            .ignored = {"*embeddings.position_ids", "lm_head.decoder.weight",
                        "lm_head.decoder.bias"},
            .head = {"lm_head.*"},
            .initializer_range = config.initializer_range};
  }
};

}  // namespace fourierft::models
