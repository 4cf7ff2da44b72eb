// fourierft/nn/linear.hpp — Linear<Real>: a weight and an optional bias in nn.Linear's layout
// (d_out, d_in) or GPT-2 Conv1D's (d_in, d_out), plus the hook PEFT adapters attach to.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/half.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/dtype.hpp"
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
// HalfWeightsScope: while one is alive on this thread, every Linear built holds its weight as a
// 16-bit placeholder of the scope's dtype (shape only: no float allocation, no random draw for
// the weight) for a checkpoint loader to fill. from_pretrained uses it so that a BF16 model never
// exists in float32. (Skipping the weight's init draws changes the state of the model's Rng after
// it, hence dropout streams split from it later; programs that reseed dropout per step, as
// train::reseed_dropout does, see no difference.)
class HalfWeightsScope {
 public:
  explicit HalfWeightsScope(io::Dtype dtype) : previous_(slot()) {
    check(is_half_dtype(dtype), "HalfWeightsScope: dtype must be BF16 or F16, got ",
          io::dtype_name(dtype));
    slot() = dtype;
  }
  ~HalfWeightsScope() { slot() = previous_; }
  HalfWeightsScope(const HalfWeightsScope&) = delete;
  HalfWeightsScope& operator=(const HalfWeightsScope&) = delete;
  static std::optional<io::Dtype> current() { return slot(); }

 private:
  static std::optional<io::Dtype>& slot() {
    thread_local std::optional<io::Dtype> dtype;
    return dtype;
  }
  std::optional<io::Dtype> previous_;
};

// ---------------------------------------------------------------------------
// Linear: y = x·Wᵀ + b   (out_in, W: (d_out, d_in))   or   y = x·W + b   (in_out, W: (d_in, d_out)).
// Initialised like torch's nn.Linear: kaiming_uniform(a = √5) gives W ~ U(-1/√d_in, 1/√d_in), and
// b ~ U(-1/√d_in, 1/√d_in) — usually overwritten by a checkpoint anyway.
// Half precision: to_half_precision(BF16 / F16) rounds W into a HalfMatrix (same layout) and drops
// the float Var: `weight` is then undefined, named_parameters() no longer lists it and
// named_frozen_tensors() lists the HalfMatrix under the same key `weight`. Such a weight is frozen
// (no gradient); gradients still flow to x and to the bias. The bias stays a Real Var.
// half_compute() says how the GEMMs against it run: exact (float GEMM on the weight's numbers) or,
// for a BF16 weight, bf16 — the BF16 compute mode, activations rounded to BF16 as well.
template <class Real>
class Linear : public Module<Real> {
 public:
  Var<Real> weight;  // (d_out, d_in), or (d_in, d_out) with WeightLayout::in_out; undefined if half
  Var<Real> bias;    // (d_out); undefined when built without bias

