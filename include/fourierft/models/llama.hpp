// fourierft/models/llama.hpp — the LLaMA family of decoders as Hugging Face defines them (Llama 2/3,
// TinyLlama, SmolLM, Mistral, Qwen2, Qwen3): one class, members named like HF's keys, KV-cache decoding.
#pragma once

// The architecture (transformers' modeling_llama.py, _mistral.py, _qwen2.py, _qwen3.py), ids (B, T):
//   h = embed_tokens[ids]
//   per layer:  a = input_layernorm(h)                                   RMSNorm, rms_norm_eps
//               q, k, v = q_proj(a), k_proj(a), v_proj(a)                (B, T, NH·HS), (B, T, KV·HS)
//               [qwen3: q, k = q_norm(q), k_norm(k), RMSNorm over each head's HS values]
//               q, k = rope(q), rope(k)             rotate-half RoPE at position_ids (ops/rotary.hpp)
//               h = h + o_proj(attention(q, k, v))  causal + padding masks, GQA: kv head g serves
//                                                   query heads g·NH/KV .. (g+1)·NH/KV - 1;
//                                                   optional sliding window (mistral, qwen2)
//               h = h + down_proj(silu(gate_proj(m)) · up_proj(m)),  m = post_attention_layernorm(h)
//   last_hidden_state = norm(h);   logits = lm_head(last_hidden_state)  (or h · embed_tokensᵀ, tied)
// Every projection is nn.Linear (weight (out, in)). What differs between the model types (biases,
// q/k norm, which layers slide) is read from the config (io::LlamaConfig). Positions: position_ids
// when given (HF's generate passes cumsum(mask) - 1, 1 on pads), else past_length + 0..T-1.
// Padded queries (left padding) see no key and output zeros; HF's are finite but meaningless.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/recompute.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/hf_config.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/models/checkpoint.hpp"
#include "fourierft/models/common.hpp"
#include "fourierft/models/gpt2.hpp"  // causal_lm_labels, causal_lm_targets, causal_lm_loss
#include "fourierft/models/kv_cache.hpp"
#include "fourierft/models/pretrained.hpp"
#include "fourierft/nn/embedding.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/nn/rms_norm.hpp"
#include "fourierft/ops/attention.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/indexing.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/ops/linear_cross_entropy.hpp"
#include "fourierft/ops/rotary.hpp"
#include "fourierft/ops/shape.hpp"

namespace fourierft::models {

// ---------------------------------------------------------------------------
// model.layers.{i}.self_attn: q, k, v, o projections, [q_norm, k_norm], RoPE, grouped-query attention.
template <class Real>
class LlamaAttention : public nn::Module<Real> {
 public:
  nn::Linear<Real> q_proj;  // (NH·HS, C)
  nn::Linear<Real> k_proj;  // (KV·HS, C)
  nn::Linear<Real> v_proj;  // (KV·HS, C)
  nn::Linear<Real> o_proj;  // (C, NH·HS)
  std::unique_ptr<nn::RMSNorm<Real>> q_norm, k_norm;  // qwen3: (HS) each; null otherwise

  LlamaAttention(const io::LlamaConfig& config, Index layer_idx, Rng& rng)
      : q_proj(config.hidden_size, config.q_width(), rng, config.qkv_bias()),
        k_proj(config.hidden_size, config.kv_width(), rng, config.qkv_bias()),
        v_proj(config.hidden_size, config.kv_width(), rng, config.qkv_bias()),
        o_proj(config.q_width(), config.hidden_size, rng, config.o_bias()),
        num_heads_(config.num_attention_heads),
        num_kv_heads_(config.kv_heads()),
        head_dim_(config.head_size()),
        window_(config.window_of_layer(layer_idx)),
        layer_idx_(layer_idx) {
    this->register_module("q_proj", q_proj);
    this->register_module("k_proj", k_proj);
    this->register_module("v_proj", v_proj);
    this->register_module("o_proj", o_proj);
    if (config.qk_norm()) {
      q_norm = std::make_unique<nn::RMSNorm<Real>>(head_dim_, config.rms_norm_eps);
      k_norm = std::make_unique<nn::RMSNorm<Real>>(head_dim_, config.rms_norm_eps);
      this->register_module("q_norm", *q_norm);
      this->register_module("k_norm", *k_norm);
    }
  }

