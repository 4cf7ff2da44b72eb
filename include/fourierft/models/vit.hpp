// fourierft/models/vit.hpp — ViTForImageClassification as Hugging Face defines it (members named
// like its keys): patch embedding, CLS token, pre-LN encoder, classifier on the CLS token.
#pragma once

// The architecture (transformers' modeling_vit.py), for pixel_values (B, 3, S, S), S = image_size:
//   patches: P x P tiles in row-major order (NP = (S/P)^2), each flattened as (channel, row, col)
//   x = [cls_token; projection(patches)] + position_embeddings          (B, NP + 1, C)
//   per layer (pre-LN):  x = x + attention.output.dense(self-attention(layernorm_before(x)))
//                        x = x + output.dense(gelu(intermediate.dense(layernorm_after(x))))
//   last_hidden_state = layernorm(x);   logits = classifier(last_hidden_state[:, 0])
// The projection is a Conv2d with kernel = stride = P; the parameter keeps the conv's HF shape
// (C, 3, P, P) and is applied as a linear map on the unfolded patches, viewed as (C, 3·P·P).
// Image resizing and normalisation are the processor's job (preprocessor_config.json), not the
// model's. eps is config.layer_norm_eps (1e-12); dropout acts in training mode only.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
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
#include "fourierft/nn/layer_norm.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/ops/attention.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/indexing.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/ops/shape.hpp"

namespace fourierft::models {

// ---------------------------------------------------------------------------
// patchify: the P x P tiles of images as rows, the order Conv2d(kernel = stride = P) reads them in.
//   pixels: (B, Ch, H, W)  ->  patches: (B, NP, Ch·P·P),  NP = (H/P)·(W/P)
//   patches[b, py·(W/P) + px, (c·P + ky)·P + kx] = pixels[b, c, py·P + ky, px·P + kx]
// The images are data, not parameters: nothing is recorded on a tape.
template <class Real>
Tensor<Real> patchify(const Tensor<Real>& pixels, Index P) {
  const Index B = pixels.size(0), Ch = pixels.size(1), H = pixels.size(2), W = pixels.size(3);
  const Index GH = H / P, GW = W / P, D = Ch * P * P;
  Tensor<Real> out({B, GH * GW, D});
#pragma omp parallel for collapse(2) if (B * GH * GW * D > 65536)
  for (Index b = 0; b < B; ++b)
    for (Index py = 0; py < GH; ++py)
      for (Index px = 0; px < GW; ++px) {
        Real* row = out.ptr() + (b * GH * GW + py * GW + px) * D;
        for (Index c = 0; c < Ch; ++c)
          for (Index ky = 0; ky < P; ++ky) {
            const Real* src = pixels.ptr() + ((b * Ch + c) * H + py * P + ky) * W + px * P;
            std::copy_n(src, P, row + (c * P + ky) * P);
          }
      }
  return out;
}

// vit.embeddings.patch_embeddings.projection: Conv2d(Ch, C, kernel = stride = P) by its HF keys.
template <class Real>
class PatchProjection : public nn::Module<Real> {
 public:
  Var<Real> weight;  // (C, Ch, P, P), the conv's shape
  Var<Real> bias;    // (C)

  PatchProjection(Index Ch, Index C, Index P, Rng& rng) : patch_(P) {
    // torch's Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = Ch·P·P.
    const Real bound = Real(1) / std::sqrt(static_cast<Real>(Ch * P * P));
    weight = Var<Real>::parameter(uniform<Real>({C, Ch, P, P}, rng, -bound, bound));
    bias = Var<Real>::parameter(uniform<Real>({C}, rng, -bound, bound));
    this->register_parameter("weight", weight);
    this->register_parameter("bias", bias);
  }
  // pixels: (B, Ch, H, W) -> (B, NP, C): one linear map per patch, weight viewed as (C, Ch·P·P).
  Var<Real> forward(Tape<Real>& tape, const Tensor<Real>& pixels) const {
    const Index C = weight.size(0);
    const Var<Real> w = ops::reshape(tape, weight, {C, weight.numel() / C});
    return ops::linear(tape, Var<Real>(patchify(pixels, patch_)), w, bias);
  }

 private:
  Index patch_;
};

template <class Real>
class ViTPatchEmbeddings : public nn::Module<Real> {
 public:
  PatchProjection<Real> projection;
  ViTPatchEmbeddings(const io::VitConfig& c, Rng& rng)
      : projection(c.num_channels, c.hidden_size, c.patch_size, rng) {
    this->register_module("projection", projection);
  }
};

// vit.embeddings
template <class Real>
class ViTEmbeddings : public nn::Module<Real> {
 public:
  Var<Real> cls_token;            // (1, 1, C)
  Var<Real> position_embeddings;  // (1, NP + 1, C)
  ViTPatchEmbeddings<Real> patch_embeddings;
  nn::Dropout<Real> dropout;

