// fourierft/models/gpt2.hpp — GPT2LMHeadModel as Hugging Face defines it (members named like its
// keys), with a KV cache for generation, the causal-LM loss, and from_pretrained / save_pretrained.
#pragma once

// The architecture (transformers' modeling_gpt2.py), for ids (B, T):
//   h = wte[ids] + wpe[positions]              positions 0..T-1 (past_length + t with a cache)
//   per block:  h = h + c_proj(attention(c_attn(ln_1(h))))     pre-LN; causal + key-padding masks
//               h = h + mlp.c_proj(gelu_new(mlp.c_fc(ln_2(h))))
//   last_hidden_state = ln_f(h);   logits = last_hidden_state · wteᵀ   (lm_head tied to wte)
// Conv1D layout: every GPT-2 weight is stored (in, out), so `attn.c_attn.weight` is (C, 3C) and
// q, k, v are its consecutive column blocks; Linear reads it with WeightLayout::in_out.
// Dropout (embd_pdrop, attn_pdrop, resid_pdrop) acts in training mode only.

#include <algorithm>
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
#include "fourierft/nn/dropout.hpp"
#include "fourierft/nn/embedding.hpp"
#include "fourierft/nn/layer_norm.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/ops/attention.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/indexing.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/ops/linear_cross_entropy.hpp"
#include "fourierft/ops/softmax.hpp"

namespace fourierft::models {

// ---------------------------------------------------------------------------
// KvCache: the keys and values of the tokens seen so far, per layer, so that generating one more
// token costs one row of work instead of re-running the whole sequence. Inference only: the cached
// tensors carry no gradient.
template <class Real>
struct KvCache {
  std::vector<Tensor<Real>> key;    // per layer: (N, T_past, C), heads side by side as in q, k
  std::vector<Tensor<Real>> value;  // per layer: (N, T_past, C)
  Tensor<std::int64_t> mask;        // (N, T_past): 1 token, 0 padding (as attention_mask)

  Index length() const { return mask.dim() == 2 ? mask.size(1) : 0; }
  Index rows() const { return mask.dim() == 2 ? mask.size(0) : 0; }
  void clear() {
    key.clear();
    value.clear();
    mask = Tensor<std::int64_t>();
  }
  // Row i becomes old row rows[i] in every tensor: beam search continues each beam from its parent,
  // and expands B prompts into B * num_beams rows ({0, 0, 1, 1} for 2 beams).
  void select_rows(std::span<const Index> rows) {
    if (length() == 0) return;
    for (Index r : rows)
      check<IndexError>(r >= 0 && r < this->rows(), "KvCache::select_rows: row ", r,
                        " out of range for ", this->rows(), " rows");
    for (auto& t : key) t = take_rows(t, rows);
    for (auto& t : value) t = take_rows(t, rows);
    mask = take_rows(mask, rows);
  }

 private:
  template <class T>
  static Tensor<T> take_rows(const Tensor<T>& t, std::span<const Index> rows) {
    const Index width = t.numel() / t.size(0);
    Shape shape = t.shape();
    shape[0] = static_cast<Index>(rows.size());
    Tensor<T> out(shape);
    for (std::size_t i = 0; i < rows.size(); ++i)
      std::copy_n(t.ptr() + rows[i] * width, width, out.ptr() + static_cast<Index>(i) * width);
    return out;
  }
};

// ---------------------------------------------------------------------------
// transformer.h.{i}.attn: one fused projection to q, k, v, heads, and the output projection.
template <class Real>
class GPT2Attention : public nn::Module<Real> {
 public:
  nn::Linear<Real> c_attn;  // weight (C, 3C), in x out: columns [q | k | v]
  nn::Linear<Real> c_proj;  // weight (C, C)
  nn::Dropout<Real> attn_dropout, resid_dropout;

