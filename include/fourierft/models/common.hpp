// fourierft/models/common.hpp — pieces every model shares: ModelInputs / ModelOutput, the configs'
// activations, attention with dropout on the probabilities, HF's initialisation, classifier losses.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/hf_config.hpp"
#include "fourierft/nn/dropout.hpp"
#include "fourierft/nn/embedding.hpp"
#include "fourierft/nn/layer_norm.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/ops/attention.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/ops/shape.hpp"
#include "fourierft/ops/softmax.hpp"

namespace fourierft::models {

// What every model's forward returns (the two tensors `fourierft forward` writes).
template <class Real>
struct ModelOutput {
  Var<Real> logits;             // GPT-2 (B, T, V); classifiers (B, num_labels)
  Var<Real> last_hidden_state;  // (B, T, C) after the final norm (GPT-2 ln_f, ViT layernorm) or the
                                // last encoder layer (RoBERTa, post-LN)
};


// What a model reads, by kind (a model uses the fields of its InputKind; the rest stay empty).
enum class InputKind { tokens, pixels };
template <class Real>
struct ModelInputs {
  Tensor<std::int64_t> input_ids;       // tokens: (B, T)
  Tensor<std::int64_t> attention_mask;  // tokens: (B, T) of 1 / 0, or empty (no padding)
  Tensor<std::int64_t> position_ids;    // tokens: (B, T), or empty (0..T-1, HF's forward default);
                                        // read by the rotary decoders (LLaMA family)
  Tensor<Real> pixel_values;            // pixels: (B, Ch, H, W), resized and normalised
  Tensor<std::int64_t> labels;          // for loss(): class ids (B), or token ids (B, T)
  Tensor<Real> targets;                 // for loss() of a regressor: (B)
};

// What a model's loss() computes: the head HF's class puts on the base model.
enum class Task { causal_lm, masked_lm, sequence_classification, image_classification };

// Dropout is nn::Dropout, a registered module (fourierft/nn/dropout.hpp).
using nn::Dropout;

// ---------------------------------------------------------------------------
// The activations configs name (HF's ACT2FN): "gelu" is the exact erf form (RoBERTa, ViT);
// "gelu_new" and "gelu_pytorch_tanh" are both 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
enum class Activation { gelu, gelu_tanh, relu };

inline Activation parse_activation(const std::string& name, std::string_view config_key) {
  if (name == "gelu") return Activation::gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return Activation::gelu_tanh;
  if (name == "relu") return Activation::relu;
  throw ValueError(str_cat("config ", config_key, " = '", name, "' is not supported (fourierft ",
                           "implements gelu, gelu_new, gelu_pytorch_tanh, relu)"));
}

template <class Real>
Var<Real> activation(Tape<Real>& tape, const Var<Real>& x, Activation act) {
  switch (act) {
    case Activation::gelu:
      return ops::gelu(tape, x, ops::GeluForm::exact);
    case Activation::gelu_tanh:
      return ops::gelu(tape, x, ops::GeluForm::tanh);
    case Activation::relu:
      return ops::relu(tape, x);
  }
  return x;
}

// ---------------------------------------------------------------------------
// Multi-head scaled dot-product attention, q: (B, Tq, C), k, v: (B, Tk, C) -> (B, Tq, C), with
// dropout p on the attention probabilities (HF's attn_pdrop / attention_probs_dropout_prob).
// Evaluation, or p = 0: the fused op (ops::attention). Training with p > 0 needs the probabilities
// as a tensor, so the eager form HF writes is taken instead, with heads first:
//   Q, K, V: (NH, B, T, HS);  S = scale Q·Kᵀ + hide  (NH, B, Tq, Tk);  P = dropout(softmax(S))
//   O = P·V  (NH, B, Tq, HS) -> (B, Tq, C)
// `hide` (B, Tq, Tk) holds float's lowest value where a key is masked (causal or padding), else 0,
// as HF adds torch.finfo.min: a masked key gets weight exp(-huge) = 0.
template <class Real>
Var<Real> eager_attention(Tape<Real>& tape, const Var<Real>& q, const Var<Real>& k,
                          const Var<Real>& v, Index NH, const ops::AttentionOptions& options,
                          Real p_drop, Rng& rng) {
  const Index B = q.size(0), Tq = q.size(1), C = q.size(2), Tk = k.size(1), HS = C / NH;
  auto heads = [&](const Var<Real>& x, Index T) {  // (B, T, C) -> (NH, B, T, HS)
    return ops::permute(tape, ops::reshape(tape, x, {B, T, NH, HS}), {2, 0, 1, 3});
  };
  const double scale = options.scale ? *options.scale : 1.0 / std::sqrt(static_cast<double>(HS));
  Var<Real> s = ops::scale(tape, ops::matmul(tape, heads(q, Tq), heads(k, Tk), false, true),
                           static_cast<Real>(scale));
  if (options.causal || options.key_padding_mask) {
    Tensor<Real> hide({B, Tq, Tk});
    const Real lowest = std::numeric_limits<Real>::lowest();
    for (Index b = 0; b < B; ++b)
      for (Index i = 0; i < Tq; ++i)
        for (Index j = 0; j < Tk; ++j) {
          const bool future = options.causal && j > i + (Tk - Tq);
          const bool padding =
              options.key_padding_mask && (*options.key_padding_mask)[b * Tk + j] == 0;
          if (future || padding) hide[(b * Tq + i) * Tk + j] = lowest;
        }
    s = ops::add(tape, s, hide);
  }
  Var<Real> p = ops::dropout(tape, ops::softmax(tape, s), p_drop, rng, true);
  Var<Real> o = ops::matmul(tape, p, heads(v, Tk));  // (NH, B, Tq, HS)
  return ops::reshape(tape, ops::permute(tape, o, {1, 2, 0, 3}), {B, Tq, C});
}

template <class Real>
Var<Real> multi_head_attention(Tape<Real>& tape, const Var<Real>& q, const Var<Real>& k,
                               const Var<Real>& v, Index NH, const ops::AttentionOptions& options,
                               nn::Dropout<Real>& attn_dropout) {
  if (!attn_dropout.is_training() || attn_dropout.p == 0.0) return ops::attention(tape, q, k, v, NH, options);
  return eager_attention(tape, q, k, v, NH, options, static_cast<Real>(attn_dropout.p),
                         attn_dropout.rng);
}

// ---------------------------------------------------------------------------
// Hugging Face's `_init_weights`: weights ~ N(0, std) (ViT: truncated to [-2, 2], torch's
// trunc_normal_ default, which never bites at std 0.02), biases 0, LayerNorm 1 / 0.
template <class Real>
void init_normal(Var<Real>& p, Rng& rng, double std, bool truncated = false) {
  for (Real& x : p.data()) {
    double z = std * rng.normal();
    while (truncated && std::abs(z) > 2.0) z = std * rng.normal();
    x = static_cast<Real>(z);
  }
}
template <class Real>
void init_linear(nn::Linear<Real>& layer, Rng& rng, double std, bool truncated = false) {
  init_normal(layer.weight, rng, std, truncated);
  if (layer.has_bias()) layer.bias.value().fill(Real(0));
}
template <class Real>
void init_embedding(nn::Embedding<Real>& table, Rng& rng, double std) {
  init_normal(table.weight, rng, std);
  if (const auto pad = table.padding_idx())
    std::fill_n(table.weight.value().ptr() + *pad * table.embedding_dim(), table.embedding_dim(),
                Real(0));
}

// HF's `_init_weights(module)` for the standard layers, the per-module step of a model's
// init_weights walk: Linear -> weight N(0, std) (truncated if asked), bias 0; Embedding -> N(0, std),
// padding row 0; LayerNorm -> 1 / 0. Returns false for any other module (the model's policy decides).
template <class Real>
bool init_standard_layer(nn::Module<Real>& module, Rng& rng, double std, bool truncated = false) {
  if (auto* linear = dynamic_cast<nn::Linear<Real>*>(&module)) {
    init_linear(*linear, rng, std, truncated);
  } else if (auto* table = dynamic_cast<nn::Embedding<Real>*>(&module)) {
    init_embedding(*table, rng, std);
  } else if (auto* norm = dynamic_cast<nn::LayerNorm<Real>*>(&module)) {
    norm->weight.value().fill(Real(1));
    norm->bias.value().fill(Real(0));
  } else {
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Sequence-classification losses, as HF's heads choose them from config.problem_type / num_labels.
// Classification: logits (B, L), labels (B) ints in [0, L) -> mean cross-entropy.
template <class Real>
Var<Real> classification_loss(Tape<Real>& tape, const Var<Real>& logits,
                              const Tensor<std::int64_t>& labels) {
  check<ShapeError>(logits.dim() == 2 && labels.shape() == Shape{logits.size(0)},
                    "classification_loss: labels have shape ", shape_str(labels.shape()),
                    " but logits ", shape_str(logits.shape()), " need (", logits.size(0), ")");
  return ops::cross_entropy(tape, logits, labels.data());
}
// Regression (num_labels = 1): logits (B, 1), labels (B) -> mean squared error, HF's
// MSELoss()(logits.squeeze(), labels.squeeze()).
template <class Real>
Var<Real> regression_loss(Tape<Real>& tape, const Var<Real>& logits, const Tensor<Real>& labels) {
  check<ShapeError>(logits.dim() == 2 && logits.size(1) == 1 && labels.numel() == logits.size(0),
                    "regression_loss: logits ", shape_str(logits.shape()), " and labels ",
                    shape_str(labels.shape()), " should be (B, 1) and (B)");
  return ops::mse_loss(tape, logits, labels.reshape(logits.shape()));
}

// HF's sequence-classification head loss, chosen by config.problem_type / num_labels; `model`
// names the class in errors. Integer labels (B): classification; float labels (B): regression.
template <class Real>
Var<Real> sequence_classification_loss(Tape<Real>& tape, const Var<Real>& logits,
                                       const Tensor<std::int64_t>& labels,
                                       const io::HfCommonConfig& config, std::string_view model) {
  check(!config.is_regression(), model, "::loss: this model is a regressor ",
        "(num_labels = 1 / problem_type regression): pass float labels");
  check(config.problem_type != "multi_label_classification", model,
        "::loss: problem_type multi_label_classification is not supported");
  return classification_loss(tape, logits, labels);
}
template <class Real>
Var<Real> sequence_classification_loss(Tape<Real>& tape, const Var<Real>& logits,
                                       const Tensor<Real>& labels,
                                       const io::HfCommonConfig& config, std::string_view model) {
  check(config.is_regression(), model, "::loss: this model classifies into ", config.num_labels(),
        " labels: pass integer labels");
  return regression_loss(tape, logits, labels);
}

// The losses of a model with a classification head (RoBERTa's, ViT's), written once: a base of
// Derived, which has `config` (an io::HfCommonConfig) and `architecture` (named in errors).
template <class Derived, class Real>
class ClassifierLosses {
 public:
  // Classification: logits (B, num_labels), labels (B) in [0, num_labels) -> cross-entropy.
  Var<Real> loss(Tape<Real>& tape, const Var<Real>& logits,
                 const Tensor<std::int64_t>& labels) const {
    return sequence_classification_loss(tape, logits, labels, self().config,
                                        Derived::architecture);
  }
  // Regression (num_labels = 1): logits (B, 1), float labels (B) -> mean squared error.
  Var<Real> loss(Tape<Real>& tape, const Var<Real>& logits, const Tensor<Real>& labels) const {
    return sequence_classification_loss(tape, logits, labels, self().config,
                                        Derived::architecture);
  }
  // in.labels (classes) or in.targets (regression).
  Var<Real> loss(Tape<Real>& tape, const ModelOutput<Real>& out,
                 const ModelInputs<Real>& in) const {
    return self().config.is_regression() ? loss(tape, out.logits, in.targets)
                                         : loss(tape, out.logits, in.labels);
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

// Input checks with messages that name the model and the argument.
inline void check_ids(const char* where, const char* what, const Tensor<std::int64_t>& t) {
  check<ShapeError>(t.dim() == 2 && t.size(0) > 0 && t.size(1) > 0, where, ": ", what,
                    " must be (B, T) with B, T > 0, got shape ", shape_str(t.shape()));
}
inline void check_mask(const char* where, const Tensor<std::int64_t>& mask,
                       const Tensor<std::int64_t>& ids) {
  check<ShapeError>(mask.shape() == ids.shape(), where, ": attention_mask has shape ",
                    shape_str(mask.shape()), " but input_ids has ", shape_str(ids.shape()));
  for (Index n = 0; n < mask.numel(); ++n)
    check(mask[n] == 0 || mask[n] == 1, where, ": attention_mask[", n / ids.size(1), ", ",
          n % ids.size(1), "] = ", mask[n], " must be 0 (padding) or 1 (token)");
}
// True if any entry is 0 (so the attention needs the padding mask at all).
inline bool has_padding(const Tensor<std::int64_t>& mask) {
  for (std::int64_t m : mask.data())
    if (m == 0) return true;
  return false;
}

// What a decoder's forward derives from its arguments before the first layer (GPT-2, LLaMA):
//   mask       attention_mask, or all ones when a cache needs one, else empty (no padding)
//   positions  position_ids, or past + 0..T-1 (HF's default, also under left padding)
// Checks the shapes (input_ids (B, T); a non-empty cache holds B rows) and that positions are >= 0.
struct DecoderInputs {
  Index batch = 0, length = 0, past = 0;
  Tensor<std::int64_t> mask, positions;
  std::int64_t max_position = 0;
};
template <class Cache>
DecoderInputs decoder_inputs(const char* where, const Tensor<std::int64_t>& input_ids,
                             const Tensor<std::int64_t>& attention_mask, const Cache* cache,
                             const Tensor<std::int64_t>& position_ids) {
  check_ids(where, "input_ids", input_ids);
  DecoderInputs d;
  d.batch = input_ids.size(0), d.length = input_ids.size(1);
  const Index B = d.batch, T = d.length;
  d.past = cache != nullptr ? cache->length() : 0;
  if (cache != nullptr && d.past > 0)
    check<ShapeError>(cache->rows() == B, where, ": the cache holds ", cache->rows(),
                      " rows but input_ids has shape ", shape_str(input_ids.shape()));
  d.mask = attention_mask;
  if (!d.mask.empty())
    check_mask(where, d.mask, input_ids);
  else if (cache != nullptr)
    d.mask = Tensor<std::int64_t>::ones({B, T});
  d.positions = position_ids;
  if (d.positions.empty()) {
    d.positions = Tensor<std::int64_t>({B, T});
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < T; ++t) d.positions[b * T + t] = d.past + t;
  }
  check<ShapeError>(d.positions.shape() == input_ids.shape(), where, ": position_ids has shape ",
                    shape_str(d.positions.shape()), " but input_ids has ",
                    shape_str(input_ids.shape()));
  for (std::int64_t p : d.positions.data()) {
    check<IndexError>(p >= 0, where, ": position_ids holds ", p, " (positions are >= 0)");
    d.max_position = std::max(d.max_position, p);
  }
  return d;
}

}  // namespace fourierft::models