  // x: (B, T, C); key_mask: (B, T_past + T) or empty (no padding); cache: null, or one whose last
  // append opened these T positions (LlamaModel::forward does it); rope: the (B·T) rows' angles.
  //   -> (B, T, C)
  // RoPE rotates the projections' outputs in place. A single new token without gradients
  // (decoding) takes ops::step_attention_forward on the cache in place; with a cache otherwise, the
  // cached keys are gathered and concatenated with the new ones.
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x, const Tensor<std::int64_t>& key_mask,
                    KvCache<Real>* cache, const ops::RotaryTable<Real>& rope) const {
    const Index B = x.size(0), T = x.size(1), NH = num_heads_, KV = num_kv_heads_, HS = head_dim_;
    Var<Real> q = q_proj.forward(tape, x);  // (B, T, NH·HS)
    Var<Real> k = k_proj.forward(tape, x);  // (B, T, KV·HS)
    const Var<Real> v = v_proj.forward(tape, x);
    if (q_norm) {  // over each head's HS values
      q = ops::reshape(tape, q_norm->forward(tape, ops::reshape(tape, q, {B, T, NH, HS})),
                       {B, T, NH * HS});
      k = ops::reshape(tape, k_norm->forward(tape, ops::reshape(tape, k, {B, T, KV, HS})),
                       {B, T, KV * HS});
    }
    q = ops::rotary_inplace(tape, q, rope);
    k = ops::rotary_inplace(tape, k, rope);

    ops::AttentionOptions options;
    options.causal = true;
    options.num_kv_heads = KV;
    options.sliding_window = window_;
    if (!key_mask.empty()) options.key_padding_mask = key_mask.data();
    if (cache != nullptr) cache->store(layer_idx_, k.value().ptr(), v.value().ptr(), KV * HS);
    Var<Real> y;
    if (cache != nullptr && T == 1 && !q.requires_grad() && !k.requires_grad() &&
        !v.requires_grad()) {  // decoding
      Tensor<Real> out({B, 1, NH * HS});
      ops::step_attention_forward<Real>(out.data(), q.value().data(), NH * HS,
                                        cache->layer_view(layer_idx_), NH, HS,
                                        static_cast<Real>(1.0 / std::sqrt(double(HS))),
                                        window_.value_or(0));
      y = Var<Real>(out);
    } else {
      Var<Real> keys = k, values = v;
      const Index past = cache != nullptr ? cache->length() - T : 0;
      if (past > 0) {
        keys = ops::concat(tape, {Var<Real>(cache->past_keys(layer_idx_, past)), k}, 1);
        values = ops::concat(tape, {Var<Real>(cache->past_values(layer_idx_, past)), v}, 1);
      }
      y = ops::attention(tape, q, keys, values, NH, options);
    }
    return o_proj.forward(tape, y);
  }

  std::optional<Index> sliding_window() const { return window_; }

 private:
  Index num_heads_, num_kv_heads_, head_dim_;
  std::optional<Index> window_;  // this layer's sliding window (none: full causal attention)
  Index layer_idx_;              // its layer in a KvCache
};

// model.layers.{i}.mlp: down_proj(silu(gate_proj(x)) · up_proj(x)) (SwiGLU).
template <class Real>
class LlamaMLP : public nn::Module<Real> {
 public:
  nn::Linear<Real> gate_proj, up_proj;  // (I, C)
  nn::Linear<Real> down_proj;           // (C, I)