  GPT2Attention(const io::Gpt2Config& config, Index layer_idx, Rng& rng)
      : c_attn(config.n_embd, 3 * config.n_embd, rng, true, nn::WeightLayout::in_out),
        c_proj(config.n_embd, config.n_embd, rng, true, nn::WeightLayout::in_out),
        attn_dropout(config.attn_pdrop, rng.split()),
        resid_dropout(config.resid_pdrop, rng.split()),
        num_heads_(config.n_head) {
    this->register_module("c_attn", c_attn);
    this->register_module("c_proj", c_proj);
    this->register_module("attn_dropout", attn_dropout);
    this->register_module("resid_dropout", resid_dropout);
    // HF: scores / sqrt(HS) if scale_attn_weights; also / (layer_idx + 1) if
    // scale_attn_by_inverse_layer_idx.
    scale_ =
        config.scale_attn_weights ? 1.0 / std::sqrt(static_cast<double>(config.head_dim())) : 1.0;
    if (config.scale_attn_by_inverse_layer_idx) scale_ /= static_cast<double>(layer_idx + 1);
  }

  // x: (B, T, C); key_mask: (B, T_past + T) or empty (no padding); past_key/value: this layer's
  // cache (B, T_past, C), extended in place by the T new keys/values, or null.  -> (B, T, C)
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x, const Tensor<std::int64_t>& key_mask,
                    Tensor<Real>* past_key, Tensor<Real>* past_value) {
    const Index C = x.size(-1);
    const Var<Real> qkv = c_attn.forward(tape, x);  // (B, T, 3C)
    ops::AttentionOptions options;
    options.causal = true;
    options.scale = scale_;
    if (!key_mask.empty()) options.key_padding_mask = key_mask.data();
    const bool drop_probs = this->is_training() && attn_dropout.p != 0.0;
    Var<Real> y;
    if (past_key == nullptr && !drop_probs) {
      y = ops::attention_packed_qkv(tape, qkv, num_heads_, options);  // reads q, k, v in place
    } else {  // a KV cache or dropout on the probabilities: q, k, v as tensors of their own
      Var<Real> q = ops::narrow(tape, qkv, -1, 0, C);
      Var<Real> k = ops::narrow(tape, qkv, -1, C, C);
      Var<Real> v = ops::narrow(tape, qkv, -1, 2 * C, C);
      if (past_key != nullptr) {
        if (past_key->numel() > 0) {
          k = ops::concat(tape, {Var<Real>(*past_key), k}, 1);
          v = ops::concat(tape, {Var<Real>(*past_value), v}, 1);
        }
        *past_key = k.value();
        *past_value = v.value();
      }
      y = multi_head_attention(tape, q, k, v, num_heads_, options, attn_dropout);
    }
    return resid_dropout.forward(tape, c_proj.forward(tape, y));
  }

 private:
  Index num_heads_;
  double scale_;
};

// transformer.h.{i}.mlp: c_fc (C, 4C) -> gelu_new -> c_proj (4C, C), both in x out.
template <class Real>
class GPT2MLP : public nn::Module<Real> {
 public:
  nn::Linear<Real> c_fc, c_proj;
  nn::Dropout<Real> dropout;

  GPT2MLP(const io::Gpt2Config& config, Rng& rng)
      : c_fc(config.n_embd, config.inner_dim(), rng, true, nn::WeightLayout::in_out),
        c_proj(config.inner_dim(), config.n_embd, rng, true, nn::WeightLayout::in_out),
        dropout(config.resid_pdrop, rng.split()),
        act_(parse_activation(config.activation_function, "activation_function")) {
    this->register_module("c_fc", c_fc);
    this->register_module("c_proj", c_proj);
    this->register_module("dropout", dropout);
  }
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x) {
    const Var<Real> m = activation(tape, c_fc.forward(tape, x), act_);
    return dropout.forward(tape, c_proj.forward(tape, m));
  }

 private:
  Activation act_;
};

// transformer.h.{i}: pre-LN residual block.
template <class Real>
class GPT2Block : public nn::Module<Real> {
 public:
  nn::LayerNorm<Real> ln_1;
  GPT2Attention<Real> attn;
  nn::LayerNorm<Real> ln_2;
  GPT2MLP<Real> mlp;

