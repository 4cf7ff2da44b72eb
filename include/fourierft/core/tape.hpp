// fourierft/core/tape.hpp — reverse-mode autograd: Var (value + gradient), Tape (the recorded ops),
// NoGradScope. Define-by-run: every op takes the tape first and records its backward closure.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/profiler.hpp"
#include "fourierft/core/tensor.hpp"

namespace fourierft {

namespace detail {
// For tests: every gradient buffer Var::grad_to_fill makes is filled with NaN, so a backward that
// adds into a fresh gradient instead of writing every element of it shows up as NaN.
inline std::atomic<bool>& poison_fresh_gradients() {
  static std::atomic<bool> on{false};
  return on;
}
}  // namespace detail

// Var<Real>: a value, its gradient (allocated, zero-filled, on first use) and requires_grad.
// Copies share the same value and gradient (a handle, like a torch tensor). Parameters are Vars
// owned by modules; activations are Vars made by ops and kept alive by the tape until clear().
template <class Real>
class Var {
 public:
  Var() = default;  // an undefined handle; defined() is false
  explicit Var(Tensor<Real> value, bool requires_grad = false)
      : node_(std::make_shared<Node>(Node{std::move(value), {}, false, requires_grad})) {}
  static Var parameter(Tensor<Real> value) { return Var(std::move(value), true); }

  bool defined() const { return node_ != nullptr; }
  const Tensor<Real>& value() const { return node().value; }
  Tensor<Real>& value() { return node().value; }
  const Shape& shape() const { return node().value.shape(); }
  Index numel() const { return node().value.numel(); }
  Index dim() const { return node().value.dim(); }
  Index size(Index axis) const { return node().value.size(axis); }
  std::span<const Real> data() const { return node().value.data(); }
  std::span<Real> data() { return node().value.data(); }
  Real item() const { return node().value.item(); }

  bool requires_grad() const { return node().requires_grad; }
  void set_requires_grad(bool on) { node().requires_grad = on; }
  bool has_grad() const { return node().has_grad; }
  // The gradient, allocated as zeros the first time it is asked for.
  Tensor<Real>& grad() {
    Node& n = node();
    if (!n.has_grad) {
      n.grad = Tensor<Real>(n.value.shape());
      n.has_grad = true;
    }
    return n.grad;
  }
  const Tensor<Real>& grad() const { return const_cast<Var*>(this)->grad(); }
  // The gradient's buffer for a kernel that writes it: if there was no gradient yet, it is made
  // uninitialised and `fresh` is set, and the caller must then write (=) every element instead of
  // adding (+=) — saving the zeros grad() writes first.
  std::span<Real> grad_to_fill(bool& fresh) {
    Node& n = node();
    fresh = !n.has_grad;
    if (fresh) {
      n.grad = Tensor<Real>::uninitialized(n.value.shape());
      n.has_grad = true;
      if (detail::poison_fresh_gradients().load(std::memory_order_relaxed))
        n.grad.fill(std::numeric_limits<Real>::quiet_NaN());
    }
    return n.grad.data();
  }
  // Adds factor·g into the gradient (g: the value's size). The first time the gradient is made
  // as factor·g directly, without the zeros grad() would write first and then add to (a
  // transformer's residual stream: one pass over the buffer instead of three).
  void accumulate_grad(std::span<const Real> g, Real factor = Real(1)) {
    bool fresh = false;
    Real* out = grad_to_fill(fresh).data();
    const std::ptrdiff_t count = static_cast<std::ptrdiff_t>(g.size());
#pragma omp parallel for if (count > 65536)
    for (std::ptrdiff_t i = 0; i < count; ++i) out[i] = fresh ? factor * g[i] : out[i] + factor * g[i];
  }
  // Zeroes the gradient in place (keeps its memory for the next step).
  void zero_grad() {
    if (node().has_grad) node().grad.fill(Real(0));
  }
  // Frees the gradient.
  void drop_grad() {
    node().grad = Tensor<Real>();
    node().has_grad = false;
  }
  // Same value, cut from the graph: ops on the result record no backward into this Var.
  Var detach() const { return Var(node().value, false); }
  bool same_as(const Var& other) const { return node_ == other.node_; }

 private:
  struct Node {
    Tensor<Real> value;
    Tensor<Real> grad;
    bool has_grad = false;
    bool requires_grad = false;
  };
  Node& node() const {
    check(node_ != nullptr, "Var: use of an undefined Var");
    return *node_;
  }
  std::shared_ptr<Node> node_;
};

// The gradient buffer an op's backward should add into, or an empty span if x needs none —
// kernels skip the work for empty spans (a frozen weight costs no weight-gradient GEMM).
template <class Real>
std::span<Real> grad_if_needed(const Var<Real>& x) {
  if (!x.requires_grad()) return {};
  return const_cast<Var<Real>&>(x).grad().data();
}

// x's gradient buffer to be written, not added to, when it is new (Var::grad_to_fill: `fresh` set);
// empty when x needs no gradient.
template <class Real>
std::span<Real> grad_to_fill_if_needed(const Var<Real>& x, bool& fresh) {
  fresh = false;
  if (!x.requires_grad()) return {};
  return const_cast<Var<Real>&>(x).grad_to_fill(fresh);
}

template <class Real>
class NoGradScope;

// Tape<Real>: the ops of one forward pass in creation order. backward(loss) seeds dL/dloss = 1 and
// runs the recorded closures in reverse; each closure adds (+=) into its inputs' gradients. A closure
// captures the inputs it needs by value, which keeps them alive until it has run or clear() is called.
// A closure must not capture its own output Var (that would be a cycle): capture y.value() instead.
template <class Real>
class Tape {
 public:
  using Backward = std::function<void(std::span<const Real> dy)>;

