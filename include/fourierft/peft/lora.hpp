// fourierft/peft/lora.hpp — LoRA, the baseline FourierFT is compared with (low-rank
// ΔW = (α/r)·B·A), as an adapter on Linear layers and a method behind peft/method.hpp's interface.
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/random.hpp"
#include "fourierft/detail/gemm.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/peft/adapter.hpp"
#include "fourierft/peft/method.hpp"
#include "fourierft/peft/targets.hpp"

namespace fourierft::peft {

struct LoraMethod;

// Named as in PEFT's LoraConfig (adapter_config.json).
struct LoraConfig {
  using Method = LoraMethod;
  Index r = 8;
  double lora_alpha = 8;     // scaling = lora_alpha / r
  double lora_dropout = 0.0;
  TargetSpec target_modules;
  std::vector<std::string> modules_to_save;
  std::string bias = "none";  // "none" | "all" | "lora_only"
};

// ---------------------------------------------------------------------------
// lora_linear: a linear layer plus a LoRA update, fused (no (N, d_out) temporaries besides y).
//   x: (N, d_in) (any leading dims)   h: x or dropout(x), same shape   W, b: as ops::linear
//   A: (r, d_in)   B: (d_out, r)      s: lora_alpha / r
//   u = h·Aᵀ (N, r);   y = x·Wᵀ + b + s·u·Bᵀ   (the second GEMM adds into y: beta = 1)
// backward:  dx += dy·W;  dW, db as ops::linear (skipped when frozen);
//            du = s·dy·B (N, r);  dB += s·dyᵀ·u;  dA += duᵀ·h;  dh += du·A
// Unfused, base(x) + s·((h·Aᵀ)·Bᵀ) costs an add and a scale over (N, d_out) in each direction —
// on GPT-2's c_attn (d_out 2304) that was most of LoRA's overhead beyond its small GEMMs.
template <class Real>
Var<Real> lora_linear(Tape<Real>& tape, const Var<Real>& x, const Var<Real>& h, const Var<Real>& w,
                      const Var<Real>& b, ops::WeightLayout layout, const Var<Real>& lora_a,
                      const Var<Real>& lora_b, Real s) {
  const auto dims = ops::linear_dims("lora_linear", x, w, b, layout);  // (not a structured binding: lambdas capture these)
  const Index d_in = dims.first, d_out = dims.second;
  check<ShapeError>(h.shape() == x.shape(), "lora_linear: h has shape ", shape_str(h.shape()),
                    " but x has ", shape_str(x.shape()));
  check<ShapeError>(lora_a.dim() == 2 && lora_a.size(1) == d_in && lora_b.dim() == 2 &&
                        lora_b.size(0) == d_out && lora_b.size(1) == lora_a.size(0),
                    "lora_linear: A ", shape_str(lora_a.shape()), " and B ", shape_str(lora_b.shape()),
                    " do not fit a (", d_out, ", ", d_in, ") weight as (r, d_in) and (d_out, r)");
  const Index N = x.numel() / d_in, r = lora_a.size(0);
  Shape out_shape = x.shape();
  out_shape.back() = d_out;
  Var<Real> y = tape.output_uninitialized(out_shape);  // linear_forward writes all of y
  ops::linear_forward<Real>(y.data(), x.data(), w.data(),
                            b.defined() ? b.data() : std::span<const Real>(), N, d_in, d_out, layout);
  Tensor<Real> u({N, r});
  fourierft::detail::gemm<Real>(false, true, N, r, d_in, Real(1), h.data().data(), d_in,
                                lora_a.data().data(), d_in, Real(0), u.ptr(), r);
  fourierft::detail::gemm<Real>(false, true, N, d_out, r, s, u.ptr(), r, lora_b.data().data(), r,
                                Real(1), y.data().data(), d_out);
  tape.record("lora_linear", {x, h, w, b, lora_a, lora_b}, y, [=](std::span<const Real> dy) {
    bool dx_fresh = false;  // x's first gradient: written by the dx GEMM (h may be x: dh after)
    const std::span<Real> dx = grad_to_fill_if_needed(x, dx_fresh);
    ops::linear_backward<Real>(dx, grad_if_needed(w), b.defined() ? grad_if_needed(b) : std::span<Real>(),
                               dy, x.data(), w.data(), N, d_in, d_out, layout, !dx_fresh);
    const auto dB = grad_if_needed(lora_b), dA = grad_if_needed(lora_a), dh = grad_if_needed(h);
    if (!dB.empty())
      fourierft::detail::gemm<Real>(true, false, d_out, r, N, s, dy.data(), d_out, u.ptr(), r,
                                    Real(1), dB.data(), r);
    if (dA.empty() && dh.empty()) return;
    Tensor<Real> du({N, r});
    fourierft::detail::gemm<Real>(false, false, N, r, d_out, s, dy.data(), d_out,
                                  lora_b.data().data(), r, Real(0), du.ptr(), r);
    if (!dA.empty())
      fourierft::detail::gemm<Real>(true, false, r, d_in, N, Real(1), du.ptr(), r, h.data().data(),
                                    d_in, Real(1), dA.data(), d_in);
    if (!dh.empty())
      fourierft::detail::gemm<Real>(false, false, N, d_in, r, Real(1), du.ptr(), r,
                                    lora_a.data().data(), d_in, Real(1), dh.data(), d_in);
  });
  return y;
}

// ---------------------------------------------------------------------------
// LoraAdapter: on a frozen Linear (W0: (d_out, d_in) or Conv1D (d_in, d_out)),
//   y = x·W0ᵀ + b + s·(dropout(x)·Aᵀ)·Bᵀ,   A: (r, d_in),  B: (d_out, r),  s = lora_alpha / r
// A ~ kaiming_uniform(a = √5) = U(−1/√d_in, 1/√d_in), B = 0, so ΔW = s·B·A starts at zero.
// Parameters `lora_A.weight`, `lora_B.weight` as in PEFT's files. On a 16-bit frozen base
// (base.half_precision()) the base GEMM is base_forward's and the low-rank path runs beside it,
// unfused; merge rounds W0 + ΔW back to 16 bits (peft/adapter.hpp).
template <class Real>
class LoraAdapter : public nn::LinearAdapter<Real> {
 public:
  struct Factor : nn::Module<Real> {
    Var<Real> weight;
    explicit Factor(Tensor<Real> w) : weight(Var<Real>::parameter(std::move(w))) {
      this->register_parameter("weight", weight);
    }
  };