  ViTEmbeddings(const io::VitConfig& c, Rng& rng)
      : patch_embeddings(c, rng), dropout(c.hidden_dropout_prob, rng.split()), config_(c) {
    cls_token = Var<Real>::parameter(Tensor<Real>({1, 1, c.hidden_size}));
    position_embeddings =
        Var<Real>::parameter(Tensor<Real>({1, c.num_patches() + 1, c.hidden_size}));
    this->register_parameter("cls_token", cls_token);
    this->register_parameter("position_embeddings", position_embeddings);
    this->register_module("patch_embeddings", patch_embeddings);
    this->register_module("dropout", dropout);
  }

  // pixel_values: (B, Ch, image_size, image_size) -> (B, NP + 1, C)
  Var<Real> forward(Tape<Real>& tape, const Tensor<Real>& pixel_values) {
    const Index S = config_.image_size, Ch = config_.num_channels, C = config_.hidden_size;
    check<ShapeError>(pixel_values.dim() == 4, "ViTModel.forward: pixel_values must be (B, ", Ch,
                      ", ", S, ", ", S, "), got shape ", shape_str(pixel_values.shape()));
    const Index B = pixel_values.size(0);
    check<ShapeError>(B > 0 && pixel_values.size(1) == Ch && pixel_values.size(2) == S &&
                          pixel_values.size(3) == S,
                      "ViTModel.forward: pixel_values has shape ", shape_str(pixel_values.shape()),
                      " but the model expects (B, ", Ch, ", ", S, ", ", S,
                      ") (num_channels, image_size); resize in the processor");
    const Var<Real> patches = patch_embeddings.projection.forward(tape, pixel_values);
    // CLS first: B copies of cls_token (its gradient sums them).
    const Var<Real> cls =
        ops::concat(tape, std::vector<Var<Real>>(static_cast<std::size_t>(B), cls_token), 0);
    Var<Real> x = ops::concat(tape, {cls, patches}, 1);
    const Index T = config_.num_patches() + 1;
    x = ops::add(tape, x, ops::reshape(tape, position_embeddings, {T, C}));
    return dropout.forward(tape, x);
  }

 private:
  io::VitConfig config_;
};

// encoder.layer.{i}.attention: attention (SelfAttention, qkv_bias), then output = dropout(dense(.))
template <class Real>
class ViTAttention : public nn::Module<Real> {
 public:
  SelfAttention<Real> attention;
  DenseOutput<Real> output;
  ViTAttention(const io::VitConfig& c, Rng& rng)
      : attention(c.hidden_size, c.num_attention_heads, c.attention_probs_dropout_prob, rng,
                  c.qkv_bias),
        output(c.hidden_size, c.hidden_size, c.hidden_dropout_prob, rng) {
    this->register_module("attention", attention);
    this->register_module("output", output);
  }
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x) {
    return output.forward(tape, attention.forward(tape, x));
  }
};

// encoder.layer.{i}
template <class Real>
class ViTLayer : public nn::Module<Real> {
 public:
  nn::LayerNorm<Real> layernorm_before;
  ViTAttention<Real> attention;
  nn::LayerNorm<Real> layernorm_after;
  Intermediate<Real> intermediate;
  DenseOutput<Real> output;  // dropout(dense(.)); the residual is added here (pre-LN)

  ViTLayer(const io::VitConfig& c, Rng& rng)
      : layernorm_before(c.hidden_size, c.layer_norm_eps),
        attention(c, rng),
        layernorm_after(c.hidden_size, c.layer_norm_eps),
        intermediate(c.hidden_size, c.intermediate_size, c.hidden_act, rng),
        output(c.intermediate_size, c.hidden_size, c.hidden_dropout_prob, rng) {
    this->register_module("layernorm_before", layernorm_before);
    this->register_module("attention", attention);
    this->register_module("layernorm_after", layernorm_after);
    this->register_module("intermediate", intermediate);
    this->register_module("output", output);
  }
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x) {
    const Var<Real> h =
        ops::add(tape, x, attention.forward(tape, layernorm_before.forward(tape, x)));
    return ops::add(
        tape, h,
        output.forward(tape, intermediate.forward(tape, layernorm_after.forward(tape, h))));
  }
};

template <class Real>
using ViTEncoder = Encoder<ViTLayer<Real>>;