  Tape() : profile_(detail::OpProfile::instance().enabled()) { mark_ = Clock::now(); }
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  // A fresh output Var of `shape` (zero-filled) for an op to write its result into.
  Var<Real> output(Shape shape) const { return Var<Real>(Tensor<Real>(std::move(shape))); }
  // The same, not zero-filled: only for ops that write every element of their output (GEMMs
  // with beta = 0, elementwise maps, row-wise normalisations).
  Var<Real> output_uninitialized(Shape shape) const {
    return Var<Real>(Tensor<Real>::uninitialized(std::move(shape)));
  }

  // Records y = op(inputs). If gradients are enabled and any input requires one, y requires one and
  // `backward` will be called with dL/dy during backward(); otherwise nothing is stored.
  void record(const char* op, std::span<const Var<Real>> inputs, Var<Real>& y, Backward backward) {
    if (!grad_enabled_) return;
    bool any = false;
    for (const Var<Real>& x : inputs) any = any || (x.defined() && x.requires_grad());
    if (!any) return;
    y.set_requires_grad(true);
    nodes_.push_back(Node{op, y, std::move(backward)});
    if (profile_) {
      const auto now = Clock::now();
      detail::OpProfile::instance().add(op, ms_between(mark_, now), 0);
      mark_ = now;
    }
  }
  void record(const char* op, std::initializer_list<Var<Real>> inputs, Var<Real>& y,
              Backward backward) {
    record(op, std::span<const Var<Real>>(inputs.begin(), inputs.size()), y, std::move(backward));
  }

  // Reverse pass from a scalar loss (seed 1).
  void backward(const Var<Real>& loss) {
    check<ShapeError>(loss.numel() == 1, "backward: loss has shape ", shape_str(loss.shape()),
                      "; a non-scalar output needs a seed gradient: backward(y, seed)");
    backward(loss, Tensor<Real>::full(loss.shape(), Real(1)));
  }
  // Reverse pass with an explicit seed dL/dy of y's shape.
  void backward(const Var<Real>& y, const Tensor<Real>& seed) {
    check<ShapeError>(seed.shape() == y.shape(), "backward: seed has shape ",
                      shape_str(seed.shape()), " but the output has shape ", shape_str(y.shape()));
    check(y.requires_grad(), "backward: the output does not require a gradient (no input of ",
          "the recorded ops requires one, or it was computed under NoGradScope)");
    check(!backward_done_, "backward: this tape was already run backward; call clear() and ",
          "record the forward pass again");
    Var<Real> out = y;
    Tensor<Real>& g = out.grad();
    for (Index i = 0; i < g.numel(); ++i) g[i] += seed[i];
    for (auto node = nodes_.rbegin(); node != nodes_.rend(); ++node) {
      if (node->output.has_grad()) {
        if (profile_) {
          const auto start = Clock::now();
          node->backward(node->output.grad().data());
          detail::OpProfile::instance().add(node->op, 0, ms_between(start, Clock::now()));
        } else {
          node->backward(node->output.grad().data());
        }
      }
      // Activations saved by this op are not needed any more: free them now.
      node->backward = nullptr;
      if (!node->output.same_as(y)) node->output.drop_grad();
      node->output = Var<Real>();
    }
    backward_done_ = true;
  }

  // Frees all recorded ops and the activations they hold; parameters outlive it.
  void clear() {
    nodes_.clear();
    backward_done_ = false;
    if (profile_) mark_ = Clock::now();
  }
  std::size_t size() const { return nodes_.size(); }
  bool grad_enabled() const { return grad_enabled_; }
  // Op names in recording order (for debugging and tests).
  std::vector<std::string> op_names() const {
    std::vector<std::string> names;
    for (const Node& n : nodes_) names.emplace_back(n.op);
    return names;
  }

 private:
  friend class NoGradScope<Real>;
  struct Node {
    const char* op;
    Var<Real> output;
    Backward backward;
  };
  using Clock = std::chrono::steady_clock;
  static double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  }
  std::vector<Node> nodes_;
  bool grad_enabled_ = true;
  bool backward_done_ = false;
  bool profile_ = false;  // FOURIERFT_PROFILE set: time ops (detail::OpProfile)
  Clock::time_point mark_{};
};

// Within the scope, ops record nothing and their outputs require no gradient (evaluation,
// finite differences, weight updates).
template <class Real>
class NoGradScope {
 public:
  explicit NoGradScope(Tape<Real>& tape) : tape_(tape), previous_(tape.grad_enabled_) {
    tape.grad_enabled_ = false;
  }
  ~NoGradScope() { tape_.grad_enabled_ = previous_; }
  NoGradScope(const NoGradScope&) = delete;
  NoGradScope& operator=(const NoGradScope&) = delete;

 private:
  Tape<Real>& tape_;
  bool previous_;
};

}  // namespace fourierft