  LoraAdapter(Index d_in, Index d_out, Index r, Real lora_alpha, Real dropout, Rng& rng)
      : r_(r), scaling_(lora_alpha / Real(r)), dropout_(dropout), rng_(rng.split()),
        lora_A(uniform<Real>({r, d_in}, rng, -Real(1) / std::sqrt(Real(d_in)), Real(1) / std::sqrt(Real(d_in)))),
        lora_B(Tensor<Real>({d_out, r})) {
    check(r >= 1, "LoRA: rank r must be >= 1, got ", r);
    this->register_module("lora_A", lora_A);
    this->register_module("lora_B", lora_B);
  }

  Var<Real> forward(Tape<Real>& tape, const nn::Linear<Real>& base, const Var<Real>& x) override {
    Var<Real> h = ops::dropout(tape, x, dropout_, rng_, this->is_training());
    if (base.half_precision()) {  // frozen 16-bit base: its own GEMM, the low-rank path beside it
      Var<Real> u = ops::linear(tape, h, lora_A.weight);                  // (N, r)
      Var<Real> update = ops::scale(tape, ops::linear(tape, u, lora_B.weight), scaling_);
      return ops::add(tape, base.base_forward(tape, x), update);
    }
    return lora_linear(tape, x, h, base.weight, base.bias, base.layout(), lora_A.weight,
                       lora_B.weight, scaling_);
  }
  void merge(nn::Linear<Real>& base) override {
    check(!this->merged_, "LoraAdapter::merge: already merged");
    add_delta(base, scaling_);
    this->merged_ = true;
  }
  void unmerge(nn::Linear<Real>& base) override {
    check(this->merged_, "LoraAdapter::unmerge: not merged");
    add_delta(base, -scaling_);
    this->merged_ = false;
  }
  // ΔW = s·B·A: (d_out, d_in).
  Tensor<Real> delta_weight() const {
    const Index d_out = lora_B.weight.size(0), d_in = lora_A.weight.size(1);
    Tensor<Real> dW({d_out, d_in});
    fourierft::detail::gemm<Real>(false, false, d_out, d_in, r_, scaling_, lora_B.weight.data().data(), r_,
                                  lora_A.weight.data().data(), d_in, Real(0), dW.ptr(), d_in);
    return dW;
  }
  Real scaling() const { return scaling_; }