  GPT2Block(const io::Gpt2Config& config, Index layer_idx, Rng& rng)
      : ln_1(config.n_embd, config.layer_norm_epsilon),
        attn(config, layer_idx, rng),
        ln_2(config.n_embd, config.layer_norm_epsilon),
        mlp(config, rng) {
    this->register_module("ln_1", ln_1);
    this->register_module("attn", attn);
    this->register_module("ln_2", ln_2);
    this->register_module("mlp", mlp);
  }
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& h, const Tensor<std::int64_t>& key_mask,
                    Tensor<Real>* past_key, Tensor<Real>* past_value) {
    const Var<Real> a = ops::add(
        tape, h, attn.forward(tape, ln_1.forward(tape, h), key_mask, past_key, past_value));
    return ops::add(tape, a, mlp.forward(tape, ln_2.forward(tape, a)));
  }
};

// ---------------------------------------------------------------------------
// `transformer`: GPT2Model, ids -> hidden states after ln_f.
template <class Real>
class GPT2Model : public nn::Module<Real> {
 public:
  nn::Embedding<Real> wte;  // (V, C): token embeddings, also the LM head
  nn::Embedding<Real> wpe;  // (n_positions, C): learned absolute positions
  nn::ModuleList<GPT2Block<Real>> h;
  nn::LayerNorm<Real> ln_f;
  nn::Dropout<Real> drop;  // on wte + wpe

  GPT2Model(const io::Gpt2Config& config, Rng& rng)
      : wte(config.vocab_size, config.n_embd),
        wpe(config.n_positions, config.n_embd),
        ln_f(config.n_embd, config.layer_norm_epsilon),
        drop(config.embd_pdrop, rng.split()) {
    this->register_module("wte", wte);
    this->register_module("wpe", wpe);
    this->register_module("drop", drop);  // HF's order: before the blocks (and reseeded first)
    for (Index i = 0; i < config.n_layer; ++i) h.emplace_back(config, i, rng);
    this->register_module("h", h);
    this->register_module("ln_f", ln_f);
  }

  // input_ids: (B, T); attention_mask: (B, T) of 1 / 0, or empty (no padding); cache: extended in
  // place, its mask included, or null; position_ids: (B, T), or empty for past_length + 0..T-1
  // (HF's default, also under left padding).   -> (B, T, C)
  Var<Real> forward(Tape<Real>& tape, const Tensor<std::int64_t>& input_ids,
                    const Tensor<std::int64_t>& attention_mask = {}, KvCache<Real>* cache = nullptr,
                    const Tensor<std::int64_t>& position_ids = {}) {
    const char* where = "GPT2Model.forward";
    check_ids(where, "input_ids", input_ids);
    const Index B = input_ids.size(0), T = input_ids.size(1);
    const Index past = cache != nullptr ? cache->length() : 0;
    if (cache != nullptr && past > 0)
      check<ShapeError>(cache->rows() == B, where, ": the cache holds ", cache->rows(),
                        " rows but input_ids has shape ", shape_str(input_ids.shape()));
    Tensor<std::int64_t> mask = attention_mask;
    if (!mask.empty())
      check_mask(where, mask, input_ids);
    else if (cache != nullptr)
      mask = Tensor<std::int64_t>::ones({B, T});

    Tensor<std::int64_t> positions = position_ids;
    if (positions.empty()) {
      positions = Tensor<std::int64_t>({B, T});
      for (Index b = 0; b < B; ++b)
        for (Index t = 0; t < T; ++t) positions[b * T + t] = past + t;
    }
    check<ShapeError>(positions.shape() == input_ids.shape(), where, ": position_ids has shape ",
                      shape_str(positions.shape()), " but input_ids has ",
                      shape_str(input_ids.shape()));
    for (std::int64_t p : positions.data())
      check<IndexError>(p >= 0 && p < wpe.num_embeddings(), where, ": position ", p,
                        " is beyond n_positions = ", wpe.num_embeddings(), " (past ", past, " + ",
                        T, " new tokens)");

    // The key-padding mask covers the cached keys too: (B, past + T).
    Tensor<std::int64_t> key_mask;
    if (cache != nullptr) {
      key_mask = Tensor<std::int64_t>({B, past + T});
      for (Index b = 0; b < B; ++b) {
        for (Index t = 0; t < past; ++t) key_mask[b * (past + T) + t] = cache->mask[b * past + t];
        for (Index t = 0; t < T; ++t) key_mask[b * (past + T) + past + t] = mask[b * T + t];
      }
      cache->mask = key_mask;
      if (cache->key.size() != h.size()) {
        cache->key.assign(h.size(), Tensor<Real>(Shape{0}));
        cache->value.assign(h.size(), Tensor<Real>(Shape{0}));
      }
    } else {
      key_mask = mask;
    }
    if (!has_padding(key_mask)) key_mask = Tensor<std::int64_t>();  // none: the fast path

    Var<Real> x = ops::add(tape, wte.forward(tape, input_ids), wpe.forward(tape, positions));
    x = drop.forward(tape, x);
    for (std::size_t i = 0; i < h.size(); ++i)
      x = h[i].forward(tape, x, key_mask, cache ? &cache->key[i] : nullptr,
                       cache ? &cache->value[i] : nullptr);
    return ln_f.forward(tape, x);
  }
};

