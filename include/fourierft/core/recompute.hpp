// fourierft/core/recompute.hpp — activation checkpointing: recompute(tape, x, block) records a block
// (a transformer layer) as one node that keeps only x and y, and runs the block again in backward.
#pragma once

// Without checkpointing, the tape keeps every activation of every layer until backward: for a
// decoder that is ~L·(a dozen B·T·C tensors + the attention probabilities B·NH·T·T). With
//   h = recompute(tape, h, [&layer](Tape<Real>& t, const Var<Real>& x) { return layer.forward(t, x); });
// only each layer's input and output stay; backward re-runs one layer at a time on a local tape,
// so the peak holds L layer outputs plus ONE layer's activations — at the price of a second forward.
//
// forward:  y = block(local, x) on a local tape, which is then destroyed (the block's activations
//           with it). If y needs a gradient (x does, or a parameter the block used does), the outer
//           tape records one node "recompute" with output y; otherwise nothing is recorded.
// backward: x' = x detached (same value), requiring a gradient iff x does, its gradient buffer
//           shared with x's; y' = block(local', x'); local'.backward(y', dy). Parameters are the
//           same Vars as in the forward, so their gradients accumulate directly; dx lands in x's
//           own buffer. Every op runs the same kernels on the same values in the same order as
//           without checkpointing, so values and gradients are bit-identical to the plain run.
// Requirements on the block:
//   - deterministic: the re-run must give y again, bit for bit. Backward checks this and throws
//     ValueError if not. Dropout in training mode draws new masks from its stream on each run;
//     pass the streams it draws from (nn::Dropout::rng of every dropout site inside the block) as
//     `streams`: they are saved before the forward and rewound for the re-run, then put back.
//   - no side effects: a KV cache appended to (generation) or running statistics would be updated
//     twice. Generation runs under NoGradScope, where recompute() simply calls block(tape, x).
//   - copyable (it is kept in the node's closure), and what it captures by reference (modules)
//     must outlive backward; capture temporaries (masks, positions) by value.
// Nesting works (a checkpointed block may call recompute inside); the inner block then runs 3 times.

#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"

namespace fourierft {

// The random streams a block draws from (e.g. &dropout.rng of its nn::Dropout sites).
using RngStreams = std::vector<Rng*>;

namespace detail {

// The first i where a[i] and b[i] differ in their bits (so NaN == NaN, -0 != +0), or -1.
template <class Real>
Index first_bitwise_difference(std::span<const Real> a, std::span<const Real> b) {
  if (std::memcmp(a.data(), b.data(), a.size() * sizeof(Real)) == 0) return -1;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(Real)) != 0) return static_cast<Index>(i);
  return -1;
}

// Rewinds `streams` to `saved` for its lifetime, then puts back where they were (also on a throw).
class RewindStreams {
 public:
  RewindStreams(const RngStreams& streams, const std::vector<Rng>& saved) : streams_(streams) {
    for (std::size_t i = 0; i < streams_.size(); ++i) {
      now_.push_back(*streams_[i]);
      *streams_[i] = saved[i];
    }
  }
  ~RewindStreams() {
    for (std::size_t i = 0; i < streams_.size(); ++i) *streams_[i] = now_[i];
  }
  RewindStreams(const RewindStreams&) = delete;
  RewindStreams& operator=(const RewindStreams&) = delete;

 private:
  const RngStreams& streams_;
  std::vector<Rng> now_;
};

}  // namespace detail

// y = block(tape, x), recorded as one node whose backward re-runs the block (see above).
//   block: Var<Real>(Tape<Real>&, const Var<Real>& x);  streams: rewound for the re-run.
template <class Real, class Block>
Var<Real> recompute(Tape<Real>& tape, const Var<Real>& x, Block&& block, RngStreams streams) {
  using BlockFn = std::decay_t<Block>;
  static_assert(std::is_invocable_r_v<Var<Real>, BlockFn&, Tape<Real>&, const Var<Real>&>,
                "recompute: the block must be callable as Var<Real>(Tape<Real>&, const Var<Real>&)");
  static_assert(std::is_copy_constructible_v<BlockFn>,
                "recompute: the block must be copyable (it is kept in the node's backward closure)");
  check(x.defined(), "recompute: the block's input x is an undefined Var");
  for (const Rng* s : streams) check(s != nullptr, "recompute: a null random stream was passed");
  if (!tape.grad_enabled()) return block(tape, x);  // nothing would be recorded: run it in place

  std::vector<Rng> start;  // the streams before the forward: the re-run draws the same numbers
  start.reserve(streams.size());
  for (const Rng* s : streams) start.push_back(*s);
  Var<Real> y_block;
  {
    Tape<Real> local;  // destroyed at the end of this scope, with every activation it holds
    y_block = block(local, x);
    check(y_block.defined(), "recompute: the block returned an undefined Var");
  }
  if (!y_block.requires_grad()) return y_block;  // nothing to differentiate: as the plain run

  Var<Real> y(y_block.value());  // the outer node's output: a fresh handle on the block's result
  const Tensor<Real> y_forward = y.value();  // shares storage (capturing y itself would be a cycle)
  const Var<Real> needs_grad(Tensor<Real>(), true);  // tells record() that y needs a gradient
  tape.record("recompute", {x, needs_grad}, y,
              [x, block = BlockFn(std::forward<Block>(block)), streams = std::move(streams),
               start = std::move(start), y_forward](std::span<const Real> dy) mutable {
                Tape<Real> local;
                Var<Real> x_again = x.detach();
                if (x.requires_grad()) {
                  x_again.set_requires_grad(true);
                  x_again.grad() = x.grad();  // shared buffer: dx accumulates as in the plain run
                }
                Var<Real> y_again;
                {
                  detail::RewindStreams rewind(streams, start);
                  y_again = block(local, x_again);
                }
                check<ShapeError>(y_again.defined() && y_again.shape() == y_forward.shape(),
                                  "recompute: re-running the block in backward gave shape ",
                                  y_again.defined() ? shape_str(y_again.shape()) : "(undefined)",
                                  " but the forward gave ", shape_str(y_forward.shape()));
                const Index at = detail::first_bitwise_difference<Real>(y_again.data(),
                                                                        y_forward.data());
                check(at < 0, "recompute: re-running the block in backward gave a different ",
                      "output (element ", at, ": ", at < 0 ? Real(0) : y_again.value()[at],
                      " now, ", at < 0 ? Real(0) : y_forward[at], " in the forward); a ",
                      "checkpointed block must be deterministic: pass the random streams its ",
                      "dropout draws from to recompute(tape, x, block, streams), and keep side ",
                      "effects (KV caches, running statistics) out of it");
                if (!y_again.requires_grad()) return;  // every parameter was frozen since forward
                local.backward(y_again, Tensor<Real>::from_data(y_again.shape(), dy));
              });
  return y;
}

// The same for a block that draws no random numbers (or none in the current mode).
template <class Real, class Block>
Var<Real> recompute(Tape<Real>& tape, const Var<Real>& x, Block&& block) {
  return recompute(tape, x, std::forward<Block>(block), RngStreams{});
}

}  // namespace fourierft