 private:
  void add_delta(nn::Linear<Real>& base, Real sign_scaling) {
    add_delta_weight<Real>(base, delta_weight().data(), base.d_out(), 0, sign_scaling / scaling_);
  }

  Index r_;
  Real scaling_, dropout_;
  Rng rng_;

 public:
  Factor lora_A, lora_B;
};

// Freezes the model, attaches a LoraAdapter to every target Linear, unfreezes modules_to_save and
// biases as `bias` says ("lora_only": the adapted layers' biases).
template <class Real>
AppliedAdapters apply_lora(nn::Module<Real>& model, const LoraConfig& config, Rng& rng) {
  check(config.bias == "none" || config.bias == "all" || config.bias == "lora_only",
        "apply_lora: bias must be 'none', 'all' or 'lora_only', got '", config.bias, "'");
  check(config.lora_dropout >= 0 && config.lora_dropout < 1, "apply_lora: lora_dropout = ",
        config.lora_dropout, " must be in [0, 1)");
  model.freeze_all();
  AppliedAdapters applied;
  for (auto& [name, linear] : find_target_linears(model, config.target_modules, "apply_lora")) {
    linear->attach("", std::make_shared<LoraAdapter<Real>>(linear->d_in(), linear->d_out(), config.r,
                                                           Real(config.lora_alpha),
                                                           Real(config.lora_dropout), rng));
    if (config.bias == "lora_only" && linear->has_bias()) linear->bias.set_requires_grad(true);
    applied.adapted.push_back(name);
  }
  if (config.bias == "all") unfreeze_biases(model);
  unfreeze_modules(model, config.modules_to_save);
  applied.params = parameter_summary(model);
  return applied;
}

// ---------------------------------------------------------------------------
// LoRA behind the PEFT method interface (peft/method.hpp).

struct LoraMethod {
  using Config = LoraConfig;
  static constexpr std::string_view name = "lora";
  static constexpr std::string_view peft_type = "LORA";
  static constexpr bool attaches_adapters = true;

  template <class Real>
  static AppliedAdapters apply(nn::Module<Real>& model, const Config& config,
                               const std::vector<std::string>& modules_to_save, Rng& rng) {
    Config c = config;
    c.modules_to_save = modules_to_save;
    return apply_lora(model, c, rng);
  }
  static void write_config(const Config& c, io::Json& j) {
    j.update({{"r", c.r}, {"lora_alpha", c.lora_alpha}, {"lora_dropout", c.lora_dropout},
              {"target_modules", targets_json(c.target_modules)}, {"bias", c.bias},
              {"init_lora_weights", true}, {"rank_pattern", io::Json::object()},
              {"alpha_pattern", io::Json::object()}, {"use_rslora", false}, {"use_dora", false}});
  }
  // Values are checked here, so an error names the file and the key (and a rank of 2^40 is
  // refused before LoRA's matrices are allocated).
  static Config read_config(const io::JsonObject& c) {
    Config l;
    l.r = c.get<Index>("r");
    check<FormatError>(l.r >= 1 && l.r <= 65536, c.source(), ": key 'r' should be in [1, 65536] ",
                       "but is ", l.r);
    l.lora_alpha = c.get_or<double>("lora_alpha", 8.0);
    check<FormatError>(std::isfinite(l.lora_alpha), c.source(),
                       ": key 'lora_alpha' should be a finite number but is ", l.lora_alpha);
    l.lora_dropout = c.get_or<double>("lora_dropout", 0.0);
    check<FormatError>(l.lora_dropout >= 0 && l.lora_dropout < 1, c.source(),
                       ": key 'lora_dropout' should be in [0, 1) but is ", l.lora_dropout);
    l.target_modules = targets_from_json(c);
    l.bias = c.get_or<std::string>("bias", "none");
    check<FormatError>(l.bias == "none" || l.bias == "all" || l.bias == "lora_only", c.source(),
                       ": key 'bias' should be \"none\", \"all\" or \"lora_only\" but is \"",
                       l.bias, "\"");
    return l;
  }
  // "LoRA on 24 weights, r = 8, alpha 8"
  template <class Real>
  static std::string describe(nn::Module<Real>& model, const Config& c) {
    return str_cat("LoRA on ", adapted_layers(model), " weights, r = ", c.r, ", alpha ",
                   c.lora_alpha);
  }
};

}  // namespace fourierft::peft