// ---------------------------------------------------------------------------
// The causal-LM labels HF's data collators produce, for ids and attention_mask (B, T): the ids,
// with -100 (ignored) where the token is padding and where the previous position is padding — the
// first real token of a left-padded row has no real token before it to predict it from.
inline Tensor<std::int64_t> causal_lm_labels(const Tensor<std::int64_t>& input_ids,
                                             const Tensor<std::int64_t>& attention_mask = {}) {
  check_ids("causal_lm_labels", "input_ids", input_ids);
  Tensor<std::int64_t> labels = input_ids.clone();
  if (attention_mask.empty()) return labels;
  check_mask("causal_lm_labels", attention_mask, input_ids);
  const Index B = input_ids.size(0), T = input_ids.size(1);
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < T; ++t)
      if (attention_mask[b * T + t] == 0 || (t > 0 && attention_mask[b * T + t - 1] == 0))
        labels[b * T + t] = -100;
  return labels;
}

// HF's causal-LM shift: position t predicts labels[t + 1]; the last position of a row predicts
// nothing (-100).   labels: (B, T)  ->  targets: (B·T)
inline std::vector<std::int64_t> causal_lm_targets(const Tensor<std::int64_t>& labels) {
  check<ShapeError>(labels.dim() == 2, "causal_lm_targets: labels must be (B, T), got ",
                    shape_str(labels.shape()));
  const Index B = labels.size(0), T = labels.size(1);
  std::vector<std::int64_t> targets(static_cast<std::size_t>(B * T), -100);
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t + 1 < T; ++t) targets[b * T + t] = labels[b * T + t + 1];
  return targets;
}

// HF's causal-LM loss: position t predicts labels[t + 1] (the shift), -100 ignored, mean over
// the rest.
//   logits: (B, T, V)   labels: (B, T)   ->   scalar
// (Training from hidden states: model.lm_loss(tape, hidden, causal_lm_targets(labels)) gives the
// same value without materialising the logits.)
template <class Real>
Var<Real> causal_lm_loss(Tape<Real>& tape, const Var<Real>& logits,
                         const Tensor<std::int64_t>& labels, double label_smoothing = 0.0) {
  check<ShapeError>(logits.dim() == 3 && labels.dim() == 2 && labels.size(0) == logits.size(0) &&
                        labels.size(1) == logits.size(1),
                    "causal_lm_loss: labels have shape ", shape_str(labels.shape()), " but logits ",
                    shape_str(logits.shape()), " need (B, T) = (", logits.size(0), ", ",
                    logits.size(1), ")");
  ops::CrossEntropyOptions options;
  options.label_smoothing = label_smoothing;
  return ops::cross_entropy(tape, logits, causal_lm_targets(labels), options);
}

// ---------------------------------------------------------------------------
// GPT2LMHeadModel: `transformer` plus the LM head tied to transformer.wte.weight. The head is not a
// parameter of its own, so named_parameters() lists no `lm_head.weight` (as HF's files omit it) and
// the gradient of wte collects both the embedding and the output-projection parts.
template <class Real>
class GPT2LMHeadModel : public PretrainedModel<GPT2LMHeadModel<Real>, io::Gpt2Config, Real> {
  using Base = PretrainedModel<GPT2LMHeadModel<Real>, io::Gpt2Config, Real>;