  LlamaMLP(const io::LlamaConfig& config, Rng& rng)
      : gate_proj(config.hidden_size, config.intermediate_size, rng, config.mlp_bias),
        up_proj(config.hidden_size, config.intermediate_size, rng, config.mlp_bias),
        down_proj(config.intermediate_size, config.hidden_size, rng, config.mlp_bias) {
    this->register_module("gate_proj", gate_proj);
    this->register_module("up_proj", up_proj);
    this->register_module("down_proj", down_proj);
  }
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x) const {
    return down_proj.forward(
        tape, ops::swiglu(tape, gate_proj.forward(tape, x), up_proj.forward(tape, x)));
  }
};

// model.layers.{i}: pre-norm residual block (HF's registration order: self_attn, mlp, norms).
template <class Real>
class LlamaDecoderLayer : public nn::Module<Real> {
 public:
  LlamaAttention<Real> self_attn;
  LlamaMLP<Real> mlp;
  nn::RMSNorm<Real> input_layernorm, post_attention_layernorm;

  LlamaDecoderLayer(const io::LlamaConfig& config, Index layer_idx, Rng& rng)
      : self_attn(config, layer_idx, rng),
        mlp(config, rng),
        input_layernorm(config.hidden_size, config.rms_norm_eps),
        post_attention_layernorm(config.hidden_size, config.rms_norm_eps) {
    this->register_module("self_attn", self_attn);
    this->register_module("mlp", mlp);
    this->register_module("input_layernorm", input_layernorm);
    this->register_module("post_attention_layernorm", post_attention_layernorm);
  }
  // h: (B, T, C); key_mask, cache, rope as LlamaAttention::forward.   -> (B, T, C)
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& h, const Tensor<std::int64_t>& key_mask,
                    KvCache<Real>* cache, const ops::RotaryTable<Real>& rope) const {
    const Var<Real> a = ops::add(
        tape, h, self_attn.forward(tape, input_layernorm.forward(tape, h), key_mask, cache, rope));
    return ops::add(tape, a, mlp.forward(tape, post_attention_layernorm.forward(tape, a)));
  }
};

// ---------------------------------------------------------------------------
// `model`: LlamaModel, ids -> hidden states after the final norm.
template <class Real>
class LlamaModel : public nn::Module<Real> {
 public:
  nn::Embedding<Real> embed_tokens;  // (V, C); padding_idx = pad_token_id (no gradient), as HF
  nn::ModuleList<LlamaDecoderLayer<Real>> layers;
  nn::RMSNorm<Real> norm;

  LlamaModel(const io::LlamaConfig& config, Rng& rng)
      : embed_tokens(config.vocab_size, config.hidden_size, padding_row(config)),
        norm(config.hidden_size, config.rms_norm_eps),
        config_(config) {
    this->register_module("embed_tokens", embed_tokens);
    for (Index i = 0; i < config.num_hidden_layers; ++i) layers.emplace_back(config, i, rng);
    this->register_module("layers", layers);
    this->register_module("norm", norm);
    if (config.rope_scaling.type != ops::RopeScalingType::dynamic)
      inv_freq_ = ops::rope_inv_freq(config.head_size(), config.rope_theta, config.rope_scaling,
                                     config.max_position_embeddings, 0);
  }

  // Activation checkpointing: with gradients recorded and no cache, each decoder layer runs inside
  // fourierft::recompute (its activations are rebuilt in backward instead of kept).
  void set_gradient_checkpointing(bool on) { checkpointing_ = on; }
  bool gradient_checkpointing() const { return checkpointing_; }