// `vit`: ViTModel without the pooler (add_pooling_layer=False, as the classifier builds it).
template <class Real>
class ViTModel : public nn::Module<Real> {
 public:
  ViTEmbeddings<Real> embeddings;
  ViTEncoder<Real> encoder;
  nn::LayerNorm<Real> layernorm;

  ViTModel(const io::VitConfig& c, Rng& rng)
      : embeddings(c, rng), encoder(c, rng), layernorm(c.hidden_size, c.layer_norm_eps) {
    this->register_module("embeddings", embeddings);
    this->register_module("encoder", encoder);
    this->register_module("layernorm", layernorm);
  }
  // pixel_values: (B, Ch, S, S) -> (B, NP + 1, C) after the final layernorm
  Var<Real> forward(Tape<Real>& tape, const Tensor<Real>& pixel_values) {
    Var<Real> x = embeddings.forward(tape, pixel_values);
    for (auto& layer : encoder.layer) x = layer.forward(tape, x);
    return layernorm.forward(tape, x);
  }
};

// ---------------------------------------------------------------------------
template <class Real>
class ViTForImageClassification
    : public PretrainedModel<ViTForImageClassification<Real>, io::VitConfig, Real>,
      public ClassifierLosses<ViTForImageClassification<Real>, Real> {  // loss(...)
  using Base = PretrainedModel<ViTForImageClassification<Real>, io::VitConfig, Real>;

 public:
  static constexpr std::string_view architecture = "ViTForImageClassification";
  static constexpr Task task = Task::image_classification;
  static constexpr InputKind inputs = InputKind::pixels;
  using Base::config;
  using Base::rng;
  ViTModel<Real> vit;
  nn::Linear<Real> classifier;  // (num_labels, C)

  explicit ViTForImageClassification(const io::VitConfig& cfg, std::uint64_t seed = 0,
                                     WeightInit init = WeightInit::hf)
      : Base(cfg, seed), vit(config, rng), classifier(config.hidden_size, config.num_labels(), rng) {
    this->register_module("vit", vit);
    this->register_module("classifier", classifier);
    this->finish_init(init);
  }

  Index num_labels() const { return config.num_labels(); }

  // logits (B, num_labels) and last_hidden_state (B, NP + 1, C).
  ModelOutput<Real> forward(Tape<Real>& tape, const Tensor<Real>& pixel_values) {
    const Var<Real> hidden = vit.forward(tape, pixel_values);
    return {classifier.forward(tape, ops::select(tape, hidden, 1, 0)), hidden};
  }
  ModelOutput<Real> forward(Tape<Real>& tape, const ModelInputs<Real>& in) {
    return forward(tape, in.pixel_values);
  }

  static void validate(const io::VitConfig& c) {
    check(c.hidden_size % c.num_attention_heads == 0,
          "ViTForImageClassification: hidden_size = ", c.hidden_size,
          " must be a multiple of num_attention_heads = ", c.num_attention_heads);
    check(c.image_size % c.patch_size == 0,
          "ViTForImageClassification: image_size = ", c.image_size,
          " must be a multiple of patch_size = ", c.patch_size);
    (void)parse_activation(c.hidden_act, "hidden_act");
  }
  // HF's _init_weights: Linear and Conv2d weights, cls_token and position_embeddings from
  // trunc_normal(0, initializer_range); biases 0; LayerNorm 1 / 0. The embeddings module comes
  // before its patch projection in the walk, so cls_token and positions are drawn first.
  void init_module(const std::string&, nn::Module<Real>& module, Rng& init_rng) {
    const double std = config.initializer_range;
    if (auto* embeddings = dynamic_cast<ViTEmbeddings<Real>*>(&module)) {
      init_normal(embeddings->cls_token, init_rng, std, true);
      init_normal(embeddings->position_embeddings, init_rng, std, true);
    } else if (auto* projection = dynamic_cast<PatchProjection<Real>*>(&module)) {
      init_normal(projection->weight, init_rng, std, true);
      projection->bias.value().fill(Real(0));
    } else {
      init_standard_layer(module, init_rng, std, true);
    }
  }
  // Keys: `vit.*` + `classifier.*`. ImageNet-21k checkpoints (ViTModel: no classifier, a pooler)
  // get a fresh classifier, reported; their pooler is reported unused.
  CheckpointLayout checkpoint_layout() const {
    return {.base = "vit",
            .ignored = {},
            .head = {"classifier.*"},
            .initializer_range = config.initializer_range,
            .truncated_init = true};
  }
};

}  // namespace fourierft::models
