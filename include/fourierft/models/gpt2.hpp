// fourierft/models/gpt2.hpp — GPT2LMHeadModel as Hugging Face defines it (members named like its
// keys), its incremental decoding against a KvCache, the causal-LM loss, loading and saving.
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
#include "fourierft/core/half.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/hf_config.hpp"
#include "fourierft/models/checkpoint.hpp"
#include "fourierft/models/common.hpp"
#include "fourierft/models/kv_cache.hpp"
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
        num_heads_(config.n_head),
        layer_idx_(layer_idx) {
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

  // x: (B, T, C); key_mask: (B, T_past + T) or empty (no padding); cache: null, or one whose last
  // append opened these T positions (GPT2Model::forward does it): the new keys and values are
  // stored in it, and the queries attend to all T_past + T.   -> (B, T, C)
  // A single new token without gradients (decoding) takes ops::step_attention_forward, reading the
  // cache in place; otherwise the cached keys are gathered and concatenated with the new ones.
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x, const Tensor<std::int64_t>& key_mask,
                    KvCache<Real>* cache) {
    const Index B = x.size(0), T = x.size(1), C = x.size(-1);
    const Var<Real> qkv = c_attn.forward(tape, x);  // (B, T, 3C)
    ops::AttentionOptions options;
    options.causal = true;
    options.scale = scale_;
    if (!key_mask.empty()) options.key_padding_mask = key_mask.data();
    const bool drop_probs = this->is_training() && attn_dropout.p != 0.0;
    if (cache != nullptr)
      cache->store(layer_idx_, qkv.value().ptr() + C, qkv.value().ptr() + 2 * C, 3 * C);
    Var<Real> y;
    if (cache == nullptr && !drop_probs) {
      y = ops::attention_packed_qkv(tape, qkv, num_heads_, options);  // reads q, k, v in place
    } else if (cache != nullptr && T == 1 && !drop_probs && !qkv.requires_grad()) {  // decoding
      Tensor<Real> out({B, 1, C});
      ops::step_attention_forward<Real>(out.data(), qkv.value().data(),
                                        cache->layer_view(layer_idx_), num_heads_,
                                        static_cast<Real>(scale_));
      y = Var<Real>(out);
    } else {  // a KV cache or dropout on the probabilities: q, k, v as tensors of their own
      Var<Real> q = ops::narrow(tape, qkv, -1, 0, C);
      Var<Real> k = ops::narrow(tape, qkv, -1, C, C);
      Var<Real> v = ops::narrow(tape, qkv, -1, 2 * C, C);
      const Index past = cache != nullptr ? cache->length() - T : 0;
      if (past > 0) {
        k = ops::concat(tape, {Var<Real>(cache->past_keys(layer_idx_, past)), k}, 1);
        v = ops::concat(tape, {Var<Real>(cache->past_values(layer_idx_, past)), v}, 1);
      }
      y = multi_head_attention(tape, q, k, v, num_heads_, options, attn_dropout);
    }
    return resid_dropout.forward(tape, c_proj.forward(tape, y));
  }

 private:
  Index num_heads_;
  Index layer_idx_;  // its layer in a KvCache
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
  // h: (B, T, C); key_mask, cache as GPT2Attention::forward.   -> (B, T, C)
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& h, const Tensor<std::int64_t>& key_mask,
                    KvCache<Real>* cache) {
    const Var<Real> a =
        ops::add(tape, h, attn.forward(tape, ln_1.forward(tape, h), key_mask, cache));
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

  // input_ids: (B, T); attention_mask: (B, T) of 1 / 0, or empty (no padding); cache: null, or
  // extended in place by these T positions (its mask included); position_ids: (B, T), or empty for
  // past_length + 0..T-1 (HF's default, also under left padding).   -> (B, T, C)
  Var<Real> forward(Tape<Real>& tape, const Tensor<std::int64_t>& input_ids,
                    const Tensor<std::int64_t>& attention_mask = {}, KvCache<Real>* cache = nullptr,
                    const Tensor<std::int64_t>& position_ids = {}) {
    const char* where = "GPT2Model.forward";
    const DecoderInputs in = decoder_inputs(where, input_ids, attention_mask, cache, position_ids);
    const Index T = in.length, past = in.past;
    const Tensor<std::int64_t>& mask = in.mask;
    const Tensor<std::int64_t>& positions = in.positions;
    for (std::int64_t p : positions.data())
      check<IndexError>(p >= 0 && p < wpe.num_embeddings(), where, ": position ", p,
                        " is beyond n_positions = ", wpe.num_embeddings(), " (past ", past, " + ",
                        T, " new tokens)");

    // The key-padding mask covers the cached keys too: (B, past + T).
    Tensor<std::int64_t> key_mask = mask;
    if (cache != nullptr) {
      cache->append(mask, static_cast<Index>(h.size()), wte.embedding_dim());
      key_mask = cache->key_padding_mask();
    }
    if (!has_padding(key_mask)) key_mask = Tensor<std::int64_t>();  // none: the fast path

    Var<Real> x = ops::add(tape, wte.forward(tape, input_ids), wpe.forward(tape, positions));
    x = drop.forward(tape, x);
    for (std::size_t i = 0; i < h.size(); ++i) x = h[i].forward(tape, x, key_mask, cache);
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

// A causal LM's loss(): labels in.labels, or causal_lm_labels(ids, mask) when empty.
template <class Real>
Var<Real> causal_lm_loss(Tape<Real>& tape, const ModelOutput<Real>& out,
                         const ModelInputs<Real>& in) {
  return causal_lm_loss(tape, out.logits,
                        in.labels.empty() ? causal_lm_labels(in.input_ids, in.attention_mask)
                                          : in.labels);
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
    return causal_lm_loss(tape, out, in);
  }
  // Generation's call (LmDecoder): the logits of the last position only, (B, V), not all T
  // positions. Arguments as GPT2Model::forward; with a cache, T = 1 is one incremental step.
  Var<Real> last_token_logits(Tape<Real>& tape, const Tensor<std::int64_t>& input_ids,
                              const Tensor<std::int64_t>& attention_mask, KvCache<Real>* cache,
                              const Tensor<std::int64_t>& position_ids) {
    const Var<Real> hidden =
        transformer.forward(tape, input_ids, attention_mask, cache, position_ids);
    return lm_head(tape, ops::select(tape, hidden, 1, -1));
  }
  // The longest sequence the position table holds (generate checks prompts against it).
  static constexpr std::string_view max_positions_key = "n_positions";
  Index max_positions() const { return config.n_positions; }
  // logits = hidden · wteᵀ: (..., C) -> (..., V) (BF16 operands with set_bf16_lm_head(true)).
  Var<Real> lm_head(Tape<Real>& tape, const Var<Real>& hidden) const {
    if (lm_head_bf16_.defined())
      return ops::half_linear(tape, hidden, lm_head_bf16_, Var<Real>(), ops::WeightLayout::out_in,
                              HalfCompute::bf16);
    return ops::linear(tape, hidden, transformer.wte.weight);
  }
  // The BF16 compute mode for the tied head, which nn::to_bf16_compute leaves in float (wte is
  // also the embedding table): on, a BF16 copy of the frozen wte feeds the head's GEMMs (logits
  // and dx, in lm_head and lm_loss); the embedding lookup keeps the FP32 table. Call after loading
  // and freezing: the copy is taken now. Off drops it.
  void set_bf16_lm_head(bool on) {
    if (!on) {
      lm_head_bf16_ = HalfMatrix();
      return;
    }
    const Var<Real>& w = transformer.wte.weight;
    check(!w.requires_grad(), "GPT2LMHeadModel::set_bf16_lm_head: transformer.wte.weight trains; ",
          "the BF16 head needs it frozen");
    lm_head_bf16_ = HalfMatrix::from_values<Real>(w.data(), w.size(0), w.size(1), io::Dtype::BF16);
  }
  bool bf16_lm_head() const { return lm_head_bf16_.defined(); }
  // The LM loss from the hidden states: cross_entropy(lm_head(hidden), targets, options), computed
  // by ops::linear_cross_entropy in chunks of rows, so the (B·T, V) logits and their gradient are
  // never in memory whole and rows with target ignore_index cost nothing. Training uses this.
  //   hidden: (B, T, C)   targets: (B·T), e.g. causal_lm_targets(labels)   ->   scalar
  Var<Real> lm_loss(Tape<Real>& tape, const Var<Real>& hidden,
                    std::span<const std::int64_t> targets,
                    const ops::CrossEntropyOptions& options = {}) const {
    return ops::linear_cross_entropy(tape, hidden, transformer.wte.weight, Var<Real>(), targets,
                                     options, 0, lm_head_bf16_.defined() ? &lm_head_bf16_ : nullptr);
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

 private:
  HalfMatrix lm_head_bf16_;  // set_bf16_lm_head: wte in BF16 (V, C), or undefined
};

}  // namespace fourierft::models
