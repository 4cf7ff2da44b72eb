// fourierft/nn/linear.hpp — Linear<Real>: a weight and an optional bias in nn.Linear's layout
// (d_out, d_in) or GPT-2 Conv1D's (d_in, d_out), plus the hook PEFT adapters attach to.
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/ops/linalg.hpp"

namespace fourierft::nn {

using ops::WeightLayout;

template <class Real>
class Linear;

// LinearAdapter: a module attached to a Linear that changes what it computes — how PEFT methods
// (FourierFT, LoRA) plug into a pre-trained model without touching the model's code. While an
// adapter is attached and not merged, Linear::forward(x) returns adapter.forward(tape, base, x):
// FourierFT computes x·(W0 + ΔW)ᵀ + b in one GEMM, LoRA base(x) + s·x·Aᵀ·Bᵀ. merge() folds the
// update into base.weight (then the layer is a plain Linear again); unmerge() takes it back out.
template <class Real>
class LinearAdapter : public Module<Real> {
 public:
  // x: (..., d_in) the layer's input  ->  (..., d_out) the adapted layer's output.
  virtual Var<Real> forward(Tape<Real>& tape, const Linear<Real>& base, const Var<Real>& x) = 0;
  virtual void merge(Linear<Real>& base) = 0;
  virtual void unmerge(Linear<Real>& base) = 0;
  bool merged() const { return merged_; }

 protected:
  bool merged_ = false;
};

// ---------------------------------------------------------------------------
// Linear: y = x·Wᵀ + b   (out_in, W: (d_out, d_in))   or   y = x·W + b   (in_out, W: (d_in, d_out)).
// Initialised like torch's nn.Linear: kaiming_uniform(a = √5) gives W ~ U(-1/√d_in, 1/√d_in), and
// b ~ U(-1/√d_in, 1/√d_in) — usually overwritten by a checkpoint anyway.
template <class Real>
class Linear : public Module<Real> {
 public:
  Var<Real> weight;  // (d_out, d_in), or (d_in, d_out) with WeightLayout::in_out
  Var<Real> bias;    // (d_out); undefined when built without bias

  Linear(Index d_in, Index d_out, Rng& rng, bool with_bias = true,
         WeightLayout layout = WeightLayout::out_in)
      : d_in_(d_in), d_out_(d_out), layout_(layout) {
    check(d_in > 0 && d_out > 0, "Linear: d_in and d_out must be positive, got ", d_in, " and ",
          d_out);
    const Real bound = Real(1) / std::sqrt(static_cast<Real>(d_in));
    const Shape shape = layout == WeightLayout::out_in ? Shape{d_out, d_in} : Shape{d_in, d_out};
    weight = Var<Real>::parameter(uniform<Real>(shape, rng, -bound, bound));
    this->register_parameter("weight", weight);
    if (with_bias) {
      bias = Var<Real>::parameter(uniform<Real>({d_out}, rng, -bound, bound));
      this->register_parameter("bias", bias);
    }
  }

  Index d_in() const { return d_in_; }
  Index d_out() const { return d_out_; }
  WeightLayout layout() const { return layout_; }
  bool has_bias() const { return bias.defined(); }
  // Where W[out, in] sits in weight's storage: out·d_in + in (out_in) or in·d_out + out (in_out).
  Index weight_index(Index out, Index in) const {
    return layout_ == WeightLayout::out_in ? out * d_in_ + in : in * d_out_ + out;
  }

  // x: (..., d_in) -> (..., d_out), through the attached adapter (if any, and not merged).
  Var<Real> forward(Tape<Real>& tape, const Var<Real>& x) const {
    for (const auto& [name, adapter] : adapters_)
      if (!adapter->merged()) return adapter->forward(tape, *this, x);
    return base_forward(tape, x);
  }
  // The pre-trained layer alone: x·Wᵀ + b.
  Var<Real> base_forward(Tape<Real>& tape, const Var<Real>& x) const {
    return ops::linear(tape, x, weight, bias, layout_);
  }

  // Attaches an adapter as child `name`; "" splices its parameters in beside `weight` (PEFT's key
  // names: `...query.fourierft_spectrum`). The layer shares ownership of the adapter.
  // One adapter per layer (attach another after detach()).
  LinearAdapter<Real>& attach(std::string name, std::shared_ptr<LinearAdapter<Real>> adapter) {
    check(adapter != nullptr, "Linear::attach: null adapter");
    check(adapters_.empty(), "Linear::attach: the layer already has an adapter; detach it first");
    this->register_module(name, *adapter);
    adapters_.emplace_back(std::move(name), std::move(adapter));
    return *adapters_.back().second;
  }
  // Detaches every adapter attached under `name`.
  void detach(std::string_view name) {
    for (auto it = adapters_.begin(); it != adapters_.end();) {
      if (it->first == name) {
        this->unregister_module(name, it->second.get());
        it = adapters_.erase(it);
      } else {
        ++it;
      }
    }
  }
  void detach_all() {
    while (!adapters_.empty()) detach(std::string(adapters_.front().first));
  }
  const std::vector<std::pair<std::string, std::shared_ptr<LinearAdapter<Real>>>>& adapters()
      const {
    return adapters_;
  }

 private:
  Index d_in_, d_out_;
  WeightLayout layout_;
  std::vector<std::pair<std::string, std::shared_ptr<LinearAdapter<Real>>>> adapters_;
};

}  // namespace fourierft::nn
