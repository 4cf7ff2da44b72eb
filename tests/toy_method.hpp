// tests/toy_method.hpp — the worked example of docs/architecture.md's "Adding a PEFT method": "scale",
// a learned per-output-channel scale on a frozen Linear, defined outside the library.
#pragma once

// y = (x·W0ᵀ)·(1 + s) + b,  s: (d_out) trainable, zeros at the start (so the adapted model starts
// as the pre-trained one). merge folds the scale into the weight, W0[p, :] *= 1 + s[p]; unmerge
// divides it back out. One header, one registration line (at the bottom).

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/peft/adapter.hpp"
#include "fourierft/peft/method.hpp"
#include "fourierft/peft/registry.hpp"
#include "fourierft/peft/targets.hpp"

namespace toy {

using namespace fourierft;

// ---------------------------------------------------------------------------
// scale_linear: a linear layer whose outputs are scaled per channel before the bias.
//   x: (N, d_in) (any leading dims)   W, b: as ops::linear   s: (d_out)
//   h = x·Wᵀ (N, d_out);   y = h·(1 + s) + b       (saves h)
// backward:  dh = dy·(1 + s);   dx += dh·W;   dW += dhᵀ·x (skipped when frozen)
//            ds += Σ_N dy·h;    db += Σ_N dy
template <class Real>
Var<Real> scale_linear(Tape<Real>& tape, const Var<Real>& x, const Var<Real>& w, const Var<Real>& b,
                       ops::WeightLayout layout, const Var<Real>& s) {
  const auto [d_in, d_out] = ops::linear_dims("scale_linear", x, w, b, layout);
  check<ShapeError>(s.shape() == Shape{d_out}, "scale_linear: s has shape ", shape_str(s.shape()),
                    " but the layer has ", d_out, " outputs");
  const Index N = x.numel() / d_in;
  Shape out_shape = x.shape();
  out_shape.back() = d_out;
  Tensor<Real> h({N, d_out});  // captured below: alive until tape.clear()
  ops::linear_forward<Real>(h.data(), x.data(), w.data(), {}, N, d_in, d_out, layout);
  Var<Real> y = tape.output_uninitialized(out_shape);
  const auto yd = y.data(), sd = s.data();
  const auto hd = std::span<const Real>(h.data());
  for (Index i = 0; i < N; ++i)
    for (Index p = 0; p < d_out; ++p)
      yd[i * d_out + p] = hd[i * d_out + p] * (Real(1) + sd[p]) + (b.defined() ? b.data()[p] : Real(0));
  tape.record("scale_linear", {x, w, b, s}, y, [=](std::span<const Real> dy) {
    const auto ds = grad_if_needed(s);
    const auto db = b.defined() ? grad_if_needed(b) : std::span<Real>();
    Tensor<Real> dh({N, d_out});
    for (Index i = 0; i < N; ++i)
      for (Index p = 0; p < d_out; ++p) {
        const Real g = dy[i * d_out + p];
        dh[i * d_out + p] = g * (Real(1) + s.data()[p]);
        if (!ds.empty()) ds[p] += g * h[i * d_out + p];
        if (!db.empty()) db[p] += g;
      }
    ops::linear_backward<Real>(grad_if_needed(x), grad_if_needed(w), {}, dh.data(), x.data(),
                               w.data(), N, d_in, d_out, layout);
  });
  return y;
}

// The adapter a target Linear carries: parameter `toy_scale` (d_out) beside its weight.
template <class Real>
class ScaleAdapter : public nn::LinearAdapter<Real> {
 public:
  Var<Real> toy_scale;  // s: (d_out)

  explicit ScaleAdapter(Index d_out) : toy_scale(Var<Real>::parameter(Tensor<Real>({d_out}))) {
    this->register_parameter("toy_scale", toy_scale);
  }
  Var<Real> forward(Tape<Real>& tape, const nn::Linear<Real>& base, const Var<Real>& x) override {
    return scale_linear(tape, x, base.weight, base.bias, base.layout(), toy_scale);
  }
  // W0[p, :] += s[p]·W0[p, :]   (ΔW = diag(s)·W0)
  void merge(nn::Linear<Real>& base) override {
    check(!this->merged_, "ScaleAdapter::merge: already merged");
    add_row_scaled(base, [](Real s) { return s; });
    this->merged_ = true;
  }
  // W[p, :] -= s[p]/(1 + s[p])·W[p, :]   (W = diag(1 + s)·W0, so this gives W0 back)
  void unmerge(nn::Linear<Real>& base) override {
    check(this->merged_, "ScaleAdapter::unmerge: not merged");
    add_row_scaled(base, [](Real s) { return -s / (Real(1) + s); });
    this->merged_ = false;
  }

 private:
  // W += diag(f(s))·W, through the shared layout-aware scatter (peft::add_delta_weight).
  template <class F>
  void add_row_scaled(nn::Linear<Real>& base, F f) {
    const Index d_out = base.d_out(), d_in = base.d_in();
    Tensor<Real> dW({d_out, d_in});
    for (Index p = 0; p < d_out; ++p)
      for (Index q = 0; q < d_in; ++q)
        dW[p * d_in + q] = f(toy_scale.value()[p]) * base.weight.value()[base.weight_index(p, q)];
    peft::add_delta_weight<Real>(base, dW.data(), d_out, 0, Real(1));
  }
};

struct ScaleMethod;

struct ScaleConfig {
  using Method = ScaleMethod;
  peft::TargetSpec target_modules;  // e.g. {{"query", "value"}}
};

// The method: the PeftMethod interface of peft/method.hpp.
struct ScaleMethod {
  using Config = ScaleConfig;
  static constexpr std::string_view name = "scale";
  static constexpr std::string_view peft_type = "TOY_SCALE";
  static constexpr bool attaches_adapters = true;

  template <class Real>
  static peft::AppliedAdapters apply(nn::Module<Real>& model, const Config& config,
                                     const std::vector<std::string>& modules_to_save, Rng&) {
    model.freeze_all();
    peft::AppliedAdapters applied;
    for (auto& [name, linear] : peft::find_target_linears(model, config.target_modules, "scale")) {
      linear->attach("", std::make_shared<ScaleAdapter<Real>>(linear->d_out()));
      applied.adapted.push_back(name);
    }
    peft::unfreeze_modules(model, modules_to_save);
    applied.params = peft::parameter_summary(model);
    return applied;
  }
  static void write_config(const Config& c, io::Json& j) {
    j["target_modules"] = peft::targets_json(c.target_modules);
  }
  static Config read_config(const io::JsonObject& c) { return {peft::targets_from_json(c)}; }
  template <class Real>
  static std::string describe(nn::Module<Real>& model, const Config&) {
    return str_cat("scale on ", peft::adapted_layers(model), " weights");
  }
};

inline const bool scale_method_registered = peft::register_method<ScaleMethod>();

}  // namespace toy
