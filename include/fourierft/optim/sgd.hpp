// fourierft/optim/sgd.hpp — stochastic gradient descent with momentum, dampening, Nesterov and
// (coupled, L2) weight decay, following torch.optim.SGD's update exactly.
#pragma once

#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/optim/optimizer.hpp"

namespace fourierft::optim {

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;  // added to the gradient (L2), unlike AdamW's decoupled decay
  bool nesterov = false;
};

// ---------------------------------------------------------------------------
// One step, as torch.optim.SGD:
//   d = g + wd·p
//   with momentum μ:  buf = d on the first step, else buf = μ·buf + (1 - dampening)·d
//                     d = d + μ·buf (Nesterov)  or  d = buf
//   p -= lr·d
template <class Real>
void sgd_update(std::span<Real> p, std::span<const Real> g, std::span<Real> buf, bool first,
                double lr, double weight_decay, const SGDOptions& o) {
  const Real wd = static_cast<Real>(weight_decay), mu = static_cast<Real>(o.momentum);
  const Real keep = static_cast<Real>(1.0 - o.dampening), rate = static_cast<Real>(lr);
  const std::size_t n = p.size();
#pragma omp parallel for if (n > 65536)
  for (std::size_t i = 0; i < n; ++i) {
    Real d = g[i];
    if (weight_decay != 0) d += wd * p[i];
    if (o.momentum != 0) {
      buf[i] = first ? d : buf[i] * mu + keep * d;
      d = o.nesterov ? d + mu * buf[i] : buf[i];
    }
    p[i] -= rate * d;
  }
}

template <class Real>
class SGD : public Optimizer<Real> {
 public:
  SGD(std::vector<ParamGroup<Real>> groups, SGDOptions options = {})
      : Optimizer<Real>(std::move(groups), options.lr, options.weight_decay), options_(options) {
    check(options.momentum >= 0, "SGD: momentum must be >= 0, got ", options.momentum);
    check(!options.nesterov || (options.momentum > 0 && options.dampening == 0),
          "SGD: Nesterov momentum needs momentum > 0 and dampening = 0");
    clear_state();
  }
  SGD(std::vector<Var<Real>> params, SGDOptions options = {})
      : SGD(std::vector<ParamGroup<Real>>{{.params = std::move(params)}}, options) {}

  const char* type_name() const override { return "SGD"; }
  const SGDOptions& options() const { return options_; }

  void step() override {
    for (std::size_t g = 0; g < this->groups_.size(); ++g) {
      auto& group = this->groups_[g];
      for (std::size_t i = 0; i < group.params.size(); ++i) {
        Var<Real>& p = group.params[i];
        if (!this->has_update(p)) continue;
        Tensor<Real>& buf = buffers_[g][i];
        const bool first = options_.momentum != 0 && buf.numel() != p.numel();
        if (first) buf = Tensor<Real>(p.shape());
        sgd_update<Real>(p.data(), p.grad().data(), buf.data(), first, group.lr, group.weight_decay,
                         options_);
      }
    }
    ++this->steps_;
  }

 protected:
  std::vector<std::string> state_names() const override { return {"momentum_buffer"}; }
  std::vector<std::pair<std::string, Tensor<Real>>> state_tensors(std::size_t g,
                                                                  std::size_t i) const override {
    const Tensor<Real>& buf = buffers_[g][i];
    if (buf.numel() != this->groups_[g].params[i].numel()) return {};
    return {{"momentum_buffer", buf}};
  }
  void set_state_tensors(std::size_t g, std::size_t i,
                         const std::vector<std::pair<std::string, Tensor<Real>>>& state,
                         const std::string&) override {
    for (const auto& [name, t] : state)
      if (name == "momentum_buffer") buffers_[g][i] = t;
  }
  void clear_state() override {
    buffers_.assign(this->groups_.size(), {});
    for (std::size_t g = 0; g < this->groups_.size(); ++g)
      buffers_[g].assign(this->groups_[g].params.size(), Tensor<Real>(Shape{0}));
  }

 private:
  SGDOptions options_;
  std::vector<std::vector<Tensor<Real>>> buffers_;  // [group][param]; empty until the first step
};

}  // namespace fourierft::optim