  // input_ids: (B, T); attention_mask: (B, T) of 1 / 0, or empty (no padding); cache: null, or
  // extended in place by these T positions (its mask included); position_ids: (B, T), or empty for
  // past_length + 0..T-1 (HF's default). hidden_states (if given) receives HF's
  // output_hidden_states: the embeddings, each layer's output, and (last) the normed output.
  //   -> (B, T, C)
  Var<Real> forward(Tape<Real>& tape, const Tensor<std::int64_t>& input_ids,
                    const Tensor<std::int64_t>& attention_mask = {}, KvCache<Real>* cache = nullptr,
                    const Tensor<std::int64_t>& position_ids = {},
                    std::vector<Var<Real>>* hidden_states = nullptr) {
    const DecoderInputs in =
        decoder_inputs("LlamaModel.forward", input_ids, attention_mask, cache, position_ids);
    const Tensor<std::int64_t>& mask = in.mask;
    const Tensor<std::int64_t>& positions = in.positions;
    const std::int64_t max_position = in.max_position;
    // Dynamic NTK scaling: HF recomputes the frequencies from max(position_ids) + 1 of the call.
    const std::vector<float> inv_freq =
        config_.rope_scaling.type == ops::RopeScalingType::dynamic
            ? ops::rope_inv_freq(config_.head_size(), config_.rope_theta, config_.rope_scaling,
                                 config_.max_position_embeddings, max_position + 1)
            : inv_freq_;
    const ops::RotaryTable<Real> rope = ops::rotary_table<Real>(positions.data(), inv_freq);

    // The key-padding mask covers the cached keys too: (B, past + T).
    Tensor<std::int64_t> key_mask = mask;
    if (cache != nullptr) {
      cache->append(mask, static_cast<Index>(layers.size()), config_.kv_width());
      key_mask = cache->key_padding_mask();
    }
    if (!has_padding(key_mask)) key_mask = Tensor<std::int64_t>();  // none: the fast path

    Var<Real> x = embed_tokens.forward(tape, input_ids);
    if (hidden_states != nullptr) hidden_states->push_back(x);
    const bool recompute_layers = checkpointing_ && cache == nullptr && tape.grad_enabled();
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const LlamaDecoderLayer<Real>* layer = &layers[i];
      if (recompute_layers)  // the block may run again in backward: it holds its inputs by value
        x = recompute(tape, x, [layer, key_mask, rope](Tape<Real>& t, const Var<Real>& h) {
          return layer->forward(t, h, key_mask, nullptr, rope);
        });
      else
        x = layer->forward(tape, x, key_mask, cache, rope);
      if (hidden_states != nullptr && i + 1 < layers.size()) hidden_states->push_back(x);
    }
    x = norm.forward(tape, x);
    if (hidden_states != nullptr) hidden_states->push_back(x);
    return x;
  }

 private:
  static std::optional<Index> padding_row(const io::LlamaConfig& config) {
    if (config.pad_token_id && *config.pad_token_id >= 0 && *config.pad_token_id < config.vocab_size)
      return config.pad_token_id;
    return std::nullopt;
  }
  io::LlamaConfig config_;
  std::vector<float> inv_freq_;  // fixed frequencies (all scaling types but dynamic)
  bool checkpointing_ = false;
};