 public:
  static constexpr std::string_view architecture = "GPT2LMHeadModel";
  static constexpr Task task = Task::causal_lm;
  static constexpr InputKind inputs = InputKind::tokens;
  using Base::config;
  using Base::rng;
  GPT2Model<Real> transformer;

  explicit GPT2LMHeadModel(const io::Gpt2Config& cfg, std::uint64_t seed = 0,
                           WeightInit init = WeightInit::hf)
      : Base(cfg, seed), transformer(config, rng) {
    this->register_module("transformer", transformer);
    this->finish_init(init);
  }

  // logits (B, T, V) and last_hidden_state (B, T, C). Arguments as GPT2Model::forward.
  ModelOutput<Real> forward(Tape<Real>& tape, const Tensor<std::int64_t>& input_ids,
                            const Tensor<std::int64_t>& attention_mask = {},
                            KvCache<Real>* cache = nullptr,
                            const Tensor<std::int64_t>& position_ids = {}) {
    const Var<Real> hidden =
        transformer.forward(tape, input_ids, attention_mask, cache, position_ids);
    return {lm_head(tape, hidden), hidden};
  }
  ModelOutput<Real> forward(Tape<Real>& tape, const ModelInputs<Real>& in) {
    return forward(tape, in.input_ids, in.attention_mask);
  }
  // HF's causal-LM loss of the logits; labels in.labels, or causal_lm_labels(ids, mask) if empty.
  Var<Real> loss(Tape<Real>& tape, const ModelOutput<Real>& out, const ModelInputs<Real>& in) {
    return causal_lm_loss(tape, out.logits,
                          in.labels.empty() ? causal_lm_labels(in.input_ids, in.attention_mask)
                                            : in.labels);
  }
  // logits = hidden · wteᵀ: (..., C) -> (..., V). Generation applies it to the last position only.
  Var<Real> lm_head(Tape<Real>& tape, const Var<Real>& hidden) const {
    return ops::linear(tape, hidden, transformer.wte.weight);
  }
  // The LM loss from the hidden states: cross_entropy(lm_head(hidden), targets, options), computed
  // by ops::linear_cross_entropy in chunks of rows, so the (B·T, V) logits and their gradient are
  // never in memory whole and rows with target ignore_index cost nothing. Training uses this.
  //   hidden: (B, T, C)   targets: (B·T), e.g. causal_lm_targets(labels)   ->   scalar
  Var<Real> lm_loss(Tape<Real>& tape, const Var<Real>& hidden,
                    std::span<const std::int64_t> targets,
                    const ops::CrossEntropyOptions& options = {}) const {
    return ops::linear_cross_entropy(tape, hidden, transformer.wte.weight, Var<Real>(), targets,
                                     options);
  }

  static void validate(const io::Gpt2Config& c) {
    check(c.n_embd > 0 && c.n_head > 0 && c.n_embd % c.n_head == 0,
          "GPT2LMHeadModel: n_embd = ", c.n_embd,
          " must be a positive multiple of n_head = ", c.n_head);
    check(c.tie_word_embeddings,
          "GPT2LMHeadModel: tie_word_embeddings = false (a separate lm_head) ",
          "is not supported; GPT-2's LM head is its token embedding");
    (void)parse_activation(c.activation_function, "activation_function");
  }
  // HF's _init_weights: Linear / Embedding weights N(0, initializer_range), biases 0, LayerNorm
  // 1 / 0, and the residual projections (attn.c_proj, mlp.c_proj) N(0, range / sqrt(2 n_layer)).
  void init_module(const std::string& name, nn::Module<Real>& module, Rng& init_rng) {
    const double std = config.initializer_range;
    const bool residual_projection = name.ends_with(".c_proj");
    init_standard_layer(module, init_rng,
                        residual_projection
                            ? std / std::sqrt(2.0 * static_cast<double>(config.n_layer))
                            : std);
  }
  // Keys: `transformer.*` (or the old layout without the prefix); the causal-mask buffers of old
  // files and a stored copy of the tied lm_head are dropped. save_pretrained writes no
  // lm_head.weight.
  CheckpointLayout checkpoint_layout() const {
    return {.base = "transformer",
            .ignored = {"*.attn.bias", "*.attn.masked_bias", "lm_head.weight"},
            .head = {}};
  }
};

}  // namespace fourierft::models