  Linear(Index d_in, Index d_out, Rng& rng, bool with_bias = true,
         WeightLayout layout = WeightLayout::out_in)
      : d_in_(d_in), d_out_(d_out), layout_(layout) {
    check(d_in > 0 && d_out > 0, "Linear: d_in and d_out must be positive, got ", d_in, " and ",
          d_out);
    const Real bound = Real(1) / std::sqrt(static_cast<Real>(d_in));
    const Shape shape = weight_shape();
    if (const auto half = HalfWeightsScope::current())
      half_weight_ = HalfMatrix::placeholder(shape[0], shape[1], *half);
    else
      weight = Var<Real>::parameter(uniform<Real>(shape, rng, -bound, bound));
    this->register_parameter_slot("weight", weight);
    this->register_frozen_tensor("weight", half_weight_);
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
  // The pre-trained layer alone: x·Wᵀ + b (through the 16-bit GEMM when the weight is half).
  Var<Real> base_forward(Tape<Real>& tape, const Var<Real>& x) const {
    if (half_precision())
      return ops::half_linear(tape, x, half_weight_, bias, layout_, half_compute_);
    return ops::linear(tape, x, weight, bias, layout_);
  }

  // ---- 16-bit frozen weight --------------------------------------------------------------------
  // The weight's stored shape: (d_out, d_in) or, in_out, (d_in, d_out).
  Shape weight_shape() const {
    return layout_ == WeightLayout::out_in ? Shape{d_out_, d_in_} : Shape{d_in_, d_out_};
  }
  // Whether the weight is held as a frozen BF16 / F16 HalfMatrix (then `weight` is undefined).
  bool half_precision() const { return half_weight_.defined(); }
  const HalfMatrix& half_weight() const {
    check(half_precision(), "Linear::half_weight: the weight is not held in half precision");
    return half_weight_;
  }
  // For merge / unmerge (peft::add_delta_weight) and loaders.
  HalfMatrix& half_weight() {
    check(half_precision(), "Linear::half_weight: the weight is not held in half precision");
    return half_weight_;
  }
  // How products against the 16-bit weight run (HalfCompute; exact unless set). bf16 takes effect
  // for a BF16 weight in a Linear<float>; elsewhere the product stays exact.
  HalfCompute half_compute() const { return half_compute_; }
  void set_half_compute(HalfCompute compute) { half_compute_ = compute; }

  // Rounds the weight to `dtype` (BF16 or F16, nearest even) and drops the float Var; from then on
  // the weight is frozen. A half weight of the other 16-bit type is re-rounded. A Var shared with
  // another module (a tied weight) is only dropped here: use nn::to_half_precision(model, ...),
  // which leaves tied weights in float.
  void to_half_precision(io::Dtype dtype) {
    check(is_half_dtype(dtype), "Linear::to_half_precision: dtype must be BF16 or F16, got ",
          io::dtype_name(dtype));
    const Shape shape = weight_shape();
    if (half_precision()) {
      if (half_weight_.dtype() == dtype || !half_weight_.has_data()) {
        if (!half_weight_.has_data()) half_weight_ = HalfMatrix::placeholder(shape[0], shape[1], dtype);
        return;
      }
      const Tensor<float> values = half_weight_.to_tensor<float>();
      half_weight_ = HalfMatrix::from_values<float>(values.data(), shape[0], shape[1], dtype);
      return;
    }
    check(weight.defined(), "Linear::to_half_precision: the layer has no weight");
    half_weight_ = HalfMatrix::from_values<Real>(weight.data(), shape[0], shape[1], dtype);
    weight = Var<Real>();
  }
  // Back to a float weight holding the 16-bit values exactly (frozen: requires_grad false), e.g.
  // to train it; a placeholder becomes zeros for a loader to fill.
  // A `weight` already defined again (tied to another module's Var after construction) is kept.
  void to_full_precision(bool requires_grad = false) {
    if (!half_precision()) return;
    if (!weight.defined())
      weight = Var<Real>(half_weight_.has_data() ? half_weight_.to_tensor<Real>()
                                                 : Tensor<Real>(weight_shape()),
                         requires_grad);
    half_weight_ = HalfMatrix();
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
  HalfMatrix half_weight_;  // defined iff the weight is held in 16 bits (then `weight` is not)
  HalfCompute half_compute_ = HalfCompute::exact;
  std::vector<std::pair<std::string, std::shared_ptr<LinearAdapter<Real>>>> adapters_;
};

// ---------------------------------------------------------------------------
// Rounds the weight of every Linear of `model` to `dtype` (BF16 / F16) except those whose dotted
// name matches one of the `keep_float` globs ("classifier.*", a trainable head) and tied weights
// (a Var registered by another module too, e.g. an lm_head sharing embed_tokens: it stays a shared
// float Var). Returns the names of the converted weights ("layers.0.self_attn.q_proj.weight").
// compute = HalfCompute::bf16 is the BF16 compute mode (use to_bf16_compute below): it also skips
// every weight that requires a gradient, so call it after the PEFT method has frozen the model.
template <class Real>
std::vector<std::string> to_half_precision(Module<Real>& model, io::Dtype dtype,
                                           const std::vector<std::string>& keep_float = {},
                                           HalfCompute compute = HalfCompute::exact) {
  std::map<const void*, int> owners;  // how many modules register each Var (by its value storage)
  for (auto& [path, module] : model.named_modules())
    for (const auto& [name, p] : module->own_parameters()) ++owners[p.value().ptr()];
  std::vector<std::string> converted;
  for (auto& [path, module] : model.named_modules()) {
    auto* linear = dynamic_cast<Linear<Real>*>(module);
    if (linear == nullptr) continue;
    const std::string name = path.empty() ? "weight" : path + ".weight";
    const bool keep = std::any_of(keep_float.begin(), keep_float.end(),
                                  [&](const std::string& g) { return glob_match(g, name); });
    if (keep) continue;
    if (!linear->half_precision() && owners[linear->weight.value().ptr()] > 1) continue;  // tied
    if (compute == HalfCompute::bf16 && !linear->half_precision() &&
        linear->weight.requires_grad())
      continue;  // trained: stays FP32
    linear->to_half_precision(dtype);
    linear->set_half_compute(compute);
    converted.push_back(name);
  }
  return converted;
}

// The BF16 compute mode (HF Trainer's bf16=True for a PEFT run): every frozen Linear weight of
// `model` (not tied, not matching `keep_float`) is held in BF16 and its GEMMs — forward x·Wᵀ and
// dx = dy·W — take BF16 operands with FP32 accumulation. Trainable parameters, their gradients,
// the optimizer state, adapters (FourierFT spectra and FFTs, LoRA A / B), norms, softmax and the
// loss stay FP32. Call after freezing (PEFT's get_peft_model); returns the converted names.
template <class Real>
std::vector<std::string> to_bf16_compute(Module<Real>& model,
                                         const std::vector<std::string>& keep_float = {}) {
  return to_half_precision(model, io::Dtype::BF16, keep_float, HalfCompute::bf16);
}

}  // namespace fourierft::nn