// ---------------------------------------------------------------------------
// LlamaForCausalLM (and, by its Config, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM):
// `model` plus `lm_head` (V, C), a parameter of its own unless tie_word_embeddings, in which case
// the head is model.embed_tokens.weight (no lm_head.weight key, as HF's files omit it).
// Any of the four config.json model_types loads into any Config: the file's model_type decides
// the layout (biases, q/k norm, sliding window); Config only names the registry entry and the
// class a fresh config starts from. save_pretrained writes the architecture of the model_type.
template <class Real, class Config = io::LlamaConfig>
class LlamaForCausalLM
    : public PretrainedModel<LlamaForCausalLM<Real, Config>, Config, Real> {
  using Base = PretrainedModel<LlamaForCausalLM<Real, Config>, Config, Real>;

 public:
  static constexpr std::string_view architecture = Config::architecture;
  static constexpr Task task = Task::causal_lm;
  static constexpr InputKind inputs = InputKind::tokens;
  using Base::config;
  using Base::rng;
  LlamaModel<Real> model;
  std::unique_ptr<nn::Linear<Real>> lm_head;  // (V, C), no bias; null when tied

  explicit LlamaForCausalLM(const Config& cfg, std::uint64_t seed = 0,
                            WeightInit init = WeightInit::hf)
      : Base(cfg, seed), model(config, rng) {
    this->register_module("model", model);
    if (!config.tie_word_embeddings) {
      lm_head = std::make_unique<nn::Linear<Real>>(config.hidden_size, config.vocab_size, rng,
                                                   false);
      this->register_module("lm_head", *lm_head);
    }
    this->finish_init(init);
  }

  void set_gradient_checkpointing(bool on) { model.set_gradient_checkpointing(on); }

  // logits (B, T, V) and last_hidden_state (B, T, C). Arguments as LlamaModel::forward.
  ModelOutput<Real> forward(Tape<Real>& tape, const Tensor<std::int64_t>& input_ids,
                            const Tensor<std::int64_t>& attention_mask = {},
                            KvCache<Real>* cache = nullptr,
                            const Tensor<std::int64_t>& position_ids = {},
                            std::vector<Var<Real>>* hidden_states = nullptr) {
    const Var<Real> hidden =
        model.forward(tape, input_ids, attention_mask, cache, position_ids, hidden_states);
    return {head(tape, hidden), hidden};
  }
  ModelOutput<Real> forward(Tape<Real>& tape, const ModelInputs<Real>& in) {
    return forward(tape, in.input_ids, in.attention_mask, nullptr, in.position_ids);
  }
  // HF's causal-LM loss of the logits; labels in.labels, or causal_lm_labels(ids, mask) if empty.
  Var<Real> loss(Tape<Real>& tape, const ModelOutput<Real>& out, const ModelInputs<Real>& in) {
    return causal_lm_loss(tape, out, in);
  }
  // Generation's call (LmDecoder): the logits of the last position only, (B, V). Arguments as
  // LlamaModel::forward; with a cache, T = 1 is one incremental step.
  Var<Real> last_token_logits(Tape<Real>& tape, const Tensor<std::int64_t>& input_ids,
                              const Tensor<std::int64_t>& attention_mask, KvCache<Real>* cache,
                              const Tensor<std::int64_t>& position_ids) {
    const Var<Real> hidden = model.forward(tape, input_ids, attention_mask, cache, position_ids);
    return head(tape, ops::select(tape, hidden, 1, -1));
  }
  // RoPE has no position table: generation is not capped by max_position_embeddings (HF's neither;
  // quality beyond it is the model's business, dynamic scaling exists for it).
  static constexpr std::string_view max_positions_key = "max_position_embeddings (RoPE: no limit)";
  Index max_positions() const { return std::numeric_limits<Index>::max() / 4; }

  // logits = hidden · lm_headᵀ (through its adapter, if one is attached), or · embed_tokensᵀ when
  // tied: (..., C) -> (..., V).
  Var<Real> head(Tape<Real>& tape, const Var<Real>& hidden) const {
    return lm_head ? lm_head->forward(tape, hidden)
                   : ops::linear(tape, hidden, model.embed_tokens.weight);
  }
  // The LM loss from the hidden states, cross_entropy(head(hidden), targets, options), by
  // ops::linear_cross_entropy in chunks of rows (the (B·T, V) logits never whole in memory).
  //   hidden: (B, T, C)   targets: (B·T), e.g. causal_lm_targets(labels)   ->   scalar
  Var<Real> lm_loss(Tape<Real>& tape, const Var<Real>& hidden,
                    std::span<const std::int64_t> targets,
                    const ops::CrossEntropyOptions& options = {}) const {
    // An adapted head, or one held in BF16 / F16 (its GEMM converts tiles): its own forward.
    if (lm_head && (!lm_head->adapters().empty() || lm_head->half_precision()))
      return ops::cross_entropy(tape, head(tape, hidden), targets, options);
    return ops::linear_cross_entropy(tape, hidden,
                                     lm_head ? lm_head->weight : model.embed_tokens.weight,
                                     Var<Real>(), targets, options);
  }

  // The architecture HF names for the config's model_type (config.json's architectures).
  static std::string_view architecture_of(const io::LlamaConfig& c) {
    if (c.model_type == "mistral") return io::MistralConfig::architecture;
    if (c.model_type == "qwen2") return io::Qwen2Config::architecture;
    if (c.model_type == "qwen3") return io::Qwen3Config::architecture;
    return io::LlamaConfig::architecture;
  }
  // As PretrainedModel::save_pretrained, with the architecture of the model_type.
  void save_pretrained(const std::filesystem::path& dir, io::Dtype dtype = io::Dtype::F32) const {
    Config c = config;
    c.architectures = {std::string(architecture_of(c))};
    c.torch_dtype = torch_dtype_name(dtype);
    save_checkpoint(*this, to_json(c), dir, dtype);
  }

  // The config checks of parse_llama_config, for configs built in code (errors name the field).
  static void validate(const io::LlamaConfig& c) {
    const char* m = "LlamaForCausalLM";
    check(c.model_type == "llama" || c.model_type == "mistral" || c.model_type == "qwen2" ||
              c.model_type == "qwen3",
          m, ": model_type '", c.model_type, "' is not one of llama, mistral, qwen2, qwen3");
    check(c.vocab_size > 0 && c.hidden_size > 0 && c.intermediate_size > 0 &&
              c.num_hidden_layers > 0 && c.num_attention_heads > 0,
          m, ": vocab_size, hidden_size, intermediate_size, num_hidden_layers and ",
          "num_attention_heads must be positive");
    check(c.head_dim || c.hidden_size % c.num_attention_heads == 0, m, ": hidden_size = ",
          c.hidden_size, " is not a multiple of num_attention_heads = ", c.num_attention_heads,
          " (and head_dim is not given)");
    check(c.kv_heads() > 0 && c.num_attention_heads % c.kv_heads() == 0, m,
          ": num_key_value_heads = ", c.kv_heads(), " must divide num_attention_heads = ",
          c.num_attention_heads);
    check(c.head_size() > 0 && c.head_size() % 2 == 0, m, ": the head dimension ", c.head_size(),
          " must be positive and even (rotary embeddings)");
    check(c.hidden_act == "silu", m, ": hidden_act = '", c.hidden_act,
          "' is not supported (the LLaMA family's MLP uses silu)");
    check(c.attention_dropout == 0.0, m, ": attention_dropout = ", c.attention_dropout,
          " is not implemented (every released checkpoint uses 0)");
    check(c.layer_types.empty() || static_cast<Index>(c.layer_types.size()) == c.num_hidden_layers,
          m, ": layer_types has ", c.layer_types.size(), " entries for num_hidden_layers = ",
          c.num_hidden_layers);
  }
  // HF's _init_weights: Linear and Embedding weights N(0, initializer_range) (biases and the
  // padding row 0), RMSNorm weights 1.
  void init_module(const std::string&, nn::Module<Real>& module, Rng& init_rng) {
    if (auto* norm = dynamic_cast<nn::RMSNorm<Real>*>(&module))
      norm->weight.value().fill(Real(1));
    else
      init_standard_layer(module, init_rng, config.initializer_range);
  }
  // Keys `model.*` (or a bare LlamaModel file without the prefix); old files' rotary inv_freq
  // buffers and a stored copy of a tied lm_head are dropped.
  CheckpointLayout checkpoint_layout() const {
    CheckpointLayout layout{.base = "model", .ignored = {"*.rotary_emb.inv_freq"}, .head = {}};
    if (config.tie_word_embeddings) layout.ignored.push_back("lm_head.weight");
    layout.initializer_range = config.initializer_range;
    return layout;
  }
};

template <class Real>
using MistralForCausalLM = LlamaForCausalLM<Real, io::MistralConfig>;
template <class Real>
using Qwen2ForCausalLM = LlamaForCausalLM<Real, io::Qwen2Config>;
template <class Real>
using Qwen3ForCausalLM = LlamaForCausalLM<Real, io::Qwen3Config>;

}  // namespace fourierft::models
